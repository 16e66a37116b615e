//! The daemon's config file (YAML): its schedules, the webhook for alerts and how much history
//! to keep. Read like a scenario (the same YAML tree and checker as `crate::scenario`): every
//! problem is collected and reported as `file:line:col: path: message`, nothing stops at the
//! first. See docs/daemon.md, "Configuration".

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::scenario::Diagnostic;
use crate::scenario::check::{Checker, Fields, index, join};
use crate::scenario::validate::identifier;
use crate::scenario::yaml::{self, Kind, Node};

use super::schedule::{Cadence, CronCadence, Schedule, ScheduleError, time_zone};
use super::store::Retention;

/// The config's top-level keys (`siege validate` tells a config from a scenario by them).
pub(crate) const TOP_KEYS: &[&str] = &["schedules", "webhook", "retention"];
const SCHEDULE_KEYS: &[&str] = &["name", "scenario", "cron", "timezone", "every", "jitter", "enabled", "catch_up"];
const RETENTION_KEYS: &[&str] = &["keep_runs", "max_age"];

/// Finished runs kept per scenario when the config says nothing.
pub const DEFAULT_KEEP_RUNS: usize = 1000;

/// Config files larger than this are refused before parsing.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The daemon's validated config. The default (no file) has no schedules and no webhook.
#[derive(Debug, Clone)]
pub struct Config {
    pub schedules: Vec<ScheduleConfig>,
    /// Where alerts are posted (Slack-compatible JSON).
    pub webhook: Option<String>,
    pub retention: Retention,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            schedules: Vec::new(),
            webhook: None,
            retention: Retention { keep_runs: Some(DEFAULT_KEEP_RUNS), max_age: None },
        }
    }
}

/// One schedule and the scenario it runs.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub schedule: Schedule,
    /// The scenario file, resolved against the config file's directory.
    pub scenario: PathBuf,
}

/// A config that was refused: every problem, in the order of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

fn render(d: &[Diagnostic]) -> String {
    d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
}

/// Reads and validates the config file at `path`; scenario paths are resolved against its
/// directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let whole = |message: String| ConfigError {
        diagnostics: vec![Diagnostic {
            file: file.clone(),
            line: 1,
            column: 1,
            path: String::new(),
            message,
            hint: None,
        }],
    };
    let bytes = match crate::scenario::read_at_most(path, MAX_FILE_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(whole("no such file".into())),
        Err(e) => return Err(whole(format!("cannot read the file: {}", crate::scenario::lowercase_io(&e)))),
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(whole("the file is larger than 1 MiB: a config is at most 1 MiB".into()));
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Err(whole("the file is not valid UTF-8".into()));
    };
    load_str(&file, text, path.parent().unwrap_or(Path::new(".")))
}

/// Validates the text of a config; `file` labels the diagnostics and `dir` is where scenario
/// paths are resolved from.
pub fn load_str(file: &str, text: &str, dir: &Path) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = yaml::parse(text).map_err(|e| ConfigError {
        diagnostics: vec![Diagnostic {
            file: file.to_string(),
            line: e.line,
            column: e.col,
            path: String::new(),
            message: format!("invalid YAML: {}", e.message),
            hint: None,
        }],
    })?;
    let mut cx = Checker::new(file.to_string());
    let config = check(&mut cx, &root, dir);
    match config {
        Some(c) if cx.diags.is_empty() => Ok(c),
        _ => {
            let mut diagnostics = cx.diags;
            diagnostics.sort_by_key(|d| (d.line, d.column));
            Err(ConfigError { diagnostics })
        }
    }
}

fn none(_: &str) -> Option<String> {
    None
}

