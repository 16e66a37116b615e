//! The open model's arrival schedule: the intended send time of every request, from the base
//! rate changed by stages (ramps and spikes), split evenly between workers.
//!
//! The schedule integrates the rate over time: a request is due each time the integral grows by
//! one. Where the rate is high this is exact (the next time is solved for directly); where it is
//! low or zero the integral advances in small steps, so a ramp that starts from zero or a stage
//! that pauses the load is followed faithfully rather than skipped.

use std::time::Duration;

use tokio::sync::watch;

use crate::scenario::{Load, Rate, Stage};

/// Largest step of the numeric integration, in seconds.
const STEP: f64 = 0.010;
/// Times this close to the end are at the end (sums of floating-point intervals drift by far
/// less than this, and a request a microsecond before the end would belong to no full second).
const EPSILON: f64 = 1e-6;

/// Intended send times, as offsets from the start of the load, in order.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// Used only for [`Load::rate_at`], the one definition of the rate at a time.
    profile: Load,
    /// This worker's share of the rate.
    share: f64,
    /// Offset of the next candidate time, seconds.
    t: f64,
    /// Accumulated fraction of a request.
    credit: f64,
    end: f64,
    /// The plan's own stages; stages set while the load runs ([`RateControl`]) go before them.
    planned: Vec<Stage>,
    control: Option<watch::Receiver<Vec<Stage>>>,
}

/// Changes the open model's rate while the load runs: a stage set here (its `at` counted from
/// the start of the load) takes precedence over the plan's stages and the base rate for its
/// duration, and the latest one set wins where two overlap. Every worker sees it at once.
#[derive(Debug, Clone)]
pub struct RateControl {
    stages: std::sync::Arc<watch::Sender<Vec<Stage>>>,
}

impl Default for RateControl {
    fn default() -> Self {
        RateControl { stages: std::sync::Arc::new(watch::Sender::new(Vec::new())) }
    }
}

impl RateControl {
    /// Sets the rate to `stage.rate` from `stage.at` for `stage.duration`.
    pub fn set(&self, stage: Stage) {
        self.stages.send_modify(|s| s.insert(0, stage));
    }

    fn subscribe(&self) -> watch::Receiver<Vec<Stage>> {
        self.stages.subscribe()
    }
}

impl Schedule {
    /// Worker `index` of `workers`: each takes every `workers`-th request of the whole schedule,
    /// interleaved, so that together they send at the planned rate.
    pub fn new(rate: f64, stages: &[Stage], duration: Duration, index: usize, workers: usize) -> Schedule {
        let workers = workers.max(1);
        let profile = Load {
            url: String::new(),
            rate: Rate { per_second: rate },
            stages: stages.to_vec(),
            duration,
            timeout: Duration::ZERO,
            insecure_tls: false,
        };
        Schedule {
            profile,
            share: 1.0 / workers as f64,
            t: 0.0,
            // Worker 0 sends at t = 0, worker i one whole-schedule interval later, and so on.
            credit: 1.0 - index as f64 / workers as f64,
            end: duration.as_secs_f64(),
            planned: stages.to_vec(),
            control: None,
        }
    }

    /// The same schedule, following the stages set on `control` as well.
    pub fn controlled(mut self, control: &RateControl) -> Schedule {
        let mut rx = control.subscribe();
        rx.mark_changed();
        self.control = Some(rx);
        self.adopt();
        self
    }

