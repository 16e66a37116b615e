//! `siege validate`, `siege schema` and `siege report`: the commands that read files and print,
//! without a run.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Failure;
use crate::daemon::config;
use crate::exit::Exit;
use crate::report::ReportError;
use crate::scenario::yaml::{self, Kind};

/// Whether `path` holds a daemon config rather than a scenario: its top level is a mapping with
/// at least one of the config's keys (`schedules`, `webhook`, `retention`) and none of a
/// scenario's. Only a regular file of at most 1 MiB is looked into (a pipe read here would be
/// gone for the reader); anything else is left to the scenario reader, which says what is wrong.
fn is_daemon_config(path: &Path) -> bool {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= 1 << 20) {
        return false;
    }
    let Ok(bytes) = crate::scenario::read_at_most(path, 1 << 20) else { return false };
    let Ok(text) = std::str::from_utf8(&bytes) else { return false };
    let Ok(root) = yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(text)) else { return false };
    let Kind::Map(entries) = &root.kind else { return false };
    let keys: Vec<String> = entries.iter().filter_map(|(k, _)| k.scalar_text()).collect();
    let has = |set: &[&str]| keys.iter().any(|k| set.contains(&k.as_str()));
    has(config::TOP_KEYS) && !has(crate::scenario::validate::TOP_KEYS)
}

/// `siege validate FILE...`: prints every diagnostic (stderr), and `FILE: ok` for each valid file
/// (stdout); exits 3 on any error, 0 when all are valid. A daemon config is validated as one
/// (see [`is_daemon_config`]) and reported as `FILE: ok (daemon config)`.
pub(super) fn cmd_validate(files: &[PathBuf]) -> Exit {
    let mut ok = true;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for f in files {
        let checked = if is_daemon_config(f) {
            config::load_file(f).map(|_| " (daemon config)").map_err(|e| e.diagnostics)
        } else {
            crate::scenario::load_file(f).map(|_| "")
        };
        match checked {
            Ok(kind) => {
                let _ = writeln!(stdout.lock(), "{}: ok{kind}", f.display());
            }
            Err(diags) => {
                ok = false;
                let mut err = stderr.lock();
                for d in diags {
                    let _ = writeln!(err, "{d}");
                }
            }
        }
    }
    if ok { Exit::Passed } else { Exit::Invalid }
}

/// `siege schema`: prints the JSON Schema of the scenario format.
pub(super) fn cmd_schema() -> Exit {
    outln!("{}", crate::scenario::schema_json());
    Exit::Passed
}

/// `siege report DIR`: re-renders the markdown (and charts, JUnit) from `DIR/report.json`.
pub(super) fn cmd_report(dir: &Path) -> anyhow::Result<Exit> {
    let (record, out, written) = crate::report::rerender(dir).map_err(|e| match e {
        // Writing beside a report that was read is this machine's problem, not the input's.
        ReportError::Write { .. } => anyhow::Error::from(e),
        e => Failure::new(Exit::Invalid, e.to_string()),
    })?;
    outln!(
        "{}: {} — re-rendered {} in {}",
        record.scenario.name,
        record.verdict.outcome.word().to_lowercase(),
        written.join(", "),
        out.display()
    );
    Ok(Exit::Passed)
}
