//! A small, deterministic SVG line chart: axes with "nice" ticks, one polyline per series (gaps
//! where a value is missing), shaded windows for faults, vertical markers for events, dashed
//! horizontal lines for steady-state thresholds, and a legend. Written by hand because a report
//! needs four simple charts, and byte-for-byte stable output keeps snapshots and diffs useful.

use std::fmt::Write as _;

use super::format::{secs, xml};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 40.0;
const FONT: &str = "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
/// Fill of fault windows; the colour-blind-safe vermillion of the Okabe–Ito palette.
const FAULT_FILL: &str = "#D55E00";
/// A white outline under labels drawn over the plot, so that they stay readable over lines.
const HALO: &str = r##" stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke""##;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Style {
    Line,
    /// Dashed, for reference series such as the scheduled rate.
    Dashed,
    /// Steps (hold the value until the next point), for counts such as healthy targets.
    Step,
    /// Dashed steps, for a second count on the same chart.
    DashedStep,
}

impl Style {
    fn dashed(self) -> bool {
        matches!(self, Style::Dashed | Style::DashedStep)
    }

    pub(crate) fn step(self) -> bool {
        matches!(self, Style::Step | Style::DashedStep)
    }
}

/// One line of the chart. `x` is seconds on the load's clock; `None` leaves a gap.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub label: String,
    pub color: &'static str,
    pub style: Style,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A shaded stretch of time (a fault's window).
#[derive(Debug, Clone)]
pub(crate) struct Band {
    pub start: f64,
    pub end: f64,
    pub label: String,
}

/// A vertical line at a moment (stop condition, steady state restored).
#[derive(Debug, Clone)]
pub(crate) struct Marker {
    pub at: f64,
    pub label: String,
    pub color: &'static str,
}

/// A horizontal dashed line at a value (a steady-state threshold).
#[derive(Debug, Clone)]
pub(crate) struct Threshold {
    pub value: f64,
    pub label: String,
}

/// One chart: what to draw and how the axes are scaled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chart {
    pub title: String,
    /// Unit of the y axis, shown after the title, e.g. `req/s`, `%`, `ms`.
    pub unit: String,
    /// End of the time axis, in seconds.
    pub x_max: f64,
    /// The y axis reaches at least this high, so that a flat line near zero stays flat.
    pub y_min_top: f64,
    /// The y axis never goes above this (100 for percentages).
    pub y_cap: Option<f64>,
    /// Whether y values are whole numbers (ticks at integers).
    pub integer: bool,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
    pub markers: Vec<Marker>,
    pub thresholds: Vec<Threshold>,
}

/// Ticks from 0 to at least `max`, at a step of 1, 2, 2.5 or 5 times a power of ten.
fn nice_ticks(max: f64, integer: bool) -> (f64, Vec<f64>) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mut step = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    } * mag;
    if integer {
        step = step.ceil().max(1.0);
    }
    let n = (max / step - 1e-9).ceil().max(1.0) as usize;
    let top = step * n as f64;
    (top, (0..=n).map(|i| step * i as f64).collect())
}

/// Time ticks: a step from a list of round durations giving at most ten ticks.
fn time_ticks(x_max: f64) -> Vec<f64> {
    const STEPS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0];
    let step = STEPS.iter().copied().find(|s| x_max / s <= 10.0).unwrap_or(7200.0);
    let n = (x_max / step + 1e-9).floor() as usize;
    (0..=n).map(|i| step * i as f64).collect()
}

