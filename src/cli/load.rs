//! `siege load URL`: the load driver on its own, with a live line on a terminal and a summary
//! (or one JSON object) at the end.

use std::io::{IsTerminal, Write};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Failure;
use crate::exit::Exit;
use crate::load::{DEFAULT_MAX_CONNECTIONS, LoadError, LoadPlan, LoadReport, Mode, Window};

/// The exit codes of `siege load` (its `--help`, the README and docs/load.md).
pub(super) const EXIT_HELP: &str = "\
Exit codes:
  0   the load ran and the error rate was within --max-error-rate (by default: at least one
      request succeeded)
  1   every request failed, or the error rate was above --max-error-rate
  3   invalid usage (bad URL, rate, duration, percentage)
  4   the host does not resolve, or https:// and no trusted root certificate on this system
  70  internal error";

/// `siege load URL`: arguments.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target URL (http://host[:port]/path or https://host[:port]/path).
    pub url: String,
    /// Open model: constant arrival rate, e.g. `1000/s` or `6000/m`. Latency is measured from
    /// each request's scheduled send time.
    #[arg(long, conflicts_with = "concurrency", required_unless_present = "concurrency")]
    pub rate: Option<String>,
    /// Closed model: this many connections sending back to back (measures capacity).
    #[arg(long, short = 'c')]
    pub concurrency: Option<usize>,
    /// How long to run, e.g. `10s`, `2m`.
    #[arg(long, short = 'd', default_value = "10s")]
    pub duration: String,
    /// Per-request timeout.
    #[arg(long, default_value = "2s")]
    pub timeout: String,
    /// Open model: most connections opened; a request due while all are busy waits for one.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, conflicts_with = "concurrency")]
    pub max_connections: usize,
    /// https://: accept any certificate, self-signed or for another name (test endpoints only).
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Exit 1 when more than this share of the requests failed, e.g. `1%` (errors and missed
    /// requests over all requests). Without it, exit 1 only when every request failed.
    #[arg(long, value_name = "PERCENT")]
    pub max_error_rate: Option<String>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// Checks the arguments and resolves them into a plan; the message says what is wrong.
    fn plan(&self) -> Result<LoadPlan, String> {
        let url: http::Uri = self.url.parse().map_err(|e| format!("invalid URL `{}`: {e}", self.url))?;
        if crate::load::default_port(&url).is_none() || url.host().is_none() {
            return Err(format!("invalid URL `{}`: expected http://host[:port]/path or https://…", self.url));
        }
        let duration =
            crate::scenario::units::parse_duration(&self.duration).map_err(|e| format!("--duration: {e}"))?;
        if duration.is_zero() {
            return Err("--duration: must be more than zero".into());
        }
        let timeout = crate::scenario::units::parse_duration(&self.timeout).map_err(|e| format!("--timeout: {e}"))?;
        if timeout.is_zero() {
            return Err("--timeout: must be more than zero".into());
        }
        let mode = match (&self.rate, self.concurrency) {
            (Some(rate), None) => {
                let rate = crate::scenario::units::parse_rate(rate).map_err(|e| format!("--rate: {e}"))?;
                if rate <= 0.0 {
                    return Err("--rate: must be more than zero".into());
                }
                if self.max_connections == 0 {
                    return Err("--max-connections: must be at least 1".into());
                }
                Mode::Open { rate, stages: Vec::new(), max_connections: self.max_connections }
            }
            (None, Some(0)) => return Err("--concurrency: must be at least 1".into()),
            (None, Some(connections)) => Mode::Closed { connections },
            _ => return Err("give either --rate R/s (open model) or --concurrency N (closed model)".into()),
        };
        Ok(LoadPlan { url, mode, duration, timeout, insecure_tls: self.insecure, notice: Default::default() })
    }

    /// `--max-error-rate` as a fraction.
    fn max_error_rate(&self) -> Result<Option<f64>, String> {
        let Some(s) = &self.max_error_rate else { return Ok(None) };
        let rate = crate::scenario::units::parse_percent(s).map_err(|e| format!("--max-error-rate: {e}"))?;
        if rate > 1.0 {
            return Err(format!("--max-error-rate: `{s}` is above 100%"));
        }
        Ok(Some(rate))
    }
}

/// Why a finished load counts as failed (exit 1), if it does: every request failed (at least
/// one was due), or more than `max_error_rate` of them did.
fn verdict(r: &LoadReport, max_error_rate: Option<f64>) -> Option<String> {
    let all = r.requests + r.missed;
    let failed = r.errors.total() + r.missed;
    if all == 0 {
        return None;
    }
    let mut why: Vec<String> =
        r.errors.classes().iter().filter(|(_, n)| *n > 0).map(|(c, n)| format!("{c} {n}")).collect();
    if r.missed > 0 {
        why.push(format!("missed {}", r.missed));
    }
    let rate = failed as f64 / all as f64;
    match max_error_rate {
        _ if failed == all => Some(format!("every request failed ({} of {all}: {})", failed, why.join(", "))),
        Some(max) if rate > max => Some(format!(
            "error rate {:.2}% is above --max-error-rate {}% ({failed} of {all}: {})",
            100.0 * rate,
            // `40%` parses to 0.4, which times 100 is not quite 40 again.
            (100.0 * max * 1e6).round() / 1e6,
            why.join(", ")
        )),
        _ => None,
    }
}

