//! `siege compare A B`: two runs of one scenario side by side; the exit code says whether B is
//! worse than A beyond the noise, so that a CI job can gate a change on it.

use std::path::{Path, PathBuf};

use super::Failure;
use crate::compare::{self, CompareError};
use crate::exit::Exit;

pub(super) const EXIT_HELP: &str = "\
Exit codes:
  0   B is no worse than A beyond the noise (the time to restore and the steady state's metrics, per phase)
  1   B is worse than A beyond the noise on one of them
  3   not comparable without --force (scenario, load, faults, target kind or size differ);
      a report missing, invalid or older than report.json version 3; usage
  70  internal error";

#[derive(Debug, clap::Args)]
pub(super) struct CompareArgs {
    /// The run before the change: a report directory (reports/NAME-TIME), its report.json, or
    /// the id of a run of a `siege daemon` (see --daemon).
    a: PathBuf,
    /// The run after the change, likewise.
    b: PathBuf,
    /// Print compare.json on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Where to write compare.md, compare.json and the charts (default: compare-A-vs-B beside
    /// B's report directory, each run named by its directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Compare runs that are not comparable anyway, with a warning at the top.
    #[arg(long)]
    force: bool,
    /// A or B may be the id of a run of this daemon: its report.json is fetched into
    /// reports/ID/ first.
    #[command(flatten)]
    daemon: super::client::Connect,
}

/// `arg` as a report on disk: a path that exists, or else the id of a daemon's run, whose
/// report.json is fetched into `reports/ID/report.json`.
fn local(arg: &Path, daemon: &super::client::Connect) -> anyhow::Result<PathBuf> {
    let id = arg.to_string_lossy();
    let looks_like_id = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if arg.exists() || !looks_like_id {
        return Ok(arg.to_path_buf());
    }
    let client = super::client::Client::new(daemon);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let record = rt.block_on(client.call(http::Method::GET, &format!("/v1/runs/{id}/report/report.json"), None))?;
    let dir = Path::new("reports").join(&*id);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("report.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&record)?)?;
    Ok(dir)
}

fn load(path: &std::path::Path) -> anyhow::Result<compare::Run> {
    compare::load(path).map_err(|e| match e {
        CompareError::Report(crate::report::ReportError::Write { .. }) | CompareError::Write { .. } => {
            anyhow::Error::from(e)
        }
        e => Failure::new(Exit::Invalid, e.to_string()),
    })
}

pub(super) fn cmd_compare(args: CompareArgs) -> anyhow::Result<Exit> {
    let (a_path, b_path) = (local(&args.a, &args.daemon)?, local(&args.b, &args.daemon)?);
    let (a, b) = (load(&a_path)?, load(&b_path)?);
    let differences = compare::check(&a.record, &b.record);
    if !differences.is_empty() {
        let what: Vec<String> = differences.iter().map(|d| d.to_string()).collect();
        if !args.force {
            return Err(Failure::new(
                Exit::Invalid,
                format!("these runs are not comparable: {}; compare them anyway with --force", what.join("; ")),
            ));
        }
        eprintln!("warning: these runs are not comparable, compared anyway (--force): {}", what.join("; "));
    }
    let c = compare::compare(&a, &b, differences);
    let out = args.out.clone().unwrap_or_else(|| compare::default_out_dir(&a_path, &b_path));
    let written = compare::write_all(&c, &a.record, &b.record, &out)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        outln!("{}: {}", c.scenario, c.summary);
        for r in c.rows.iter().filter(|r| r.judgement == compare::Judgement::Worse && r.gates) {
            outln!("  worse: {} {}", r.section, r.measure);
        }
        outln!("wrote {} in {}", written.join(", "), out.display());
    }
    Ok(if c.b_worse { Exit::Failed } else { Exit::Passed })
}
