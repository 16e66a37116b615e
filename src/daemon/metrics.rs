//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written by hand.
//! Figures from the history (runs by scenario and state, the latest run, time-to-detect and
//! MTTR per scenario) and live figures the server passes in ([`Live`]: active faults, schedule
//! lag, runs in progress, the webhook's counts). See docs/daemon.md, "Metrics".

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::store::{Store, StoreError};
use super::webhook::WebhookStats;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What only the running daemon knows, filled in by the server for each scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Faults in place now, per scenario of a running run.
    pub active_faults: BTreeMap<String, u64>,
    /// Per schedule: how late its last due time fired (or, when it is due and has not fired
    /// yet, how late it is now).
    pub schedule_lag: BTreeMap<String, Duration>,
    pub runs_in_progress: u64,
    /// `None` without a webhook.
    pub webhook: Option<WebhookStats>,
}

/// A label value escaped as the format says: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: integers without a fraction, seconds to the millisecond.
fn value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let ls: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let _ = write!(self.0, "{{{}}}", ls.join(","));
        }
        let _ = writeln!(self.0, " {}", value(v));
    }
}

/// The whole exposition.
pub fn render(store: &Store, live: &Live) -> Result<String, StoreError> {
    let mut o = Out(String::new());
    o.family("siege_runs_total", "counter", "Runs that ended, by scenario and state (retention does not lower it).");
    for (scenario, state, n) in store.run_counts()? {
        o.sample("siege_runs_total", &[("scenario", &scenario), ("state", state.as_str())], n as f64);
    }
    let latest = store.latest_per_scenario()?;
    o.family(
        "siege_last_run_timestamp_seconds",
        "gauge",
        "When the latest finished run of a scenario started (Unix time).",
    );
    for l in &latest {
        let t = l.last.started_at.as_millisecond() as f64 / 1000.0;
        o.sample("siege_last_run_timestamp_seconds", &[("scenario", &l.scenario), ("state", l.last.state.as_str())], t);
    }
    o.family(
        "siege_last_time_to_detect_seconds",
        "gauge",
        "Time-to-detect of the latest run of a scenario that had one.",
    );
    for l in &latest {
        if let Some(d) = l.last_with_ttd.as_ref().and_then(|r| r.time_to_detect) {
            o.sample("siege_last_time_to_detect_seconds", &[("scenario", &l.scenario)], d.as_secs_f64());
        }
    }
    o.family("siege_last_mttr_seconds", "gauge", "Time to restore after the last disruption (MTTR, report.json timings.time_to_recover_s) of the latest run of a scenario that had one.");
    for l in &latest {
        if let Some(d) = l.last_with_mttr.as_ref().and_then(|r| r.mttr) {
            o.sample("siege_last_mttr_seconds", &[("scenario", &l.scenario)], d.as_secs_f64());
        }
    }
    live_figures(&mut o, live);
    usable(&mut o, true);
    Ok(o.0)
}

/// The exposition when the history cannot be read: the live figures, and
/// `siege_history_usable 0`.
pub fn render_unusable(live: &Live) -> String {
    let mut o = Out(String::new());
    live_figures(&mut o, live);
    usable(&mut o, false);
    o.0
}

fn usable(o: &mut Out, yes: bool) {
    o.family("siege_history_usable", "gauge", "1 while the history can be read and written, 0 once it cannot.");
    o.sample("siege_history_usable", &[], if yes { 1.0 } else { 0.0 });
}

