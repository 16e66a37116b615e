//! The scenario format: YAML in, a validated [`Scenario`] out.
//!
//! Two layers, as ripgrep's `LowArgs` → `HiArgs`: the file is read into a tree of YAML nodes that
//! keep their line and column (`yaml`), then checked key by key into the [`model`] the engine
//! runs (`validate`, with the reading helpers of `check` and the expressions of `expr`). serde
//! would stop at the first error; checking the tree ourselves lets `siege validate` report
//! *every* problem of a file, each at its own position. `spec` describes the same format as serde
//! types for the JSON Schema (`siege schema`); a test keeps their keys in step.

pub(crate) mod check;
mod expr;
pub mod model;
mod spec;
pub mod units;
pub(crate) mod validate;
pub(crate) mod yaml;

pub use model::*;

use std::path::Path;

/// One problem found in a scenario file, rendered as `file:line:col: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `faults[0].select`; empty for whole-file problems.
    pub path: String,
    pub message: String,
    /// An optional hint, e.g. a did-you-mean suggestion.
    pub hint: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Scenario files larger than this are refused before parsing: a scenario is a page of YAML.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads, parses and validates one scenario file. On failure, every problem found, in the order
/// of the file.
pub fn load_file(path: &Path) -> Result<Scenario, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let whole = |line: usize, column: usize, message: String, hint: Option<String>| {
        vec![Diagnostic { file: file.clone(), line, column, path: String::new(), message, hint }]
    };
    if path.is_dir() {
        return Err(whole(1, 1, "is a directory, not a scenario file".into(), None));
    }
    let bytes = match read_at_most(path, MAX_FILE_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(whole(1, 1, "no such file".into(), None));
        }
        Err(e) => return Err(whole(1, 1, format!("cannot read the file: {}", lowercase_io(&e)), None)),
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        // The whole size when the file has one; a device or a pipe may never end.
        let size = std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len());
        let message = match size {
            Some(n) => format!("the file is {n} bytes: a scenario is at most 1 MiB"),
            None => "the input is larger than 1 MiB: a scenario is at most 1 MiB".to_string(),
        };
        return Err(whole(1, 1, message, None));
    }
    load_bytes(&file, &bytes, path.parent().unwrap_or(Path::new(".")))
}

/// The first `limit + 1` bytes of `path` at most: enough to tell that it is too large without
/// reading an endless input (`/dev/zero`, a pipe) to its end.
pub(crate) fn read_at_most(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Parses and validates the bytes of a scenario; `file` labels the diagnostics and `dir` is where
/// `runbook` is resolved from.
pub fn load_bytes(file: &str, bytes: &[u8], dir: &Path) -> Result<Scenario, Vec<Diagnostic>> {
    let root = parse_yaml(
        file,
        bytes,
        "a scenario needs at least `name`, `load`, `steady_state` and `recovery`; see docs/scenario.md",
    )?;
    checked(file, |cx| validate::check(cx, &root, dir))
}

/// Whether `bytes` are a scenario at all, before any diagnostic is made of them: YAML whose top
/// level is a mapping with a `name` key. The daemon asks this of a file named by a request, so
/// that a file that is not a scenario is refused without a word of its content in the answer.
pub fn looks_like_scenario(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    let Ok(root) = yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(text)) else { return false };
    match &root.kind {
        yaml::Kind::Map(entries) => entries.iter().any(|(k, _)| k.kind == yaml::Kind::Str("name".into())),
        _ => false,
    }
}

/// The text of the top-level key `key` of YAML `bytes`, when the top level is a mapping and that
/// value a scalar.
pub fn top_level_text(bytes: &[u8], key: &str) -> Option<String> {
    let root = yaml::parse(std::str::from_utf8(bytes).ok()?).ok()?;
    let yaml::Kind::Map(entries) = &root.kind else { return None };
    entries.iter().find(|(k, _)| k.kind == yaml::Kind::Str(key.into())).and_then(|(_, v)| v.scalar_text())
}

/// Parses and checks one fault mapping given on its own, as text (YAML or JSON: `{type:
/// latency, select: 1, delay: 200ms, for: 20s}`), to be injected into a run of `scenario` by
/// command: the same checks as an entry of the scenario's `manual:` catalog, against its target
/// and its load. Without `name` the fault is named after its type. `file` labels the
/// diagnostics (`request`, say); their paths are the fault's keys (`select`, `delay`).
pub fn load_fault(file: &str, bytes: &[u8], scenario: &Scenario) -> Result<ManualFault, Vec<Diagnostic>> {
    let root = parse_yaml(file, bytes, "a fault is a mapping with `type:` and its parameters; see docs/scenario.md")?;
    checked(file, |cx| validate::check_given_fault(cx, &root, scenario))
}

