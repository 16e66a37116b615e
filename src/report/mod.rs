//! Reports of a finished run: `report.json` (the stored record, versioned schema),
//! `report.md` for the debrief with SVG charts beside it, and `junit.xml` for CI systems.
//! Renderers read only the [`RunRecord`]; `siege report DIR` re-renders from `report.json`.

pub mod record;

pub use record::*;

use std::path::Path;

use crate::exit::Exit;

/// Writes `report.json`, `report.md`, the charts and `junit.xml` into `dir` (created if missing).
pub fn write_all(record: &RunRecord, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(record).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    Ok(())
}

/// `siege report DIR`: re-renders the markdown (and charts, JUnit) from `DIR/report.json`.
pub fn cmd_report(dir: &Path) -> anyhow::Result<Exit> {
    let _ = dir;
    anyhow::bail!("siege report is not implemented yet")
}