    /// Waits until a stage is set on the control (forever without one).
    pub async fn changed(&mut self) {
        match &mut self.control {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The control is gone: nothing will change any more.
                    self.control = None;
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Takes the stages set on the control into account from `now` (since the start of the
    /// load): the next time is computed again from there, under the new rate.
    pub fn replan(&mut self, now: Duration) {
        let now = now.as_secs_f64();
        if now <= self.t {
            // The pending time is given up: what it had accumulated by `now` under the old rate
            // is kept, so that no request is lost or added at the change.
            let old = self.profile.rate_at(Duration::from_secs_f64(now)) * self.share;
            self.credit = (1.0 - (self.t - now) * old).clamp(0.0, 1.0);
            self.t = now;
        }
        self.adopt();
    }

    fn adopt(&mut self) {
        if let Some(rx) = &mut self.control {
            let set = rx.borrow_and_update().clone();
            self.profile.stages = set.into_iter().chain(self.planned.iter().cloned()).collect();
        }
    }

    /// The next intended send time, or `None` once the load's duration is over.
    pub fn next(&mut self) -> Option<Duration> {
        loop {
            if self.t >= self.end - EPSILON {
                return None;
            }
            let rate = self.profile.rate_at(Duration::from_secs_f64(self.t)) * self.share;
            let need = (1.0 - self.credit).max(0.0);
            if rate > 0.0 && need / rate <= STEP {
                self.t += need / rate;
                self.credit = (self.credit - 1.0).max(0.0);
                if self.t >= self.end - EPSILON {
                    return None;
                }
                return Some(Duration::from_secs_f64(self.t));
            }
            self.credit += rate * STEP;
            self.t += STEP;
        }
    }

    /// The highest rate anywhere in the profile (to size the workers).
    pub fn peak_rate(rate: f64, stages: &[Stage]) -> f64 {
        stages.iter().map(|s| s.rate.per_second).fold(rate, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(at: u64, rate: f64, secs: u64, ramp: u64) -> Stage {
        Stage {
            at: Duration::from_secs(at),
            rate: Rate { per_second: rate },
            duration: Duration::from_secs(secs),
            ramp: Duration::from_secs(ramp),
        }
    }

    fn all(mut s: Schedule) -> Vec<f64> {
        std::iter::from_fn(|| s.next()).map(|d| d.as_secs_f64()).collect()
    }

    fn per_second(times: &[f64], seconds: usize) -> Vec<usize> {
        let mut v = vec![0; seconds];
        for t in times {
            v[(t + 1e-9) as usize] += 1;
        }
        v
    }

    #[test]
    fn constant_rate_is_exact_and_evenly_spaced() {
        let times = all(Schedule::new(100.0, &[], Duration::from_secs(3), 0, 1));
        assert_eq!(times.len(), 300);
        assert_eq!(times[0], 0.0);
        assert!((times[1] - 0.01).abs() < 1e-9);
        assert_eq!(per_second(&times, 3), vec![100, 100, 100]);
    }

    #[test]
    fn workers_interleave_into_the_whole_schedule() {
        let mut merged: Vec<f64> =
            (0..3).flat_map(|i| all(Schedule::new(300.0, &[], Duration::from_secs(2), i, 3))).collect();
        merged.sort_by(f64::total_cmp);
        assert_eq!(merged.len(), 600);
        for (k, t) in merged.iter().enumerate() {
            assert!((t - k as f64 / 300.0).abs() < 1e-6, "request {k} at {t}");
        }
    }

    #[test]
    fn stages_spike_and_ramp_as_load_rate_at_says() {
        // 10/s, a spike to 100/s in [2s, 4s), then a pause (rate 0) in [5s, 6s).
        let times =
            all(Schedule::new(10.0, &[stage(2, 100.0, 2, 0), stage(5, 0.0, 1, 0)], Duration::from_secs(7), 0, 1));
        assert_eq!(per_second(&times, 7), vec![10, 10, 100, 100, 10, 0, 10]);
        // A ramp from 0 to 100/s over 2s sends about the integral (100 requests) in it.
        let times = all(Schedule::new(0.0, &[stage(0, 100.0, 4, 2)], Duration::from_secs(4), 0, 1));
        let n = per_second(&times, 4);
        assert!((n[0] as i64 - 25).abs() <= 2 && (n[1] as i64 - 75).abs() <= 2, "{n:?}");
        assert_eq!(&n[2..], &[100, 100]);
    }

    #[test]
    fn a_stage_set_while_running_overrides_the_plan_from_then_on() {
        let control = RateControl::default();
        // 10/s with a planned pause in [3s, 4s); at 1.5s a spike to 100/s for 2s is set.
        let mut s = Schedule::new(10.0, &[stage(3, 0.0, 1, 0)], Duration::from_secs(5), 0, 1).controlled(&control);
        let (mut times, mut set) = (vec![], false);
        while let Some(t) = s.next() {
            if !set && t >= Duration::from_millis(1500) {
                set = true;
                let at = Duration::from_millis(1500);
                control.set(Stage {
                    at,
                    rate: Rate { per_second: 100.0 },
                    duration: Duration::from_secs(2),
                    ramp: Duration::ZERO,
                });
                s.replan(at);
                continue;
            }
            times.push(t.as_secs_f64());
        }
        // Second 1 is half at 10/s, half at 100/s; the spike covers half the planned pause. (A
        // request on a stage's edge may fall on either side: sums of intervals are inexact.)
        let got = per_second(&times, 5);
        let want = [10, 55, 100, 50, 10];
        assert!(got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 1), "{got:?}, want {want:?}");
        assert_eq!(&got[..3], &want[..3], "{got:?}");
    }

    #[test]
    fn low_rates_and_zero_end_cleanly() {
        assert_eq!(all(Schedule::new(0.5, &[], Duration::from_secs(4), 0, 1)).len(), 2);
        assert!(all(Schedule::new(0.0, &[], Duration::from_secs(4), 0, 1)).is_empty());
    }
}
