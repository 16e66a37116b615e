//! The live game-day page and what it needs from the daemon: the page itself (HTML, CSS and
//! JavaScript embedded in the binary, no external asset), the caller's role (`GET /v1/whoami`;
//! the roles themselves are `access`'s), the scenarios the daemon can run with their manual
//! catalogs, and blind runs (whoever is not the instructor is not told which fault was injected
//! until the run ends). See docs/gameday.md.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::access::{self, Role};
use super::app::Daemon;
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

/// What is shown of a blind run in progress to whoever is not the instructor: `None` for an
/// event left out. Which fault was injected is hidden: its name becomes an alias that stays the
/// same for the run (so that an injection is still paired with its revert), differs from run to
/// run and cannot be traced back to the name without `secret`; its kind, summary and errors, the journal's record of it,
/// the next timeline action and the lab's own fault lines are left out. Everything else (the
/// charts, the service's events, the marks) is what the class is there to read.
pub fn blind_view(env: &Envelope, secret: &str) -> Option<Envelope> {
    const HIDDEN: &str = "hidden until the run ends";
    let alias = |name: &str| fault_alias(secret, &env.run_id, name);
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
        // A mark names its fault as the page named it to the class.
        Event::MarkAdded { t, mark } => {
            let mut mark = mark.clone();
            mark.fault = mark.fault.as_deref().map(alias);
            mark.moved_from = mark.moved_from.as_deref().map(alias);
            Event::MarkAdded { t: *t, mark }
        }
        Event::MarkMoved { t, id, fault, from } => {
            Event::MarkMoved { t: *t, id: *id, fault: alias(fault), from: alias(from) }
        }
        Event::SecondClosed { window, sample, steady, health, .. } => Event::SecondClosed {
            window: window.clone(),
            sample: sample.clone(),
            steady: *steady,
            health: health.clone(),
            next: None,
        },
        // The lab logs each fault it is told to apply as `fault: …`.
        Event::ServiceEvent { text, .. } if text.starts_with("fault: ") => return None,
        other => other.clone(),
    };
    Some(Envelope { event, ..env.clone() })
}

/// The name a blind run shows for fault `name` to those who may not know it: stable within the
/// run, different in every run, and not traceable back to the name without `secret`.
pub fn fault_alias(secret: &str, run_id: &str, name: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::new()
        .chain_update(secret)
        .chain_update([0])
        .chain_update(run_id)
        .chain_update([0])
        .chain_update(name)
        .finalize();
    format!("fault-{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
}

/// `GET /v1/whoami`: the caller's role, from its token; to the instructor, the participants'
/// token too (the presenter view shows the class its link).
pub async fn whoami(State(d): State<Arc<Daemon>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let role = access::caller(&d, &method, &uri, &headers);
    let participant_token = (role == Role::Instructor).then(|| d.web.participant_token.clone()).flatten();
    axum::Json(Whoami { role, participant_token }).into_response()
}

#[derive(Serialize)]
struct Whoami {
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant_token: Option<String>,
}

/// An embedded asset (see [`ASSETS`]).
pub async fn asset(uri: Uri) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == uri.path()) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
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

/// `GET /v1/scenarios`: the scenarios the page can start, valid ones with their catalogs and
/// invalid ones with their first error.
pub async fn scenarios(State(d): State<Arc<Daemon>>) -> Response {
    let paths = if d.web.scenarios.is_empty() { d.scenario_roots() } else { d.web.scenarios.clone() };
    let list = tokio::task::spawn_blocking(move || {
        super::scenarios::scenario_files(&paths)
            .iter()
            .map(|f| match super::scenarios::load(f) {
                Ok(sc) => scenario_json(f, &sc),
                // A scenario's first problem; of a file that is not one, not a word of it.
                Err(super::scenarios::ScenarioError::Invalid(diags)) => json!({
                    "file": f.display().to_string(),
                    "error": diags.first().map(|d| d.to_string()).unwrap_or_default(),
                }),
                Err(e) => json!({ "file": f.display().to_string(), "error": e.to_string() }),
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
        // A mark names its fault by the alias the class sees, moved or not.
        let mark = crate::vocab::Mark {
            t: 2.0,
            kind: crate::vocab::MarkKind::Detected,
            author: "alice".into(),
            text: String::new(),
            fault: Some("slow-one".into()),
            id: 1,
            moved_from: Some("kill-one".into()),
        };
        let v = blind_view(&env(5, Event::MarkAdded { t: 2.0, mark }), "secret").unwrap();
        let Event::MarkAdded { mark, .. } = &v.event else { panic!("{v:?}") };
        assert_eq!(mark.fault.as_deref(), Some(fault.as_str()));
        assert!(mark.moved_from.as_deref().is_some_and(|f| f.starts_with("fault-")), "{mark:?}");
        let moved = Event::MarkMoved { t: 3.0, id: 1, fault: "kill-one".into(), from: "slow-one".into() };
        let shown = serde_json::to_string(&blind_view(&env(6, moved), "secret").unwrap()).unwrap();
        assert!(!shown.contains("slow-one") && !shown.contains("kill-one"), "{shown}");
        assert_eq!(fault_alias("secret", "r-1", "slow-one"), *fault);

        let lab_line = Event::ServiceEvent { t: 1.0, text: "fault: latency 300ms ±0ms on t-1".into() };
        assert!(blind_view(&env(5, lab_line), "secret").is_none());
        let service = Event::ServiceEvent { t: 1.0, text: "service api: started task t-4".into() };
        assert_eq!(blind_view(&env(6, service.clone()), "secret").unwrap().event, service);
        let note = Event::Note { t: 2.0, text: "the class is on it".into() };
        assert_eq!(blind_view(&env(7, note.clone()), "secret").unwrap().event, note);
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
