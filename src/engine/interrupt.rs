//! How a run is asked to stop from outside: the first interrupt cancels, any later one hurries.

use tokio_util::sync::CancellationToken;

/// How a run is asked to stop from outside (Ctrl-C, SIGTERM, a daemon's stop): the first
/// interrupt cancels (faults are reverted, the report is written); any later one hurries (waits
/// are skipped; reverts still run). Cheap to clone; see [`super::RunHandle::interrupter`].
#[derive(Clone, Default)]
pub struct Interrupter {
    pub(super) cancel: CancellationToken,
    pub(super) hurry: CancellationToken,
    /// What interrupted first, for the report.
    reason: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Interrupter {
    /// Interrupts the run, `why` naming the cause (e.g. `SIGTERM`). Returns true when this
    /// interrupt hurries (it is not the first).
    pub fn interrupt(&self, why: &str) -> bool {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert_with(|| why.to_string());
        }
        if self.cancel.is_cancelled() {
            self.hurry.cancel();
            true
        } else {
            self.cancel.cancel();
            false
        }
    }

    pub(super) fn reason(&self) -> String {
        self.reason.lock().ok().and_then(|r| r.clone()).unwrap_or_else(|| "signal".into())
    }
}