/// `siege load`.
pub(super) fn cmd_load(args: LoadArgs) -> anyhow::Result<Exit> {
    let plan = args.plan().map_err(|m| Failure::new(Exit::Invalid, m))?;
    let max_error_rate = args.max_error_rate().map_err(|m| Failure::new(Exit::Invalid, m))?;
    let heading = describe(&plan);
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        // The live line only makes sense on a terminal; redirected output stays clean.
        let (live, printer) = if std::io::stderr().is_terminal() {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(tokio::spawn(progress(rx))))
        } else {
            (None, None)
        };
        let report = crate::load::run(plan, cancel, live).await;
        if let Some(p) = printer {
            let _ = p.await;
        }
        report
    });
    let report = report.map_err(|e| match e {
        LoadError::Url(_) | LoadError::Plan(_) => Failure::new(Exit::Invalid, e.to_string()),
        LoadError::Resolve { host, source } => {
            Failure::new(Exit::Precondition, format!("cannot resolve {host}: {source}"))
        }
        LoadError::Tls(_) => Failure::new(Exit::Precondition, e.to_string()),
        LoadError::Worker(_) => anyhow::Error::from(e),
    })?;
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        out!("{}", summary(&heading, &report, args.insecure));
    }
    match verdict(&report, max_error_rate) {
        Some(why) => Err(Failure::new(Exit::Failed, why)),
        None => Ok(Exit::Passed),
    }
}

fn describe(plan: &LoadPlan) -> String {
    let model = match &plan.mode {
        Mode::Open { rate, max_connections, .. } => {
            format!("open model, {rate}/s, up to {max_connections} connections")
        }
        Mode::Closed { connections } => format!("closed model, {connections} connections"),
    };
    format!(
        "siege load {} ({model}, {}, timeout {})",
        plan.url,
        crate::scenario::units::format_duration(plan.duration),
        crate::scenario::units::format_duration(plan.timeout)
    )
}

/// Rewrites one status line on stderr as each window arrives.
async fn progress(mut rx: mpsc::UnboundedReceiver<Window>) {
    let mut shown = false;
    while let Some(w) = rx.recv().await {
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{:>4}s] {:>8} req/s  p50 {}  p99 {}  errors {}  missed {}",
            w.second + 1,
            w.requests,
            ms(w.latency_ms.p50),
            ms(w.latency_ms.p99),
            w.errors.total(),
            w.missed
        );
        let _ = err.flush();
        shown = true;
    }
    if shown {
        eprint!("\r\x1b[2K");
    }
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v:.2}ms")
    }
}

/// The human summary printed at the end.
fn summary(heading: &str, r: &LoadReport, insecure: bool) -> String {
    let l = &r.latency_ms;
    let u = &r.uncorrected_latency_ms;
    let errors: Vec<String> =
        r.errors.classes().iter().filter(|(_, n)| *n > 0).map(|(c, n)| format!("{c} {n}")).collect();
    let mut s = format!("{heading}\n");
    s += &format!(
        "  requests   {} in {:.2}s, {:.1} req/s, {} connections\n",
        r.requests, r.duration_s, r.rps, r.connections
    );
    if r.scheduled > 0 {
        s += &format!("  scheduled  {}, missed {} (no free connection in time)\n", r.scheduled, r.missed);
    }
    s += &format!(
        "  latency    p50 {}  p90 {}  p95 {}  p99 {}  max {}  (from the scheduled send time)\n",
        ms(l.p50),
        ms(l.p90),
        ms(l.p95),
        ms(l.p99),
        ms(l.max)
    );
    if r.scheduled > 0 {
        s += &format!(
            "  uncorrected p50 {}  p99 {}  max {}  (from the actual send time)\n",
            ms(u.p50),
            ms(u.p99),
            ms(u.max)
        );
    }
    let total = r.errors.total();
    if total == 0 {
        s += "  errors     none\n";
    } else {
        let pct = 100.0 * total as f64 / (r.requests.max(1)) as f64;
        s += &format!("  errors     {total} ({pct:.2}%): {}\n", errors.join(", "));
    }
    if let Some(e) = &r.tls_error {
        // The hint only helps with a certificate that is not trusted, and only when not given.
        let hint =
            if !insecure && e.contains("certificate") { " (--insecure accepts a self-signed certificate)" } else { "" };
        s += &format!("  tls        {e}{hint}\n");
    }
    s
}
