//! The scenario format: YAML in, a validated [`Scenario`] out.
//!
//! Two layers (as ripgrep's `LowArgs` → `HiArgs`): `raw` is plain serde with unknown keys
//! rejected and explicit `type:` tags; `validate` turns it into the [`model`] the engine runs,
//! collecting *every* error with its file, line and column.

pub mod model;
pub mod units;

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

/// Reads, parses and validates one scenario file. On failure, every problem found.
pub fn load_file(path: &Path) -> Result<Scenario, Vec<Diagnostic>> {
    let _ = path;
    Err(vec![Diagnostic {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        path: String::new(),
        message: "scenario loading is not implemented yet".into(),
        hint: None,
    }])
}

/// `siege validate FILE...`: prints every diagnostic, exits 3 on any error, 0 when all are valid.
pub fn cmd_validate(files: &[std::path::PathBuf]) -> crate::exit::Exit {
    let mut ok = true;
    for f in files {
        if let Err(diags) = load_file(f) {
            ok = false;
            for d in diags {
                eprintln!("{d}");
            }
        }
    }
    if ok { crate::exit::Exit::Passed } else { crate::exit::Exit::Invalid }
}

/// `siege schema`: prints the JSON Schema of the scenario format.
pub fn cmd_schema() -> crate::exit::Exit {
    println!("{{}}");
    crate::exit::Exit::Passed
}
