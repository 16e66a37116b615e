//! The four charts of a report, built from the record's per-second windows: request rate, error
//! rate, latency percentiles and healthy targets. Each shades the fault windows and marks the
//! stop condition, the recovery and the recovery deadline, so that cause and effect line up.

use super::format::secs;
use super::svg::{Band, Chart, Marker, Series, Style, Threshold};
use super::{RunRecord, TimelineKind};

/// One rendered chart and where the markdown links it.
pub(crate) struct ChartFile {
    pub file: &'static str,
    pub title: &'static str,
    pub svg: String,
}

const BLUE: &str = "#0072B2";
const ORANGE: &str = "#E69F00";
const PINK: &str = "#CC79A7";
const GREEN: &str = "#009E73";
const RED: &str = "#B2182B";
const GREY: &str = "#777777";

/// End of the time axis: the run's length, or further if windows or faults reach past it.
fn x_max(r: &RunRecord) -> f64 {
    let windows = r.windows.iter().map(|w| f64::from(w.second) + 1.0).fold(0.0, f64::max);
    let faults = r.faults.iter().filter_map(|f| fault_end(f).or(f.injected_s)).fold(0.0, f64::max);
    r.timings.duration_s.max(windows).max(faults).max(1.0)
}

/// When a fault's effect ended: the end of its window, or its revert if that came first (an
/// abort); `None` while it lasted to the end of the run.
pub(crate) fn fault_end(f: &super::FaultRecord) -> Option<f64> {
    match (f.ends_s, f.reverted_s) {
        (Some(e), Some(r)) => Some(e.min(r)),
        (e, r) => e.or(r),
    }
}

/// Fault windows: from injection to the end of the fault's effect; a fault still in effect when
/// the run ended is shaded to the end. Each is labelled `prefix` and the fault's name.
pub(crate) fn bands(r: &RunRecord, end: f64, prefix: &str) -> Vec<Band> {
    r.faults
        .iter()
        .filter_map(|f| {
            let start = f.injected_s?;
            let stop = fault_end(f).unwrap_or(end);
            Some(Band { start, end: stop.max(start), label: format!("{prefix}{}", f.name) })
        })
        .collect()
}

fn markers(r: &RunRecord) -> Vec<Marker> {
    let mut out = Vec::new();
    if let Some(e) = r.timeline.iter().find(|e| e.kind == TimelineKind::StopCondition) {
        out.push(Marker { at: e.t_s, label: "stop condition".into(), color: RED });
    }
    if let (Some(end), Some(mttr)) = (r.timings.last_fault_end_s, r.timings.time_to_recover_s) {
        out.push(Marker { at: end + mttr, label: "steady state restored".into(), color: GREEN });
    }
    if let Some(end) = r.timings.last_fault_end_s {
        let at = r.timings.recovery_deadline_at_s.unwrap_or(end + r.timings.recovery_deadline_s);
        out.push(Marker { at, label: "recovery deadline".into(), color: GREY });
    }
    out
}

fn thresholds(r: &RunRecord, metrics: &[&str]) -> Vec<Threshold> {
    r.steady_state
        .iter()
        .filter(|c| metrics.contains(&c.metric.as_str()))
        .filter_map(|c| {
            let v = c.threshold?;
            Some(Threshold { value: v, label: c.check.clone() })
        })
        .collect()
}

/// Builds the charts of `r`, in the order the markdown shows them.
pub(crate) fn charts(r: &RunRecord) -> Vec<ChartFile> {
    let end = x_max(r);
    let base = Chart { x_max: end, bands: bands(r, end, ""), markers: markers(r), y_min_top: 1.0, ..Chart::default() };
    let mid = |s: u32| f64::from(s) + 0.5;
    // A second without any request has no latency or error rate, rather than a zero.
    let has_load = |w: &super::WindowRecord| w.requests + w.missed > 0;
    let line =
        |label: &str, color: &'static str, style: Style, f: &dyn Fn(&super::WindowRecord) -> Option<f64>| Series {
            label: label.into(),
            color,
            style,
            points: r
                .windows
                .iter()
                .map(|w| (if style.step() { f64::from(w.second) } else { mid(w.second) }, f(w)))
                .collect(),
        };

    let rate = Chart {
        title: "Request rate".into(),
        unit: "req/s".into(),
        // Scheduled is drawn last: dashed over solid keeps both visible when they coincide.
        series: vec![
            line("completed", BLUE, Style::Line, &|w| Some(w.requests as f64)),
            line("scheduled", GREY, Style::Dashed, &|w| Some(w.scheduled as f64)),
        ],
        thresholds: thresholds(r, &["rps"]),
        ..base.clone()
    };
    let errors = Chart {
        title: "Error rate".into(),
        unit: "%".into(),
        y_min_top: 5.0,
        y_cap: Some(100.0),
        series: vec![line("errors", RED, Style::Line, &|w| has_load(w).then_some(w.error_rate * 100.0))],
        thresholds: thresholds(r, &["error_rate"]),
        ..base.clone()
    };
    let latency = Chart {
        title: "Latency from the scheduled send time".into(),
        unit: "ms".into(),
        y_min_top: 10.0,
        series: vec![
            line("p50", BLUE, Style::Line, &|w| (w.requests > 0).then_some(w.latency_ms.p50)),
            line("p95", ORANGE, Style::Line, &|w| (w.requests > 0).then_some(w.latency_ms.p95)),
            line("p99", PINK, Style::Line, &|w| (w.requests > 0).then_some(w.latency_ms.p99)),
        ],
        thresholds: thresholds(r, &["p50", "p95", "p99"]),
        ..base.clone()
    };
    let targets = Chart {
        title: "Healthy targets and running tasks".into(),
        unit: "count".into(),
        integer: true,
        y_min_top: 2.0,
        series: vec![
            line("healthy targets", GREEN, Style::Step, &|w| w.healthy_targets.map(f64::from)),
            line("running tasks", BLUE, Style::DashedStep, &|w| w.running_tasks.map(f64::from)),
        ],
        thresholds: thresholds(r, &["healthy_targets", "running_tasks"]),
        ..base
    };
    vec![
        ChartFile { file: "rate.svg", title: "Request rate", svg: rate.render() },
        ChartFile { file: "errors.svg", title: "Error rate", svg: errors.render() },
        ChartFile { file: "latency.svg", title: "Latency p50 / p95 / p99", svg: latency.render() },
        ChartFile { file: "targets.svg", title: "Healthy targets and running tasks", svg: targets.render() },
    ]
}

/// One line describing the shaded windows, for the markdown under the charts.
pub(crate) fn legend_line(r: &RunRecord) -> Option<String> {
    let end = x_max(r);
    let b = bands(r, end, "");
    if b.is_empty() {
        return None;
    }
    let parts: Vec<String> = b
        .iter()
        .map(|b| {
            if b.end > b.start {
                format!("{} {}–{}", b.label, secs(b.start), secs(b.end))
            } else {
                format!("{} at {}", b.label, secs(b.start))
            }
        })
        .collect();
    Some(format!("Shaded: fault windows ({}).", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_without_windows_still_gets_four_charts_saying_so() {
        let r = crate::report::tests_support::minimal_record();
        let c = charts(&r);
        assert_eq!(c.len(), 4);
        assert!(c.iter().all(|c| c.svg.contains(">no data</text>") && !c.svg.contains("fault-window")));
        assert_eq!(legend_line(&r), None);
    }
}
