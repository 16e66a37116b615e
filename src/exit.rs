//! The documented exit codes of every `siege` command, in one place.

/// How a `siege` process ends. The numbers are part of the user-facing contract (README, `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exit {
    /// The steady state held before the faults and again within the recovery deadline.
    Passed,
    /// The steady state was not restored in time.
    Failed,
    /// A stop condition tripped; every fault was reverted.
    Aborted,
    /// Invalid scenario or usage.
    Invalid,
    /// A precondition failed: steady state not met before any fault, target not found, wrong account,
    /// target busy with another run.
    Precondition,
    /// A revert failed: something may still be broken.
    RevertFailed,
    /// An internal error.
    Internal,
}

impl Exit {
    pub const fn code(self) -> u8 {
        match self {
            Exit::Passed => 0,
            Exit::Failed => 1,
            Exit::Aborted => 2,
            Exit::Invalid => 3,
            Exit::Precondition => 4,
            Exit::RevertFailed => 5,
            Exit::Internal => 70,
        }
    }

    /// The exit-code table as shown in `--help` and the README.
    pub const HELP: &'static str = "\
Exit codes:
  0   passed: steady state held before the faults and again within the recovery deadline
  1   failed: steady state not restored in time
  2   aborted by a stop condition, or stopped by Ctrl-C / SIGTERM / SIGHUP / a stop command (every fault reverted)
  3   invalid scenario or usage
  4   precondition failed (steady state not met before any fault, target not found or not answering, wrong account, target busy)
  5   a revert failed: something may still be broken
  70  internal error";
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}
