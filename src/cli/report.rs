//! `siege validate`, `siege schema` and `siege report`: the commands that read files and print,
//! without a run.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Failure;
use crate::exit::Exit;
use crate::report::ReportError;

/// `siege validate FILE...`: prints every diagnostic (stderr), and `FILE: ok` for each valid file
/// (stdout); exits 3 on any error, 0 when all are valid.
pub(super) fn cmd_validate(files: &[PathBuf]) -> Exit {
    let mut ok = true;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for f in files {
        match crate::scenario::load_file(f) {
            Ok(_) => {
                let _ = writeln!(stdout.lock(), "{}: ok", f.display());
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
    println!("{}", crate::scenario::schema_json());
    Exit::Passed
}

/// `siege report DIR`: re-renders the markdown (and charts, JUnit) from `DIR/report.json`.
pub(super) fn cmd_report(dir: &Path) -> anyhow::Result<Exit> {
    let (record, out, written) = crate::report::rerender(dir).map_err(|e| match e {
        // Writing beside a report that was read is this machine's problem, not the input's.
        ReportError::Write { .. } => anyhow::Error::from(e),
        e => Failure::new(Exit::Invalid, e.to_string()),
    })?;
    println!(
        "{}: {} — re-rendered {} in {}",
        record.scenario.name,
        record.verdict.outcome.word().to_lowercase(),
        written.join(", "),
        out.display()
    );
    Ok(Exit::Passed)
}
