//! The embedded practice lab: a service of real task processes kept at its desired count by a
//! scheduler, a balancer with health checks in front, a database cluster (writer + replica behind
//! a cluster endpoint), a secret store, and a token-protected control API through which the lab
//! backend injects faults and reads state.

use crate::exit::Exit;

/// `siege lab ...`
#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Start the lab (foreground, or in the background with --detach).
    Up,
    /// Stop a background lab and every process it started.
    Down,
    /// Show tasks, health, DB writer, secret version and active faults.
    Status,
}

pub fn cmd_lab(cmd: LabCommand) -> anyhow::Result<Exit> {
    let _ = cmd;
    anyhow::bail!("siege lab is not implemented yet")
}
