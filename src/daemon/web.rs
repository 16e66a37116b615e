//! The live game-day page and what it needs from the daemon: the page itself (HTML, CSS and
//! JavaScript embedded in the binary, no external asset), the two roles (the instructor's token
//! may do everything; the participants' token may read and mark a run, nothing else), the
//! scenarios the daemon can run with their manual catalogs, and blind runs (whoever is not the
//! instructor is not told which fault was injected until the run ends). See docs/gameday.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::auth::{self, Verdict};
use super::server::Daemon;
use crate::engine::events::{Envelope, Event};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

/// The embedded assets: (URL path, content type, body).
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", INDEX_HTML),
    ("/ui/app.js", "text/javascript; charset=utf-8", APP_JS),
    ("/ui/app.css", "text/css; charset=utf-8", APP_CSS),
];

/// The bytes of every embedded asset together (the page's weight).
pub fn page_weight() -> usize {
    ASSETS.iter().map(|(_, _, body)| body.len()).sum()
}

/// The page's part of the daemon's state.
pub struct Web {
    /// The participants' token; `None`: no participant can call what needs a token.
    pub participant_token: Option<String>,
    /// The scenario files and directories `GET /v1/scenarios` lists; empty: the directories
    /// the daemon resolves scenario names in ([`super::server::scenario_roots`]).
    pub scenarios: Vec<PathBuf>,
}

impl Web {
    pub fn new(participant_token: Option<String>, scenarios: Vec<PathBuf>) -> Web {
        Web { participant_token, scenarios }
    }
}

/// What is shown of a blind run in progress to whoever is not the instructor: `None` for an
/// event left out. Which fault was injected is hidden: its name becomes an alias that stays the
/// same for the run (so that an injection is still paired with its revert), differs from run to
/// run and cannot be traced back to the name without `secret`; its kind, summary and errors, the journal's record of it,
/// the next timeline action and the lab's own fault lines are left out. Everything else (the
/// charts, the service's events, the marks) is what the class is there to read.
pub fn blind_view(env: &Envelope, secret: &str) -> Option<Envelope> {
    use sha2::Digest;
    const HIDDEN: &str = "hidden until the run ends";
    let alias = |name: &str| {
        let h = sha2::Sha256::new()
            .chain_update(secret)
            .chain_update([0])
            .chain_update(&env.run_id)
            .chain_update([0])
            .chain_update(name)
            .finalize();
        format!("fault-{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
    };
    let event = match &env.event {
        Event::FaultInjecting { .. } => return None,
        Event::FaultInjected { t, fault, .. } => {
            Event::FaultInjected { t: *t, fault: alias(fault), kind: "hidden".into(), summary: HIDDEN.into() }
        }
        Event::FaultInjectFailed { t, fault, .. } => {
            Event::FaultInjectFailed { t: *t, fault: alias(fault), error: HIDDEN.into() }
        }
        Event::FaultRevertFailed { t, fault, .. } => {
            Event::FaultRevertFailed { t: *t, fault: alias(fault), error: HIDDEN.into() }
        }
        Event::FaultReverted { t, fault } => Event::FaultReverted { t: *t, fault: alias(fault) },
        Event::FaultSettled { t, fault } => Event::FaultSettled { t: *t, fault: alias(fault) },
        Event::SecondClosed { window, sample, steady, .. } => {
            Event::SecondClosed { window: window.clone(), sample: sample.clone(), steady: *steady, next: None }
        }
        // The lab logs each fault it is told to apply as `fault: …`.
        Event::ServiceEvent { text, .. } if text.starts_with("fault: ") => return None,
        other => other.clone(),
    };
    Some(Envelope { event, ..env.clone() })
}

/// Who a caller is, from its bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Instructor,
    Participant,
    /// No token, or one that is neither.
    Anonymous,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Instructor => "instructor",
            Role::Participant => "participant",
            Role::Anonymous => "anonymous",
        }
    }
}

