//! `siege daemon`: the HTTP API, the run manager and the scheduler in one process, until
//! SIGTERM (or Ctrl-C). SIGHUP reloads the config.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Failure, runtime};
use crate::backend::Connection;
use crate::daemon::app::{Daemon, ReloadError, Web};
use crate::daemon::lock::DataLock;
use crate::daemon::runs::{Db, Manager, SHUTDOWN_REASON};
use crate::daemon::scheduler::Scheduler;
use crate::daemon::server;
use crate::daemon::store::Store;
use crate::daemon::{auth, config};
use crate::exit::Exit;

/// How long the API keeps answering open connections once the runs have ended at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// How long the alerts still queued at shutdown are given to be delivered.
const ALERT_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub(super) struct DaemonArgs {
    /// The daemon's config (schedules, webhook, retention); none: no schedules.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the API listens; `127.0.0.1:0` picks a free port (printed when ready).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    pub listen: String,
    /// The data directory: history.db, token, journals (default: `daemon/` in siege's state
    /// directory).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Allow a non-loopback --listen address; every call then needs the token, reads too.
    #[arg(long)]
    pub allow_remote: bool,
    /// A scenario file, or a directory of them, that the API may start runs from, besides
    /// `scenarios/` in the working directory and the directories of the config's schedules
    /// (repeatable). A request never reads a file outside these.
    #[arg(long = "scenarios", value_name = "PATH")]
    pub scenario_roots: Vec<PathBuf>,
}

fn invalid(m: String) -> anyhow::Error {
    Failure::new(Exit::Invalid, m)
}

/// The address to listen on, refused unless loopback or `allow_remote`.
fn listen_addr(listen: &str, allow_remote: bool) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| invalid(format!("--listen {listen}: not an address to listen on ({e}); e.g. 127.0.0.1:7878")))?
        .collect();
    let addr = *addrs.first().ok_or_else(|| invalid(format!("--listen {listen}: resolves to no address")))?;
    if !allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(invalid(format!(
            "--listen {listen}: refusing a non-loopback address without --allow-remote (other hosts could then \
             reach the API; with --allow-remote every call needs the token)"
        )));
    }
    Ok(addr)
}

/// `siege daemon`.
pub(super) fn cmd_daemon(args: DaemonArgs) -> anyhow::Result<Exit> {
    serve(args, vec![], |r| {
        outln!(
            "siege daemon: listening on http://{} (data {}, token in {})",
            r.addr,
            r.data.display(),
            r.data.join(auth::TOKEN_FILE).display()
        )
    })
}

/// A daemon that is listening, as told to [`serve`]'s caller.
pub(super) struct Ready<'a> {
    pub addr: SocketAddr,
    pub data: &'a std::path::Path,
    pub token: &'a str,
    pub participant_token: &'a str,
}