fn check(cx: &mut Checker, root: &Node, dir: &Path) -> Option<Config> {
    if root.kind == Kind::Null {
        return Some(Config::default());
    }
    let f = cx.fields(root, "", TOP_KEYS, &none)?;
    let schedules = match f.get("schedules") {
        None => Some(Vec::new()),
        Some(n) => schedule_list(cx, n, dir),
    };
    let webhook = f.get("webhook").and_then(|n| webhook(cx, n));
    let retention = match f.get("retention") {
        None => Some(Config::default().retention),
        Some(n) => retention(cx, n),
    };
    if f.get("webhook").is_some() && webhook.is_none() {
        return None;
    }
    Some(Config { schedules: schedules?, webhook, retention: retention? })
}

fn webhook(cx: &mut Checker, node: &Node) -> Option<String> {
    let s = cx.text(node, "webhook")?;
    let ok = s
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty()));
    if !ok {
        cx.error(
            node,
            "webhook",
            format!("`{s}` is not an http or https URL"),
            Some("e.g. `https://hooks.example.com/T000/B000`".into()),
        );
        return None;
    }
    Some(s)
}

fn retention(cx: &mut Checker, node: &Node) -> Option<Retention> {
    let f = cx.fields(node, "retention", RETENTION_KEYS, &none)?;
    let keep_runs = match f.get("keep_runs") {
        None => Some(Some(DEFAULT_KEEP_RUNS)),
        Some(n) => cx.count(n, &f.path("keep_runs"), 1, 1_000_000).map(|k| Some(k as usize)),
    };
    let max_age = match f.get("max_age") {
        None => Some(None),
        Some(n) => cx.positive_duration(n, &f.path("max_age")).map(Some),
    };
    Some(Retention { keep_runs: keep_runs?, max_age: max_age? })
}