fn live_figures(o: &mut Out, live: &Live) {
    o.family("siege_runs_in_progress", "gauge", "Runs in progress.");
    o.sample("siege_runs_in_progress", &[], live.runs_in_progress as f64);
    o.family("siege_active_faults", "gauge", "Faults in place now, by scenario of the running run.");
    for (scenario, n) in &live.active_faults {
        o.sample("siege_active_faults", &[("scenario", scenario)], *n as f64);
    }
    o.family("siege_schedule_lag_seconds", "gauge", "How late a schedule's latest due time fired.");
    for (schedule, lag) in &live.schedule_lag {
        o.sample("siege_schedule_lag_seconds", &[("schedule", schedule)], lag.as_secs_f64());
    }
    if let Some(w) = &live.webhook {
        o.family("siege_webhook_alerts_total", "counter", "Alerts by what became of them.");
        for (outcome, n) in [("delivered", w.delivered), ("failed", w.failed), ("dropped", w.dropped)] {
            o.sample("siege_webhook_alerts_total", &[("outcome", outcome)], n as f64);
        }
        o.family("siege_webhook_retries_total", "counter", "Webhook attempts after the first.");
        o.sample("siege_webhook_retries_total", &[], w.retries as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::store::{NewRun, RunEnd, RunState, Trigger};
    use jiff::{SignedDuration, Timestamp};

    /// A sample line parsed back: name, labels (unescaped) and value.
    type Sample = (String, Vec<(String, String)>, f64);

    fn parse_sample(line: &str) -> Sample {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => {
                let (n, v) = line.split_once(' ').unwrap();
                return (n.into(), vec![], v.parse().unwrap());
            }
        };
        let mut labels = Vec::new();
        let mut chars = rest.chars();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut v = String::new();
            loop {
                match chars.next().unwrap() {
                    '\\' => match chars.next().unwrap() {
                        'n' => v.push('\n'),
                        c @ ('\\' | '"') => v.push(c),
                        c => panic!("bad escape \\{c} in {line}"),
                    },
                    '"' => break,
                    '\n' => panic!("raw line feed in {line}"),
                    c => v.push(c),
                }
            }
            labels.push((key, v));
            match chars.next().unwrap() {
                ',' => continue,
                '}' => break,
                c => panic!("unexpected {c} in {line}"),
            }
        }
        let value: String = chars.collect();
        (name.into(), labels, value.trim_start().parse().unwrap())
    }

    /// Checks the structure (every family's HELP then TYPE before its samples, each once) and
    /// returns the samples.
    fn parse(text: &str) -> Vec<Sample> {
        let mut typed: Vec<String> = Vec::new();
        let mut helped: Vec<String> = Vec::new();
        let mut samples = Vec::new();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!helped.contains(&name), "HELP twice: {name}");
                helped.push(name);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge"].contains(&kind), "{line}");
                assert_eq!(helped.last().map(String::as_str), Some(name), "HELP right before TYPE: {line}");
                assert!(!typed.iter().any(|t| t == name), "TYPE twice: {name}");
                typed.push(name.to_string());
            } else {
                let s = parse_sample(line);
                assert_eq!(typed.last(), Some(&s.0), "a sample of the family just typed: {line}");
                if s.0.ends_with("_total") {
                    assert!(text.contains(&format!("# TYPE {} counter", s.0)));
                }
                samples.push(s);
            }
        }
        samples
    }

    fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, ls, _)| {
                n == name
                    && ls.len() == labels.len()
                    && labels.iter().all(|(k, v)| ls.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|s| s.2)
    }

    fn add(store: &Store, id: &str, scenario: &str, start: &str, end: Option<(RunState, Option<u64>, Option<u64>)>) {
        let started: Timestamp = start.parse().unwrap();
        let run = NewRun {
            id: id.into(),
            scenario: scenario.into(),
            target: "lab:api".into(),
            trigger: Trigger::Api,
            schedule: None,
            started_at: started,
            blind: false,
        };
        store.insert_run(&run).unwrap();
        if let Some((state, ttd, mttr)) = end {
            let end = RunEnd {
                state,
                finished_at: started + SignedDuration::from_mins(3),
                time_to_detect: ttd.map(Duration::from_millis),
                mttr: mttr.map(Duration::from_millis),
                record: None,
            };
            store.finish_run(id, &end).unwrap();
        }
    }

    #[test]
    fn exposition_of_the_history_and_the_live_figures() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("history.db")).unwrap();
        let odd = "we\"ird\\name\nx";
        add(&store, "a1", "task-kill", "2026-12-01T00:00:00Z", Some((RunState::Passed, Some(2500), Some(21_000))));
        add(&store, "a2", "task-kill", "2026-12-01T01:00:00Z", Some((RunState::Passed, Some(3000), Some(19_500))));
        // The latest run had no figures: the gauges keep the latest that had them.
        add(&store, "a3", "task-kill", "2026-12-01T02:00:00Z", Some((RunState::Failed, None, None)));
        add(&store, "a4", "task-kill", "2026-12-01T03:00:00Z", None);
        add(&store, "b1", odd, "2026-12-01T00:30:00Z", Some((RunState::Aborted, Some(1000), None)));
        let live = Live {
            active_faults: [("task-kill".to_string(), 2)].into(),
            schedule_lag: [("nightly".to_string(), Duration::from_millis(350))].into(),
            runs_in_progress: 1,
            webhook: Some(WebhookStats { delivered: 4, failed: 1, dropped: 2, retries: 3, last_error: None }),
        };
        let text = render(&store, &live).unwrap();
        let s = parse(&text);
        let tk = ("scenario", "task-kill");
        assert_eq!(get(&s, "siege_runs_total", &[tk, ("state", "passed")]), Some(2.0));
        assert_eq!(get(&s, "siege_runs_total", &[tk, ("state", "failed")]), Some(1.0));
        assert_eq!(get(&s, "siege_runs_total", &[tk, ("state", "running")]), None, "a run under way has not ended");
        assert_eq!(get(&s, "siege_runs_total", &[("scenario", odd), ("state", "aborted")]), Some(1.0));
        assert_eq!(
            get(&s, "siege_last_run_timestamp_seconds", &[tk, ("state", "failed")]),
            Some("2026-12-01T02:00:00Z".parse::<Timestamp>().unwrap().as_second() as f64)
        );
        assert_eq!(get(&s, "siege_last_time_to_detect_seconds", &[tk]), Some(3.0));
        assert_eq!(get(&s, "siege_last_mttr_seconds", &[tk]), Some(19.5));
        assert_eq!(get(&s, "siege_last_time_to_detect_seconds", &[("scenario", odd)]), Some(1.0));
        assert_eq!(get(&s, "siege_last_mttr_seconds", &[("scenario", odd)]), None, "no run of it had an MTTR");
        assert_eq!(get(&s, "siege_runs_in_progress", &[]), Some(1.0));
        assert_eq!(get(&s, "siege_active_faults", &[tk]), Some(2.0));
        assert_eq!(get(&s, "siege_schedule_lag_seconds", &[("schedule", "nightly")]), Some(0.35));
        assert_eq!(get(&s, "siege_webhook_alerts_total", &[("outcome", "dropped")]), Some(2.0));
        assert_eq!(get(&s, "siege_webhook_retries_total", &[]), Some(3.0));
        // The escaped line as written.
        assert!(text.contains("siege_runs_total{scenario=\"we\\\"ird\\\\name\\nx\",state=\"aborted\"} 1\n"), "{text}");
        assert!(text.contains("# HELP siege_runs_total Runs that ended"));
        assert!(text.contains("# TYPE siege_last_mttr_seconds gauge\n"));

        // An empty history and no webhook: the families are there, without samples.
        let dir2 = tempfile::tempdir().unwrap();
        let empty = Store::open(&dir2.path().join("history.db")).unwrap();
        let text = render(&empty, &Live::default()).unwrap();
        let s = parse(&text);
        assert_eq!(s.len(), 2, "only siege_runs_in_progress and siege_history_usable: {text}");
        assert_eq!(get(&s, "siege_history_usable", &[]), Some(1.0));
        assert!(!text.contains("webhook"));
        // A history that cannot be read: the live figures, and the history said unusable.
        let s = parse(&render_unusable(&live));
        assert_eq!(get(&s, "siege_history_usable", &[]), Some(0.0));
        assert_eq!(get(&s, "siege_runs_in_progress", &[]), Some(1.0));
        assert_eq!(get(&s, "siege_runs_total", &[tk, ("state", "passed")]), None);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("l1\nl2"), "l1\\nl2");
        assert_eq!(escape_label("plain-name_1.x"), "plain-name_1.x");
        assert_eq!(value(3.0), "3");
        assert_eq!(value(0.35), "0.35");
    }
}
