//! The overlaid charts of `siege compare`: A and B on one time axis (seconds since each run's
//! load started), A solid and B dashed, with the fault windows of both runs shaded.

use crate::report::charts::bands;
use crate::report::svg::{Chart, Series, Style};
use crate::report::{RunRecord, WindowRecord};

/// The files, in the order `compare.md` shows them, with their titles.
pub(super) const FILES: [(&str, &str); 3] = [
    ("errors.svg", "Error rate, A and B"),
    ("latency.svg", "Latency p95, A and B"),
    ("targets.svg", "Healthy targets, A and B"),
];

const A_COLOR: &str = "#0072B2";
const B_COLOR: &str = "#D55E00";

fn end(r: &RunRecord) -> f64 {
    let windows = r.windows.iter().map(|w| f64::from(w.second) + 1.0).fold(0.0, f64::max);
    r.timings.duration_s.max(windows).max(1.0)
}

fn series(r: &RunRecord, run: &str, style: Style, f: &dyn Fn(&WindowRecord) -> Option<f64>) -> Series {
    let step = style.step();
    Series {
        label: run.into(),
        color: if run == "A" { A_COLOR } else { B_COLOR },
        style,
        points: r
            .windows
            .iter()
            .map(|w| (if step { f64::from(w.second) } else { f64::from(w.second) + 0.5 }, f(w)))
            .collect(),
    }
}

pub(super) fn charts(a: &RunRecord, b: &RunRecord) -> Vec<(&'static str, String)> {
    let x_max = end(a).max(end(b));
    let mut all_bands = bands(a, x_max, "A: ");
    all_bands.extend(bands(b, x_max, "B: "));
    let base = Chart { x_max, bands: all_bands, y_min_top: 1.0, ..Chart::default() };
    let pair = |style_b: Style, style_a: Style, f: &dyn Fn(&WindowRecord) -> Option<f64>| {
        vec![series(a, "A", style_a, f), series(b, "B", style_b, f)]
    };
    let has_load = |w: &WindowRecord| w.requests + w.missed > 0;
    let errors = Chart {
        title: "Error rate, A and B".into(),
        unit: "%".into(),
        y_min_top: 5.0,
        y_cap: Some(100.0),
        series: pair(Style::Dashed, Style::Line, &|w| has_load(w).then_some(w.error_rate * 100.0)),
        ..base.clone()
    };
    let latency = Chart {
        title: "Latency p95 from the scheduled send time, A and B".into(),
        unit: "ms".into(),
        y_min_top: 10.0,
        series: pair(Style::Dashed, Style::Line, &|w| (w.requests > 0).then_some(w.latency_ms.p95)),
        ..base.clone()
    };
    let targets = Chart {
        title: "Healthy targets, A and B".into(),
        unit: "count".into(),
        integer: true,
        y_min_top: 2.0,
        series: pair(Style::DashedStep, Style::Step, &|w| w.healthy_targets.map(f64::from)),
        ..base
    };
    let [e, l, t] = FILES;
    vec![(e.0, errors.render()), (l.0, latency.render()), (t.0, targets.render())]
}
