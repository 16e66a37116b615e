//! The daemon's state as the API's handlers reach it: the run manager, the scheduler, the
//! tokens, where scenarios may be read from, and a game day's part; and the config reload that
//! SIGHUP and `POST /v1/reload` share.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::{self, ConfigError};
use super::runs::Manager;
use super::scheduler::Scheduler;

/// Everything the handlers reach.
pub struct Daemon {
    pub manager: Arc<Manager>,
    pub scheduler: Arc<Scheduler>,
    /// `--config`; `None`: the empty default config (reload has nothing to read).
    pub config_path: Option<PathBuf>,
    /// The instructor's token: every call.
    pub token: String,
    /// `--allow-remote`: reads need a token too.
    pub remote: bool,
    /// Where relative scenario paths are resolved from (the daemon's working directory).
    pub workdir: PathBuf,
    /// `--scenarios`: more files and directories requests may start scenarios from.
    pub scenario_roots: Vec<PathBuf>,
    /// The game day's part: the participants' token, the scenarios the page lists.
    pub web: Web,
}

/// A game day's part of the daemon's state.
pub struct Web {
    /// The participants' token; `None`: no participant can call what needs a token.
    pub participant_token: Option<String>,
    /// The scenario files and directories `GET /v1/scenarios` lists; empty: the daemon's
    /// scenario roots ([`Daemon::scenario_roots`]).
    pub scenarios: Vec<PathBuf>,
    /// The starts of the last [`REPEAT_WINDOW`]: who asked (their `Authorization` header) and
    /// what (the body), with the run each started.
    recent_starts: Mutex<Vec<(Instant, Vec<u8>, String)>>,
}

/// A second start, identical to one the same caller made this recently, is refused: a double
/// click, a retried request, not a second run of the class.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(1);

impl Web {
    pub fn new(participant_token: Option<String>, scenarios: Vec<PathBuf>) -> Web {
        Web { participant_token, scenarios, recent_starts: Mutex::new(Vec::new()) }
    }

    /// Claims a start (`caller`'s `Authorization` header, the request's body) before it begins;
    /// refused, with what the identical start before it became, when the same caller made it
    /// within [`REPEAT_WINDOW`] (claimed at once, so that two requests a millisecond apart cannot
    /// both pass).
    pub fn claim_start(&self, caller: &[u8], body: &[u8]) -> Result<StartClaim, String> {
        let mut recent = self.recent_starts.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|(at, _, _)| at.elapsed() < REPEAT_WINDOW);
        let key = start_key(caller, body);
        if let Some((at, _, id)) = recent.iter().find(|(_, k, _)| *k == key) {
            let what = if id.is_empty() { "is still starting".to_string() } else { format!("began run `{id}`") };
            return Err(format!(
                "the same start came {} ms ago and {what}: a second identical start within {} s is taken for a \
                 double click and refused; send it again to run it twice",
                at.elapsed().as_millis(),
                REPEAT_WINDOW.as_secs()
            ));
        }
        recent.push((Instant::now(), key.clone(), String::new()));
        Ok(StartClaim { key })
    }

    /// The claimed start began run `id` (`None`: it was refused, and may be sent again at once).
    pub fn claimed(&self, claim: StartClaim, id: Option<&str>) {
        let mut recent = self.recent_starts.lock().unwrap_or_else(|e| e.into_inner());
        match id {
            Some(id) => recent.iter_mut().filter(|(_, k, _)| *k == claim.key).for_each(|(_, _, i)| *i = id.to_string()),
            None => recent.retain(|(_, k, _)| *k != claim.key),
        }
    }
}

/// A start claimed by [`Web::claim_start`].
pub struct StartClaim {
    key: Vec<u8>,
}

fn start_key(caller: &[u8], body: &[u8]) -> Vec<u8> {
    [caller, b"\0", body].concat()
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the daemon was started without --config: there is no config to reload")]
    NoConfig,
    #[error("{0}")]
    Invalid(ConfigError),
}

impl Daemon {
    /// Reads the config file again; a bad one is refused and the old one stays in force.
    pub fn reload(&self) -> Result<usize, ReloadError> {
        let path = self.config_path.as_ref().ok_or(ReloadError::NoConfig)?;
        let c = config::load_file(path).map_err(ReloadError::Invalid)?;
        let n = c.schedules.len();
        self.manager.set_config(c);
        self.scheduler.reload();
        Ok(n)
    }

    /// The scenario roots ([`super::scenarios::resolve`]): the working directory's `scenarios/`,
    /// the `--scenarios` paths, a game day's scenarios, then the config's schedule scenarios and
    /// their directories, in the order of the config. A schedule's directory that is the working
    /// directory or above it is not a root (it would admit every file below): its scenario file
    /// alone is.
    pub fn scenario_roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.workdir.join("scenarios")];
        let mut schedules: Vec<PathBuf> = vec![];
        for s in &self.manager.config().schedules {
            let file = self.workdir.join(&s.scenario);
            let dir = file.parent().map(Path::to_path_buf).filter(|d| !self.workdir.starts_with(d));
            schedules.push(file);
            schedules.extend(dir);
        }
        for p in self.scenario_roots.iter().chain(&self.web.scenarios).cloned().chain(schedules) {
            if !roots.contains(&p) {
                roots.push(p);
            }
        }
        roots
    }
}
