//! `siege gameday`: a daemon on loopback for a class's game day (or the one already running
//! there), its scenarios, and the two links of the page: the instructor's and the
//! participants'. Ctrl-C stops it: every run is interrupted and every fault reverted.

use std::path::PathBuf;

use super::client::{Client, Connect};
use super::daemon::{DaemonArgs, Ready, serve};
use super::{Failure, runtime};
use crate::daemon::auth;
use crate::exit::Exit;

#[derive(Debug, clap::Args)]
pub(super) struct GamedayArgs {
    /// Scenario files or directories of them the page offers (default: `scenarios/`).
    #[arg(value_name = "SCENARIO_OR_DIR")]
    pub scenarios: Vec<PathBuf>,
    /// The daemon's options; a siege daemon already answering on `--listen` is used instead of
    /// starting one.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// The two links of the page for a daemon at `addr`.
pub fn links(addr: &str, token: &str, participant_token: &str) -> (String, String) {
    (format!("http://{addr}/#token={token}"), format!("http://{addr}/#token={participant_token}"))
}

fn print_links(addr: &str, token: &str, participant_token: &str) {
    let (i, p) = links(addr, token, participant_token);
    outln!("siege gameday: instructor: {i}");
    outln!("siege gameday: participants: {p}");
}

/// `siege gameday`.
pub(super) fn cmd_gameday(args: GamedayArgs) -> anyhow::Result<Exit> {
    let listen = args.daemon.listen.clone();
    let data = args.daemon.data.clone().unwrap_or_else(|| crate::util::state_dir().join("daemon"));
    let connect = Connect { addr: listen.clone(), token: None, data: Some(data.clone()) };
    let rt = runtime()?;
    let running =
        rt.block_on(async { Client::new(&connect).call(axum::http::Method::GET, "/healthz", None).await.is_ok() });
    if running {
        // That daemon's tokens are read, never created: links made of tokens it does not know
        // would not work.
        let read = |name: &str| {
            let path = data.join(name);
            auth::read(&path).ok_or_else(|| {
                Failure::new(
                    Exit::Precondition,
                    format!(
                        "a daemon answers on {listen}, but {} does not hold a token: pass that daemon's --data",
                        path.display()
                    ),
                )
            })
        };
        let (token, participant) = (read(auth::TOKEN_FILE)?, read(auth::PARTICIPANT_TOKEN_FILE)?);
        let connect = Connect { token: Some(token.clone()), ..connect };
        let role = rt.block_on(async { Client::new(&connect).call(axum::http::Method::GET, "/v1/whoami", None).await });
        if !role.as_ref().is_ok_and(|v| v["role"] == "instructor") {
            return Err(Failure::new(
                Exit::Precondition,
                format!(
                    "a daemon answers on {listen}, but the token in {} is not its instructor's: pass that daemon's --data",
                    data.display()
                ),
            ));
        }
        outln!("siege gameday: using the siege daemon already on {listen} (its own scenarios; it keeps running)");
        print_links(&listen, &token, &participant);
        return Ok(Exit::Passed);
    }
    // `serve` runs its own runtime.
    drop(rt);
    let mut scenarios = args.scenarios.clone();
    if scenarios.is_empty() {
        scenarios.push(PathBuf::from("scenarios"));
    }
    for s in &scenarios {
        if !s.exists() {
            return Err(Failure::new(Exit::Invalid, format!("{}: no such scenario file or directory", s.display())));
        }
    }
    let scenarios = scenarios.iter().map(|s| std::path::absolute(s).unwrap_or_else(|_| s.clone())).collect();
    let daemon = DaemonArgs { data: Some(data), ..args.daemon };
    serve(daemon, scenarios, |r: &Ready| {
        outln!("siege gameday: listening on http://{} (data {}); Ctrl-C stops it", r.addr, r.data.display());
        print_links(&r.addr.to_string(), r.token, r.participant_token);
    })
}