fn schedule_list(cx: &mut Checker, node: &Node, dir: &Path) -> Option<Vec<ScheduleConfig>> {
    let Kind::Seq(items) = &node.kind else {
        cx.error(node, "schedules", format!("expected a list of schedules, found {}", node.kind.describe()), None);
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: Vec<(String, usize)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = index("schedules", i);
        // Names are compared even when a schedule has other problems, so that a duplicate is
        // reported in the same pass.
        if let Some((name, node)) = name_of(item) {
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
                let msg = format!("duplicate schedule name `{name}` (first used on line {first})");
                cx.error(node, &join(&path, "name"), msg, None);
                ok = false;
            } else {
                names.push((name, node.line));
            }
        }
        match schedule(cx, item, &path, dir) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The `name` of a schedule item as written, if it has one.
fn name_of(item: &Node) -> Option<(String, &Node)> {
    let Kind::Map(entries) = &item.kind else { return None };
    let (_, v) = entries.iter().find(|(k, _)| k.scalar_text().as_deref() == Some("name"))?;
    Some((v.scalar_text()?, v))
}

fn schedule(cx: &mut Checker, node: &Node, path: &str, dir: &Path) -> Option<ScheduleConfig> {
    let f = cx.fields(node, path, SCHEDULE_KEYS, &none)?;
    let name = cx
        .require(&f, "name", "a short identifier such as `nightly-task-kill`")
        // Schedule names end up in metrics labels and URLs: the scenario names' alphabet.
        .and_then(|n| identifier(cx, n, &f.path("name")));
    let scenario = cx
        .require(&f, "scenario", "the scenario file to run, relative to this file")
        .and_then(|n| scenario_path(cx, n, &f.path("scenario"), dir));
    let cadence = cadence(cx, &f);
    let jitter = match f.get("jitter") {
        None => Some(Duration::ZERO),
        Some(n) => cx.duration(n, &f.path("jitter")),
    };
    let enabled = match f.get("enabled") {
        None => Some(true),
        Some(n) => cx.boolean(n, &f.path("enabled")),
    };
    let catch_up = match f.get("catch_up") {
        None => Some(None),
        Some(n) => cx.duration(n, &f.path("catch_up")).map(Some),
    };
    let schedule = Schedule { name: name?, cadence: cadence?, jitter: jitter?, enabled: enabled?, catch_up: catch_up? };
    Some(ScheduleConfig { schedule, scenario: scenario? })
}

/// `cron` (with an optional `timezone`) or `every`: exactly one of them.
fn cadence(cx: &mut Checker, f: &Fields<'_>) -> Option<Cadence> {
    match (f.get("cron"), f.get("every")) {
        (Some(_), Some(every)) => {
            let key = f.key_node("every").unwrap_or(every);
            cx.error(key, &f.path("every"), "set either `cron` or `every`, not both", None);
            None
        }
        (None, None) => {
            cx.error(
                f.node,
                &f.path,
                "missing `cron` or `every`",
                Some("e.g. `cron: \"0 2 * * *\"` or `every: 6h`".into()),
            );
            None
        }
        (None, Some(every)) => {
            if let Some(tz) = f.key_node("timezone") {
                cx.error(tz, &f.path("timezone"), "`timezone` applies to `cron` only", None);
            }
            let d = cx.positive_duration(every, &f.path("every"))?;
            match Cadence::every(d) {
                Ok(c) => Some(c),
                Err(e) => {
                    cx.error(every, &f.path("every"), e.to_string(), None);
                    None
                }
            }
        }
        (Some(cron), None) => {
            let expr = cx.text(cron, &f.path("cron"));
            let zone = match f.get("timezone") {
                None => Some("UTC".to_string()),
                Some(n) => cx.text(n, &f.path("timezone")).and_then(|z| zone_name(cx, n, &f.path("timezone"), z)),
            };
            let (expr, zone) = (expr?, zone?);
            match CronCadence::new(&expr, &zone) {
                Ok(c) => Some(Cadence::Cron(Box::new(c))),
                Err(ScheduleError::Cron { message, .. }) => {
                    cx.error(cron, &f.path("cron"), format!("invalid cron expression: {message}"), None);
                    None
                }
                Err(e) => {
                    cx.error(cron, &f.path("cron"), e.to_string(), None);
                    None
                }
            }
        }
    }
}

/// A time zone name that the tz database knows, with a did-you-mean hint otherwise.
fn zone_name(cx: &mut Checker, node: &Node, path: &str, name: String) -> Option<String> {
    if time_zone(&name).is_ok() {
        return Some(name);
    }
    let db = jiff::tz::db();
    let known: Vec<String> = db.available().map(|n| n.as_str().to_string()).collect();
    let refs: Vec<&str> = known.iter().map(String::as_str).collect();
    let hint = match crate::scenario::did_you_mean(&name, &refs) {
        Some(s) => format!("did you mean `{s}`?"),
        None => "an IANA name such as `Europe/Berlin` or `UTC`".to_string(),
    };
    cx.error(node, path, format!("unknown time zone `{name}`"), Some(hint));
    None
}

fn scenario_path(cx: &mut Checker, node: &Node, path: &str, dir: &Path) -> Option<PathBuf> {
    let s = cx.text(node, path)?;
    let resolved = dir.join(&s);
    if !resolved.is_file() {
        cx.error(
            node,
            path,
            format!("scenario not found: {}", resolved.display()),
            Some("the path is relative to the config file's directory".into()),
        );
        return None;
    }
    Some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diags(text: &str, dir: &Path) -> Vec<String> {
        match load_str("daemon.yaml", text, dir) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.diagnostics.iter().map(|d| d.to_string()).collect(),
        }
    }

    /// A directory holding `task-kill.yaml`, as the schedules below name it.
    fn scenario_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("task-kill.yaml"), "name: x\n").unwrap();
        dir
    }

    #[test]
    fn a_good_config_is_read_whole() {
        let dir = scenario_dir();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/latency.yaml"), "name: y\n").unwrap();
        let text = "\
webhook: https://hooks.example.com/T000/B000
retention:
  keep_runs: 50
  max_age: 720h
schedules:
  - name: nightly
    scenario: task-kill.yaml
    cron: \"30 2 * * *\"
    timezone: Europe/Berlin
    jitter: 10m
    catch_up: 3h
  - name: pulse
    scenario: sub/latency.yaml
    every: 6h
    enabled: false
  - name: weekly
    scenario: task-kill.yaml
    cron: \"@weekly\"
";
        let path = dir.path().join("daemon.yaml");
        std::fs::write(&path, text).unwrap();
        let c = load_file(&path).unwrap();
        assert_eq!(c.webhook.as_deref(), Some("https://hooks.example.com/T000/B000"));
        assert_eq!(c.retention, Retention { keep_runs: Some(50), max_age: Some(Duration::from_secs(720 * 3600)) });
        assert_eq!(c.schedules.len(), 3);
        let n = &c.schedules[0];
        assert_eq!(n.scenario, dir.path().join("task-kill.yaml"));
        assert_eq!(n.schedule.name, "nightly");
        let Cadence::Cron(cron) = &n.schedule.cadence else { panic!("not cron") };
        assert_eq!((cron.expr(), cron.zone_name()), ("30 2 * * *", "Europe/Berlin"));
        assert_eq!((n.schedule.jitter, n.schedule.enabled), (Duration::from_secs(600), true));
        assert_eq!(n.schedule.catch_up, Some(Duration::from_secs(3 * 3600)));
        let p = &c.schedules[1];
        assert!(matches!(p.schedule.cadence, Cadence::Every(d) if d == Duration::from_secs(6 * 3600)));
        assert_eq!((p.schedule.enabled, p.schedule.catch_up, p.schedule.jitter), (false, None, Duration::ZERO));
        assert_eq!(p.scenario, dir.path().join("sub/latency.yaml"));
        let Cadence::Cron(w) = &c.schedules[2].schedule.cadence else { panic!("not cron") };
        assert_eq!(w.zone_name(), "UTC", "UTC when no timezone is given");
    }

    /// The example of docs/daemon.md is a valid config, read from the repository's root.
    #[test]
    fn the_documented_example_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/daemon.md")).unwrap();
        let example = doc.split("```yaml\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
        let c = load_str("docs/daemon.md", example, root).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.schedules.len(), 2);
        assert_eq!(c.retention, Retention { keep_runs: Some(200), max_age: Some(Duration::from_secs(720 * 3600)) });
    }

    #[test]
    fn no_schedules_is_a_valid_config() {
        for text in ["", "# nothing yet\n", "schedules: []\n", "webhook: http://127.0.0.1:9/hook\n"] {
            let c = load_str("daemon.yaml", text, Path::new(".")).unwrap();
            assert!(c.schedules.is_empty());
            assert_eq!(c.retention, Config::default().retention);
        }
    }

    #[test]
    fn unknown_keys_get_a_did_you_mean() {
        let dir = scenario_dir();
        let text = "\
schedule:
  - name: a
retention:
  keep_run: 3
";
        assert_eq!(
            diags(text, dir.path()),
            [
                "daemon.yaml:1:1: schedule: unknown key `schedule` (did you mean `schedules`?)",
                "daemon.yaml:4:3: retention.keep_run: unknown key `keep_run` (did you mean `keep_runs`?)",
            ]
        );
        let text = "\
schedules:
  - name: a
    scenario: task-kill.yaml
    every: 1h
    catchup: 1h
    time_zone: UTC
";
        assert_eq!(
            diags(text, dir.path()),
            [
                "daemon.yaml:5:5: schedules[0].catchup: unknown key `catchup` (did you mean `catch_up`?)",
                "daemon.yaml:6:5: schedules[0].time_zone: unknown key `time_zone` (did you mean `timezone`?)",
            ]
        );
    }

    #[test]
    fn bad_schedules_are_each_reported_at_their_place() {
        let dir = scenario_dir();
        let text = "\
schedules:
  - name: bad-cron
    scenario: task-kill.yaml
    cron: \"0 2 * *\"
  - name: bad-zone
    scenario: task-kill.yaml
    cron: \"@daily\"
    timezone: Europe/Berln
  - name: both
    scenario: task-kill.yaml
    cron: \"@daily\"
    every: 6h
  - name: bad-cron
    scenario: missing.yaml
    every: 6
  - name: neither
    scenario: task-kill.yaml
    jitter: often
  - name: range
    scenario: task-kill.yaml
    cron: \"61 * * * *\"
  - name: never
    scenario: task-kill.yaml
    cron: \"0 0 30 2 *\"
webhook: ftp://example.com/hook
retention:
  max_age: 0s
";
        let got = diags(text, dir.path());
        let missing = dir.path().join("missing.yaml");
        let want = [
            "daemon.yaml:4:11: schedules[0].cron: invalid cron expression: expected 5 fields (minute hour day-of-month month day-of-week), found 4".to_string(),
            "daemon.yaml:8:15: schedules[1].timezone: unknown time zone `Europe/Berln` (did you mean `Europe/Berlin`?)".to_string(),
            "daemon.yaml:12:5: schedules[2].every: set either `cron` or `every`, not both".to_string(),
            "daemon.yaml:13:11: schedules[3].name: duplicate schedule name `bad-cron` (first used on line 2)".to_string(),
            format!(
                "daemon.yaml:14:15: schedules[3].scenario: scenario not found: {} (the path is relative to the config file's directory)",
                missing.display()
            ),
            "daemon.yaml:15:12: schedules[3].every: duration `6` needs a unit: `6s`, `6ms`, `6m` or `6h`".to_string(),
            "daemon.yaml:16:5: schedules[4]: missing `cron` or `every` (e.g. `cron: \"0 2 * * *\"` or `every: 6h`)".to_string(),
            "daemon.yaml:18:13: schedules[4].jitter: invalid duration `often`: expected a number, e.g. `30s`".to_string(),
        ];
        assert_eq!(got[..want.len()], want);
        // The out-of-range field is croner's message; its place and prefix are ours.
        assert!(got[8].starts_with("daemon.yaml:21:11: schedules[5].cron: invalid cron expression: "), "{}", got[8]);
        assert_eq!(
            got[9..],
            [
                "daemon.yaml:24:11: schedules[6].cron: invalid cron expression: it matches no date at all (such as the 30th of February), so the schedule would never fire",
                "daemon.yaml:25:10: webhook: `ftp://example.com/hook` is not an http or https URL (e.g. `https://hooks.example.com/T000/B000`)",
                "daemon.yaml:27:12: retention.max_age: must be longer than zero",
            ]
        );
    }

    #[test]
    fn file_level_problems() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.yaml");
        let e = load_file(&path).unwrap_err();
        assert_eq!(e.to_string(), format!("{}:1:1: no such file", path.display()));
        assert_eq!(diags("schedules: [a\n", dir.path())[0].split(": invalid YAML").next(), Some("daemon.yaml:1:12"));
        assert_eq!(diags("- a\n", dir.path()), ["daemon.yaml:1:1: expected a mapping, found a list"]);
        assert_eq!(
            diags("schedules: {a: 1}\n", dir.path()),
            ["daemon.yaml:1:12: schedules: expected a list of schedules, found a mapping"]
        );
        // `timezone` with `every`; a name that cannot be a metrics label.
        let d = scenario_dir();
        let text = "schedules:\n  - name: a b\n    scenario: task-kill.yaml\n    every: 1h\n    timezone: UTC\n";
        assert_eq!(
            diags(text, d.path()),
            [
                "daemon.yaml:2:11: schedules[0].name: `a b` is not a valid name (use at most 64 letters, digits, `-`, `_` or `.`, e.g. `a-b`)",
                "daemon.yaml:5:5: schedules[0].timezone: `timezone` applies to `cron` only",
            ]
        );
    }
}