/// Runs a daemon until SIGTERM / Ctrl-C (every run interrupted, every fault reverted);
/// `scenarios`: what the page lists (none: the directories scenario names are resolved in);
/// `ready` is called once it listens.
pub(super) fn serve(args: DaemonArgs, scenarios: Vec<PathBuf>, ready: impl FnOnce(&Ready)) -> anyhow::Result<Exit> {
    let addr = listen_addr(&args.listen, args.allow_remote)?;
    if let Some(p) = args.scenario_roots.iter().find(|p| !p.exists()) {
        return Err(invalid(format!("--scenarios {}: no such scenario file or directory", p.display())));
    }
    let config = match &args.config {
        Some(p) => config::load_file(p).map_err(|e| {
            for d in &e.diagnostics {
                eprintln!("{d}");
            }
            invalid(format!("{} is not a valid daemon config ({} error(s))", p.display(), e.diagnostics.len()))
        })?,
        None => config::Config::default(),
    };
    let data = args.data.clone().unwrap_or_else(|| crate::util::state_dir().join("daemon"));
    std::fs::create_dir_all(&data)
        .map_err(|e| invalid(format!("cannot create the data directory {}: {e}", data.display())))?;
    let mut lock = DataLock::take(&data).map_err(|e| Failure::new(Exit::Precondition, e.to_string()))?;
    let token = auth::load_or_create(&data).map_err(|e| invalid(e.to_string()))?;
    let participant_token =
        auth::load_or_create_file(&data.join(auth::PARTICIPANT_TOKEN_FILE)).map_err(|e| invalid(e.to_string()))?;
    let store = Store::open(&data.join("history.db")).map_err(|e| Failure::new(Exit::Precondition, e.to_string()))?;
    let conn = Connection::from_env().map_err(|e| invalid(e.to_string()))?;
    let workdir = std::env::current_dir()?;
    let rt = runtime()?;
    // Held until the runtime and everything on it (the server, database calls in flight) is gone.
    let holder = &mut lock;
    let served = rt.block_on(async move {
        let mut signals = Signals::take()?;
        let manager = Arc::new(Manager::new(Db::new(store), &data, conn, config, crate::util::failpoint_from_env()));
        // Before serving and before any schedule fires.
        for l in manager.recover_at_start().await.map_err(|e| Failure::new(Exit::Precondition, e.to_string()))? {
            eprintln!("siege daemon: {l}");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::new(Exit::Precondition, format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr()?;
        holder.describe(&format!("pid {}, listening on http://{local}", std::process::id()))?;
        let scheduler = Scheduler::new(manager.clone());
        scheduler.load_paused().await.map_err(|e| Failure::new(Exit::Precondition, e.to_string()))?;
        let d = Arc::new(Daemon {
            manager: manager.clone(),
            scheduler: scheduler.clone(),
            config_path: args.config.clone(),
            token: token.clone(),
            remote: args.allow_remote,
            scenario_roots: args.scenario_roots.iter().map(|p| workdir.join(p)).collect(),
            workdir,
            web: Web::new(Some(participant_token.clone()), scenarios),
        });
        let stop_serving = CancellationToken::new();
        let serving = axum::serve(listener, server::router(d.clone()))
            .with_graceful_shutdown(stop_serving.clone().cancelled_owned());
        let server = tokio::spawn(async move { serving.await });
        ready(&Ready { addr: local, data: &data, token: &token, participant_token: &participant_token });
        let stop_scheduling = CancellationToken::new();
        let scheduling = tokio::spawn({
            let (s, stop) = (scheduler.clone(), stop_scheduling.clone());
            async move {
                s.catch_up().await;
                s.run(stop).await
            }
        });
        // Until the first SIGTERM / Ctrl-C; SIGHUP reloads.
        let why = signals.until_stop(&d).await;
        eprintln!("siege daemon: {why}: no more runs; interrupting {} run(s)", manager.shutdown(SHUTDOWN_REASON));
        stop_scheduling.cancel();
        let hurried = CancellationToken::new();
        let hurry = tokio::spawn({
            let hurried = hurried.clone();
            async move {
                loop {
                    let again = signals.until_stop(&d).await;
                    eprintln!("siege daemon: {again} again: skipping waits; every fault is still reverted");
                    d.manager.shutdown(SHUTDOWN_REASON);
                    hurried.cancel();
                }
            }
        });
        manager.idle().await;
        let _ = scheduling.await;
        stop_serving.cancel();
        let _ = tokio::join!(tokio::time::timeout(DRAIN, server), manager.flush_alerts(ALERT_GRACE, &hurried));
        hurry.abort();
        eprintln!("siege daemon: stopped");
        Ok(Exit::Passed)
    });
    drop(rt);
    drop(lock);
    served
}

/// SIGTERM and SIGINT stop the daemon (a second one hurries the runs); SIGHUP reloads the
/// config. Taken before anything runs.
struct Signals([tokio::signal::unix::Signal; 3]);

impl Signals {
    fn take() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals([signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?, signal(SignalKind::hangup())?]))
    }

    /// Reloads on each SIGHUP until a stopping signal comes; returns its name.
    async fn until_stop(&mut self, d: &Daemon) -> &'static str {
        let [term, int, hup] = &mut self.0;
        loop {
            tokio::select! {
                _ = term.recv() => return "SIGTERM",
                _ = int.recv() => return "SIGINT (Ctrl-C)",
                _ = hup.recv() => match d.reload() {
                    Ok(n) => eprintln!("siege daemon: SIGHUP: config reloaded ({n} schedule(s))"),
                    Err(ReloadError::Invalid(e)) => {
                        eprintln!("siege daemon: SIGHUP: the config is not valid; the old one stays in force:\n{e}")
                    }
                    Err(e) => eprintln!("siege daemon: SIGHUP: {e}"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_non_loopback_address_needs_allow_remote() {
        assert!(super::listen_addr("127.0.0.1:0", false).is_ok());
        assert!(super::listen_addr("[::1]:0", false).is_ok());
        assert!(super::listen_addr("0.0.0.0:7878", false).is_err());
        assert!(super::listen_addr("0.0.0.0:7878", true).is_ok());
        assert!(super::listen_addr("nonsense", false).is_err());
    }
}
