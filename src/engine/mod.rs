//! The run engine: validate → preflight → steady state before → load + fault timeline with stop
//! conditions → revert → recovery → verdict and report. One dispatcher loop; everything the run
//! does is emitted as events that the progress display, the journal and the report consume.

use std::path::PathBuf;

use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario file.
    pub file: PathBuf,
    /// Directory for reports (a subdirectory per run is created).
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Seed for random selections (overrides the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Scenario file.
    pub file: PathBuf,
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct RecoverArgs {}

pub fn cmd_run(args: RunArgs) -> anyhow::Result<Exit> {
    let _ = args;
    anyhow::bail!("siege run is not implemented yet")
}

pub fn cmd_plan(args: PlanArgs) -> anyhow::Result<Exit> {
    let _ = args;
    anyhow::bail!("siege plan is not implemented yet")
}

pub fn cmd_recover(args: RecoverArgs) -> anyhow::Result<Exit> {
    let _ = args;
    anyhow::bail!("siege recover is not implemented yet")
}
