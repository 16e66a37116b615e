//! The load balancer's per-second figures joined to the load's own seconds: a sample carries only
//! the balancer's latest complete second, so the run fills in the others from the balancer's
//! history once the load has ended, then gives each load second the figures of that same second.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend::Backend;
use crate::observe::Second;

pub(super) type BalancerSecond = crate::backend::BalancerFigures;

/// Adds the balancer seconds no sample brought (a sample carries only the latest one, and
/// samples are a little over a second apart), from the balancer's own history. The balancer
/// completes the second of the last window just after the load ends: waits for it briefly.
pub(super) async fn fill_balancer(
    backend: &Backend,
    balancer: &mut BTreeMap<u64, BalancerSecond>,
    history: &[Second],
    load_start: f64,
) {
    let Some(last) = history.last().map(|s| (load_start + f64::from(s.window.second)).round() as u64) else {
        return;
    };
    for attempt in 0..8 {
        let seconds = backend.balancer_seconds(load_start as u64 - 1).await;
        if seconds.is_empty() {
            return;
        }
        balancer.extend(seconds);
        if balancer.contains_key(&last) || attempt == 7 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Gives each second of `history` the balancer figures of that same second. A sample carries
/// the balancer's last complete second when it was taken, which is one or two seconds before the
/// end of the load window it is joined to; `balancer` holds every balancer second the samples
/// brought, by Unix second, and `load_start` is the Unix time the load started. The balancer
/// second that overlaps a window most starts at the window's start, rounded. A window whose
/// balancer second no sample brought has no balancer figures rather than another second's;
/// samples whose figures are not per second (AWS: per minute) are left as they are.
pub(super) fn align_balancer(history: &mut [Second], balancer: &BTreeMap<u64, BalancerSecond>, load_start: f64) {
    for s in history {
        let Some(sample) = s.sample.as_mut().filter(|x| x.lb_second.is_some()) else { continue };
        let at = (load_start + f64::from(s.window.second)).round() as u64;
        let found = balancer.get(&at);
        (sample.lb_rps, sample.lb_5xx_rate, sample.lb_response_ms) = found.copied().unwrap_or_default();
        sample.lb_second = found.map(|_| at);
    }
}