/// A tick value with as many decimals as the step needs (`0.25` steps need two).
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..6usize)
        .find(|d| {
            let scaled = step * 10f64.powi(*d as i32);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(6);
    format!("{v:.decimals$}")
}

/// Rough width of `text` at 11px, for laying out the legend without measuring fonts.
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.2
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub(crate) fn render(&self) -> String {
        let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
        let x_max = if self.x_max.is_finite() && self.x_max > 0.0 { self.x_max } else { 1.0 };
        let data_max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .chain(self.thresholds.iter().map(|t| t.value))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let mut want = (data_max * 1.08).max(self.y_min_top);
        if let Some(cap) = self.y_cap {
            want = want.min(cap);
        }
        let (y_top, y_ticks) = nice_ticks(want, self.integer);
        let sx = |x: f64| x0 + (x.clamp(0.0, x_max) / x_max) * (x1 - x0);
        let sy = |y: f64| y1 - (y.clamp(0.0, y_top) / y_top) * (y1 - y0);

        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{}" font-size="11" role="img">"#,
            xml(FONT)
        );
        let unit = if self.unit.is_empty() { String::new() } else { format!(" ({})", self.unit) };
        let _ = writeln!(o, "<title>{}{}</title>", xml(&self.title), xml(&unit));
        // An opaque background keeps the chart readable on dark themes.
        let _ = writeln!(o, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
        let _ = writeln!(
            o,
            r##"<text x="{x0}" y="20" font-size="14" font-weight="bold" fill="#222222">{}<tspan dx="5" font-weight="normal" fill="#666666">{}</tspan></text>"##,
            xml(&self.title),
            xml(unit.trim_start())
        );

        // Fault windows first, under everything else.
        for (i, b) in self.bands.iter().enumerate() {
            let (bx0, bx1) = (sx(b.start), sx(b.end.max(b.start)));
            // An instantaneous fault still gets a visible sliver.
            let w = (bx1 - bx0).max(4.0);
            let _ = writeln!(
                o,
                r#"<rect class="fault-window" x="{bx0:.1}" y="{y0:.1}" width="{w:.1}" height="{:.1}" fill="{FAULT_FILL}" fill-opacity="0.14"><title>{} ({}–{})</title></rect>"#,
                y1 - y0,
                xml(&b.label),
                secs(b.start),
                secs(b.end.max(b.start)),
            );
            // Above the plot, where no data can hide them; alternating rows keep the labels
            // of faults close together apart.
            let ly = y0 - 4.0 - 11.0 * (i % 2) as f64;
            let _ = writeln!(
                o,
                r##"<text x="{:.1}" y="{ly:.1}" font-size="10" fill="#8a3b00">{}</text>"##,
                bx0 + 3.0,
                xml(&b.label)
            );
        }

        // Grid and y ticks.
        let y_step = if y_ticks.len() > 1 { y_ticks[1] - y_ticks[0] } else { y_top };
        for v in &y_ticks {
            let y = sy(*v);
            let _ = writeln!(o, r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e5e5e5"/>"##);
            let _ = writeln!(
                o,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444444">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                tick_label(*v, y_step)
            );
        }
        // Time ticks.
        for t in time_ticks(x_max) {
            let x = sx(t);
            let _ = writeln!(o, r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{:.1}" stroke="#444444"/>"##, y1 + 4.0);
            let _ = writeln!(
                o,
                r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#444444">{}</text>"##,
                y1 + 16.0,
                secs(t)
            );
        }
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666666">time since the load started</text>"##,
            (x0 + x1) / 2.0,
            HEIGHT - 6.0
        );
        // Axes.
        let _ = writeln!(o, r##"<polyline points="{x0},{y0} {x0},{y1} {x1},{y1}" fill="none" stroke="#444444"/>"##);

        for t in &self.thresholds {
            let y = sy(t.value);
            let _ = writeln!(
                o,
                r##"<line class="threshold" x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#555555" stroke-dasharray="6 4"/>"##
            );
            // Labelled at the left end: marker labels take the bottom right, where the
            // recovery deadline usually is.
            let _ = writeln!(
                o,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#555555"{HALO}>{}</text>"##,
                x0 + 4.0,
                y - 4.0,
                xml(&t.label)
            );
        }

        let mut any_data = false;
        for s in &self.series {
            let dash = if s.style.dashed() { r#" stroke-dasharray="5 3""# } else { "" };
            for segment in segments(&s.points, s.style) {
                any_data = true;
                let pts: Vec<String> = segment.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
                let _ = writeln!(
                    o,
                    r#"<polyline class="series" data-series="{}" points="{}" fill="none" stroke="{}" stroke-width="1.8" stroke-linejoin="round"{dash}/>"#,
                    xml(&s.label),
                    pts.join(" "),
                    s.color
                );
            }
        }
        if !any_data {
            let _ = writeln!(
                o,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13" fill="#888888">no data</text>"##,
                (x0 + x1) / 2.0,
                (y0 + y1) / 2.0
            );
        }

        // A marker outside the time axis (a deadline after the run ended) is left out rather
        // than drawn on the edge, where it would claim the wrong time.
        // Spans of the marker labels already placed, per row from the bottom: a label that would
        // overlap one goes up a row.
        let mut rows: Vec<Vec<(f64, f64)>> = Vec::new();
        for m in self.markers.iter().filter(|m| m.at >= 0.0 && m.at <= x_max) {
            let x = sx(m.at);
            let _ = writeln!(
                o,
                r#"<line class="marker" x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="{}" stroke-width="1.5" stroke-dasharray="2 3"/>"#,
                m.color
            );
            // Labels sit to the right of the line unless that would run off the chart.
            let right = x + 4.0 + text_width(&m.label) <= x1;
            let (lx, anchor) = if right { (x + 4.0, "start") } else { (x - 4.0, "end") };
            let w = text_width(&m.label) * 0.9;
            let span = if right { (lx, lx + w) } else { (lx - w, lx) };
            let row = match rows.iter().position(|r| r.iter().all(|s| span.1 < s.0 || span.0 > s.1)) {
                Some(i) => i,
                None => {
                    rows.push(Vec::new());
                    rows.len() - 1
                }
            };
            rows[row].push(span);
            let _ = writeln!(
                o,
                r#"<text x="{lx:.1}" y="{:.1}" text-anchor="{anchor}" font-size="10" fill="{}"{HALO}>{}</text>"#,
                y1 - 6.0 - 12.0 * row as f64,
                m.color,
                xml(&m.label)
            );
        }

        // Legend, on one row under the title.
        let mut lx = x0;
        let ly = 38.0;
        for s in &self.series {
            let dash = if s.style.dashed() { r#" stroke-dasharray="5 3""# } else { "" };
            let _ = writeln!(
                o,
                r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2.5"{dash}/>"#,
                ly - 4.0,
                lx + 18.0,
                ly - 4.0,
                s.color
            );
            let _ = writeln!(o, r##"<text x="{:.1}" y="{ly}" fill="#222222">{}</text>"##, lx + 22.0, xml(&s.label));
            lx += 22.0 + text_width(&s.label) + 16.0;
        }
        if !self.bands.is_empty() {
            let _ = writeln!(
                o,
                r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="10" fill="{FAULT_FILL}" fill-opacity="0.3"/>"#,
                ly - 9.0
            );
            let _ = writeln!(o, r##"<text x="{:.1}" y="{ly}" fill="#222222">fault window</text>"##, lx + 18.0);
            lx += 18.0 + text_width("fault window") + 16.0;
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(
                o,
                r##"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#555555" stroke-dasharray="6 4"/>"##,
                ly - 4.0,
                lx + 18.0,
                ly - 4.0
            );
            let _ =
                writeln!(o, r##"<text x="{:.1}" y="{ly}" fill="#222222">steady-state threshold</text>"##, lx + 22.0);
        }
        o.push_str("</svg>\n");
        o
    }
}

/// Splits points into runs without gaps; a step series gets its corners, and its last point is
/// held for one second (the length of a window).
fn segments(points: &[(f64, Option<f64>)], style: Style) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        match y {
            Some(y) if y.is_finite() => {
                if style.step()
                    && let Some(&(_, py)) = cur.last()
                {
                    cur.push((*x, py));
                }
                cur.push((*x, *y));
            }
            _ => {
                if !cur.is_empty() {
                    out.push(close(std::mem::take(&mut cur), style));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(close(cur, style));
    }
    out
}

fn close(mut seg: Vec<(f64, f64)>, style: Style) -> Vec<(f64, f64)> {
    if style.step()
        && let Some(&(x, y)) = seg.last()
    {
        seg.push((x + 1.0, y));
    }
    // Interior points of a flat stretch add nothing to the drawing; an hour-long run at a steady
    // state would otherwise carry thousands of them per series.
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(seg.len());
    for (i, p) in seg.iter().enumerate() {
        let flat = i > 0 && i + 1 < seg.len() && seg[i - 1].1 == p.1 && seg[i + 1].1 == p.1;
        if !flat {
            out.push(*p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(100.0, false), (100.0, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]));
        assert_eq!(nice_ticks(3.0, true).0, 3.0);
        assert_eq!(nice_ticks(0.0, false).0, 1.0);
        let (top, t) = nice_ticks(1234.0, false);
        assert!(top >= 1234.0 && t.len() <= 7, "{top} {t:?}");
        assert_eq!(time_ticks(120.0), vec![0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0, 105.0, 120.0]);
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(40.0, 20.0), "40");
    }

    #[test]
    fn gaps_split_lines_and_steps_hold_their_value() {
        let pts = vec![(0.0, Some(1.0)), (1.0, Some(2.0)), (2.0, None), (3.0, Some(3.0))];
        let segs = segments(&pts, Style::Line);
        assert_eq!(segs, vec![vec![(0.0, 1.0), (1.0, 2.0)], vec![(3.0, 3.0)]]);
        let steps = segments(&pts[..2], Style::Step);
        assert_eq!(steps, vec![vec![(0.0, 1.0), (1.0, 1.0), (1.0, 2.0), (2.0, 2.0)]]);
        let flat: Vec<(f64, Option<f64>)> =
            (0..100).map(|i| (f64::from(i), Some(if i == 50 { 9.0 } else { 3.0 }))).collect();
        assert_eq!(
            segments(&flat, Style::Line),
            vec![vec![(0.0, 3.0), (49.0, 3.0), (50.0, 9.0), (51.0, 3.0), (99.0, 3.0)]]
        );
    }

    #[test]
    fn render_is_deterministic_and_escapes_labels() {
        let chart = Chart {
            title: "Errors".into(),
            unit: "%".into(),
            x_max: 10.0,
            y_min_top: 5.0,
            series: vec![Series {
                label: "a<b".into(),
                color: "#0072B2",
                style: Style::Line,
                points: vec![(0.5, Some(1.0)), (1.5, Some(2.0))],
            }],
            bands: vec![Band { start: 2.0, end: 4.0, label: "latency & co".into() }],
            ..Chart::default()
        };
        let a = chart.render();
        assert_eq!(a, chart.render());
        assert!(a.contains("a&lt;b") && a.contains("latency &amp; co"));
        assert!(a.contains(r#"class="fault-window""#));
        assert!(!a.contains("no data"));
    }
}