/// The YAML tree of `bytes`, or the one diagnostic that says why there is none (not UTF-8, a
/// syntax error, nothing at all: `empty_hint` says what is expected).
fn parse_yaml(file: &str, bytes: &[u8], empty_hint: &str) -> Result<yaml::Node, Vec<Diagnostic>> {
    let whole = |line: usize, column: usize, message: String, hint: Option<String>| {
        vec![Diagnostic { file: file.to_string(), line, column, path: String::new(), message, hint }]
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
            let col = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
            let byte = bytes[e.valid_up_to()];
            return Err(whole(
                line,
                col,
                format!("the file is not valid UTF-8 (byte 0x{byte:02x})"),
                Some("save the scenario as UTF-8".into()),
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => return Err(whole(e.line, e.col, format!("invalid YAML: {}", e.message), syntax_hint(text, &e))),
    };
    if root.kind == yaml::Kind::Null {
        return Err(whole(1, 1, "the file is empty".into(), Some(empty_hint.into())));
    }
    Ok(root)
}

/// What `check` builds, or every problem it found, in the order of the file.
fn checked<T>(file: &str, check: impl FnOnce(&mut check::Checker) -> Option<T>) -> Result<T, Vec<Diagnostic>> {
    let mut cx = check::Checker::new(file.to_string());
    match check(&mut cx) {
        Some(s) if cx.diags.is_empty() => Ok(s),
        _ => {
            let mut diags = cx.diags;
            if diags.is_empty() {
                // Defensive: a check returned nothing without saying why.
                diags = vec![Diagnostic {
                    file: file.to_string(),
                    line: 1,
                    column: 1,
                    path: String::new(),
                    message: "invalid input".into(),
                    hint: None,
                }];
            }
            diags.sort_by_key(|d| (d.line, d.column));
            Err(diags)
        }
    }
}

/// `No such file or directory (os error 2)` → `no such file or directory (os error 2)`.
pub(crate) fn lowercase_io(e: &std::io::Error) -> String {
    let s = e.to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// Hints for the YAML mistakes scenario authors make most.
fn syntax_hint(text: &str, e: &yaml::SyntaxError) -> Option<String> {
    let line = text.lines().nth(e.line.saturating_sub(1)).unwrap_or("");
    let after_colon = line.split_once(": ").map(|(_, v)| v.trim_start()).unwrap_or("");
    if after_colon.starts_with('>') || after_colon.starts_with('|') {
        return Some("quote comparisons, e.g. `\">= 2\"`: a leading `>` or `|` starts a YAML block".into());
    }
    if line.contains('\t') {
        return Some("indent with spaces: YAML does not allow tabs".into());
    }
    None
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo. Case and
/// `-`/`_` are ignored first (`task_kill` → `task-kill`), then edit distance decides.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['-', '_', ' '], "");
    let w = norm(word);
    if let Some(c) = candidates.iter().find(|c| norm(c) == w) {
        return Some(c);
    }
    let limit = match w.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (edit_distance(&w, &norm(c)), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions, the commonest
/// typo (`rtae` → `rate`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The JSON Schema of the scenario format (`siege schema`), as pretty-printed JSON.
pub fn schema_json() -> String {
    spec::schema_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_scenario() -> Scenario {
        let yaml = "name: t\ntarget: { lab: { tasks: 4 } }\nload: { url: /, rate: 10/s, duration: 60s }\n\
            steady_state: { error_rate: \"< 1%\" }\nrecovery: { within: 20s }\n";
        load_bytes("t.yaml", yaml.as_bytes(), Path::new(".")).unwrap()
    }

    #[test]
    fn a_given_fault_is_checked_like_a_catalog_entry() {
        let sc = lab_scenario();
        let f = load_fault("request", b"{ type: latency, select: 1, delay: 200ms, for: 10s }", &sc).unwrap();
        assert_eq!(f.name, "latency");
        assert_eq!(f.duration, Some(std::time::Duration::from_secs(10)));
        let json = br#"{"type": "task-kill", "name": "one", "select": 1}"#;
        assert_eq!(load_fault("request", json, &sc).unwrap().name, "one");

        let problems = |text: &str| -> Vec<String> {
            load_fault("request", text.as_bytes(), &sc).unwrap_err().iter().map(|d| d.to_string()).collect()
        };
        assert_eq!(
            problems("{ type: task_kil, select: 1 }"),
            ["request:1:9: type: unknown fault type `task_kil` (did you mean `task-kill`?)"]
        );
        assert_eq!(
            problems("{ type: task-kill, select: 1, at: 5s }"),
            ["request:1:31: at: a manual fault has no `at`: it is injected when commanded during the run \
              (move it under `faults:` to put it on the timeline)"]
        );
        let long = problems("{ type: latency, select: 1, delay: 1ms, for: 2m }");
        assert!(long[0].contains("longer than the whole load"), "{long:?}");
        let aws_only = problems("{ type: db-failover, target_instance: db-2 }");
        assert!(aws_only[0].contains("applies only to an aws target"), "{aws_only:?}");
        assert!(problems("")[0].contains("the file is empty"));
        assert!(problems("[1, 2]")[0].contains("expected a fault"));
    }

    #[test]
    fn did_you_mean_finds_typos() {
        assert_eq!(did_you_mean("rtae", &["rate", "url", "stages"]), Some("rate"));
        assert_eq!(did_you_mean("task_kill", &["task-kill", "latency"]), Some("task-kill"));
        assert_eq!(did_you_mean("Error-Rate", &["error_rate", "p95"]), Some("error_rate"));
        assert_eq!(did_you_mean("healthy_target", &["healthy_targets"]), Some("healthy_targets"));
        assert_eq!(did_you_mean("banana", &["rate", "url"]), None);
        assert_eq!(did_you_mean("x", &["p95"]), None);
    }
}