/// What the token check says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// No token where one is needed (401).
    Missing,
    /// A token that is not the daemon's (403).
    Wrong,
    /// The participants' token on a call only the instructor may make (403,
    /// `participant-forbidden`).
    ParticipantForbidden,
}

/// The bearer token of a request: its `Authorization` header. A token never comes in the address
/// (where it would land in browser history and server logs); what a browser cannot send a header
/// with carries a read token instead ([`read_token_role`]).
fn bearer(headers: &HeaderMap) -> Option<String> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(String::from)
}

/// The run whose events or report file `path` is: what a read token may read.
fn readable_run(path: &str) -> Option<&str> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "runs", id, "events"] | ["v1", "runs", id, "report", _] => Some(id),
        _ => None,
    }
}

/// The role a `?token=` read token ([`auth::read_token`]) grants to a read of `path`: its run's
/// events and report files only, until it expires.
fn read_token_role(d: &Daemon, method: &Method, path: &str, query: Option<&str>) -> Option<Role> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let run = readable_run(path)?;
    let t = query?.split('&').find_map(|kv| kv.strip_prefix("token="))?;
    let now = crate::lease::unix_ms(std::time::SystemTime::now());
    Some(match auth::check_read_token(&d.token, t, run, now)?.as_str() {
        "instructor" => Role::Instructor,
        "participant" => Role::Participant,
        _ => Role::Anonymous,
    })
}

/// The role of whoever sent `header` (an `Authorization` value).
pub fn role_of(web: &Web, instructor: &str, header: Option<&str>) -> Role {
    if auth::check(header, instructor) == Verdict::Allowed {
        return Role::Instructor;
    }
    match &web.participant_token {
        Some(p) if auth::check(header, p) == Verdict::Allowed => Role::Participant,
        _ => Role::Anonymous,
    }
}

/// What a participant may call besides reads: marking a run.
fn participant_may(method: &Method, path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    *method == Method::POST && matches!(parts.as_slice(), ["v1", "runs", _, "marks"])
}

/// The token check of every route: the page's assets need none; reads need none on loopback;
/// the instructor's token may do everything; the participants' token may read and mark.
pub fn access(d: &Daemon, req: &Request) -> Access {
    let (method, path) = (req.method(), req.uri().path());
    let reads = matches!(*method, Method::GET | Method::HEAD);
    if reads && (ASSETS.iter().any(|(p, _, _)| *p == path) || !d.remote) {
        return Access::Allowed;
    }
    if read_token_role(d, method, path, req.uri().query()).is_some() {
        return Access::Allowed;
    }
    let given = bearer(req.headers());
    match role_of(&d.web, &d.token, given.as_deref()) {
        Role::Instructor => Access::Allowed,
        Role::Participant if reads || participant_may(method, path) => Access::Allowed,
        Role::Participant => Access::ParticipantForbidden,
        Role::Anonymous => match auth::check(given.as_deref(), &d.token) {
            Verdict::Missing => Access::Missing,
            _ => Access::Wrong,
        },
    }
}

/// The page's routes: its assets, `GET /v1/whoami` and `GET /v1/scenarios`.
pub fn routes() -> Router<Arc<Daemon>> {
    let mut r = Router::new();
    for (path, kind, body) in ASSETS {
        r = r.route(path, get(move || async move { ([(header::CONTENT_TYPE, *kind)], *body) }));
    }
    r.route("/v1/whoami", get(whoami)).route("/v1/scenarios", get(scenarios))
}

/// The role of a request's caller, from its `Authorization` header, or else from a read token in
/// its `token` query parameter.
pub fn caller(d: &Daemon, method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> Role {
    match bearer(headers) {
        Some(h) => role_of(&d.web, &d.token, Some(&h)),
        None => read_token_role(d, method, uri.path(), uri.query()).unwrap_or(Role::Anonymous),
    }
}

/// `GET /v1/whoami`: the caller's role, from its token.
async fn whoami(State(d): State<Arc<Daemon>>, req: Request) -> Response {
    let role = caller(&d, req.method(), req.uri(), req.headers());
    axum::Json(json!({ "role": role.name() })).into_response()
}

/// `GET /v1/runs/{id}/read-token`: a token that reads this run's events and report files for an
/// hour, with the caller's role, to put in an address (`?token=`) where no header can go.
pub fn read_token(d: &Daemon, id: &str, headers: &HeaderMap) -> Value {
    let role = match bearer(headers) {
        Some(h) => role_of(&d.web, &d.token, Some(&h)),
        None => Role::Anonymous,
    };
    let now = crate::lease::unix_ms(std::time::SystemTime::now());
    let expires = now + auth::READ_TOKEN_TTL.as_millis() as u64;
    json!({
        "token": auth::read_token(&d.token, id, role.name(), expires),
        "role": role.name(),
        "expires_in_s": auth::READ_TOKEN_TTL.as_secs(),
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A scenario as the page shows it: what it runs, its manual catalog (numbered from 1), its
/// timeline faults and steady state (the charts' thresholds).
pub fn scenario_json(file: &Path, sc: &crate::scenario::Scenario) -> Value {
    json!({
        "name": sc.name,
        "file": file.display().to_string(),
        "description": sc.description,
        "duration_s": secs(sc.load.duration),
        "rate": sc.load.rate.per_second,
        "faults": sc.faults.iter().map(|f| json!({
            "name": f.name, "type": f.kind.type_name(), "at_s": secs(f.at),
            "for_s": f.duration.map(secs), "summary": f.kind.describe(),
        })).collect::<Vec<_>>(),
        "manual": sc.manual.iter().enumerate().map(|(i, m)| json!({
            "number": i + 1, "name": m.name, "type": m.kind.type_name(),
            "for_s": m.duration.map(secs), "summary": m.kind.describe(),
        })).collect::<Vec<_>>(),
        "steady_state": sc.steady_state.checks.iter().map(|c| json!({
            "metric": c.metric.name(), "op": c.cmp.op.symbol(), "value": c.cmp.value,
        })).collect::<Vec<_>>(),
        "recovery": { "within_s": secs(sc.recovery.within), "hold_s": secs(sc.recovery.hold) },
    })
}

/// The scenario files of `paths`: a file as given, a directory's `*.yaml` / `*.yml` sorted by
/// name; a path that does not exist is skipped.
pub fn scenario_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = vec![];
    for p in paths {
        if p.is_file() {
            out.push(p.clone());
            continue;
        }
        let Ok(rd) = std::fs::read_dir(p) else { continue };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|f| f.is_file() && matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        for f in files {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

/// `GET /v1/scenarios`: the scenarios the page can start, valid ones with their catalogs and
/// invalid ones with their first error.
async fn scenarios(State(d): State<Arc<Daemon>>) -> Response {
    let paths = if d.web.scenarios.is_empty() { super::server::scenario_roots(&d) } else { d.web.scenarios.clone() };
    let list = tokio::task::spawn_blocking(move || {
        scenario_files(&paths)
            .iter()
            .map(|f| match crate::scenario::load_file(f) {
                Ok(sc) => scenario_json(f, &sc),
                Err(diags) => json!({
                    "file": f.display().to_string(),
                    "error": diags.first().map(|d| d.to_string()).unwrap_or_default(),
                }),
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    axum::Json(json!({ "scenarios": list })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(seq: u64, event: Event) -> Envelope {
        Envelope { run_id: "r-1".into(), seq, at: "2026-12-02T07:00:00.000Z".into(), t: Some(1.0), event }
    }

    #[test]
    fn a_blind_view_names_no_fault_but_keeps_injections_paired_with_their_reverts() {
        let injected = env(
            3,
            Event::FaultInjected { t: 1.0, fault: "slow-one".into(), kind: "latency".into(), summary: "300ms".into() },
        );
        let v = blind_view(&injected, "secret").unwrap();
        let Event::FaultInjected { fault, kind, summary, .. } = &v.event else { panic!("{v:?}") };
        assert!(fault.starts_with("fault-") && fault.len() == 14, "{fault}");
        assert_eq!((kind.as_str(), summary.as_str(), v.seq), ("hidden", "hidden until the run ends", 3));
        let reverted = blind_view(&env(9, Event::FaultReverted { t: 7.0, fault: "slow-one".into() }), "secret");
        assert!(matches!(reverted.unwrap().event, Event::FaultReverted { fault: f, .. } if f == *fault));
        let other = blind_view(&env(9, Event::FaultReverted { t: 7.0, fault: "kill-one".into() }), "secret");
        assert!(matches!(other.unwrap().event, Event::FaultReverted { fault: f, .. } if f != *fault));
        // Without the secret, the alias says nothing of the name.
        let elsewhere = blind_view(&injected, "another").unwrap();
        assert!(matches!(elsewhere.event, Event::FaultInjected { fault: f, .. } if f != *fault));
        let failed = Event::FaultInjectFailed { t: 1.0, fault: "slow-one".into(), error: "tc: slow-one".into() };
        let shown = serde_json::to_string(&blind_view(&env(4, failed), "secret").unwrap()).unwrap();
        assert!(!shown.contains("slow-one"), "{shown}");

        let lab_line = Event::ServiceEvent { t: 1.0, text: "fault: latency 300ms ±0ms on t-1".into() };
        assert!(blind_view(&env(5, lab_line), "secret").is_none());
        let service = Event::ServiceEvent { t: 1.0, text: "service api: started task t-4".into() };
        assert_eq!(blind_view(&env(6, service.clone()), "secret").unwrap().event, service);
        let note = Event::Note { t: 2.0, text: "the class is on it".into() };
        assert_eq!(blind_view(&env(7, note.clone()), "secret").unwrap().event, note);
    }

    #[test]
    fn participants_may_mark_a_run_and_nothing_else_that_writes() {
        assert!(participant_may(&Method::POST, "/v1/runs/r-1/marks"));
        for p in ["/v1/runs/r-1/inject", "/v1/runs/r-1/spike", "/v1/runs/r-1/stop", "/v1/runs", "/v1/reload"] {
            assert!(!participant_may(&Method::POST, p), "{p}");
        }
        assert!(!participant_may(&Method::DELETE, "/v1/runs/r-1/marks"));
    }

    #[test]
    fn a_role_comes_from_the_token() {
        let web = Web::new(Some("p".into()), vec![]);
        assert_eq!(role_of(&web, "i", Some("Bearer i")), Role::Instructor);
        assert_eq!(role_of(&web, "i", Some("Bearer p")), Role::Participant);
        assert_eq!(role_of(&web, "i", Some("Bearer x")), Role::Anonymous);
        assert_eq!(role_of(&web, "i", None), Role::Anonymous);
        assert_eq!(role_of(&Web::new(None, vec![]), "i", Some("Bearer p")), Role::Anonymous);
    }

    #[test]
    fn a_read_token_may_read_a_runs_events_and_report_files_only() {
        assert_eq!(readable_run("/v1/runs/r1/events"), Some("r1"));
        assert_eq!(readable_run("/v1/runs/r1/report/report.md"), Some("r1"));
        for p in ["/v1/runs/r1", "/v1/runs", "/v1/runs/r1/stop", "/v1/runs/r1/report", "/metrics", "/v1/whoami"] {
            assert_eq!(readable_run(p), None, "{p}");
        }
    }

    #[test]
    fn the_page_is_small_and_names_no_external_asset() {
        assert!(page_weight() < 64 * 1024, "{} bytes", page_weight());
        for (path, _, body) in ASSETS {
            for external in ["src=\"http", "href=\"http", "url(http", "@import", "fetch(\"http"] {
                assert!(!body.contains(external), "{path}: {external}");
            }
        }
    }
}
