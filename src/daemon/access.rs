//! Who may call what. A caller's role comes from its bearer token (the instructor's, the
//! participants', or none), or, for what a browser cannot send a header with, from a read token
//! in the address that reads one run only. Each route declares the [`Need`] it has where it is
//! routed (`server::routes`), and [`check`] is the one place that compares the two.

use axum::http::{HeaderMap, Method, Uri, header};
use serde::Serialize;

use super::app::{Daemon, Web};
use super::auth::{self, Verdict};

/// Who a caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Instructor,
    Participant,
    /// No token, or one that is neither.
    Anonymous,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Instructor => "instructor",
            Role::Participant => "participant",
            Role::Anonymous => "anonymous",
        }
    }
}

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The game-day page's assets: nobody needs a token.
    Public,
    /// A read: anyone on loopback; with `--allow-remote`, any of the daemon's tokens, or a read
    /// token of the run read.
    Read,
    /// Marking a run: the participants' token or the instructor's.
    Mark,
    /// Everything else that changes something: the instructor's token.
    Instruct,
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token where one is needed (401).
    Missing,
    /// A token that is not the daemon's (403).
    Wrong,
    /// The participants' token on a call only the instructor may make (403).
    ParticipantForbidden,
}

/// The bearer token of a request: its `Authorization` header. A token never comes in the address
/// (where it would land in browser history and server logs); what a browser cannot send a header
/// with carries a read token instead ([`read_token_role`]).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
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

/// The run whose events or report file `path` is: what a read token may read.
fn readable_run(path: &str) -> Option<&str> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "runs", id, "events"] | ["v1", "runs", id, "report", _] => Some(id),
        _ => None,
    }
}

/// The role a `?token=` read token ([`auth::read_token`]) grants to a read of `uri`: its run's
/// events and report files only, until it expires.
fn read_token_role(d: &Daemon, method: &Method, uri: &Uri) -> Option<Role> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let run = readable_run(uri.path())?;
    let t = uri.query()?.split('&').find_map(|kv| kv.strip_prefix("token="))?;
    let now = crate::lease::unix_ms(std::time::SystemTime::now());
    Some(match auth::check_read_token(&read_key(d), t, run, now)?.as_str() {
        "instructor" => Role::Instructor,
        "participant" => Role::Participant,
        _ => Role::Anonymous,
    })
}

/// The role of a request's caller, from its `Authorization` header, or else from a read token in
/// its address.
pub fn caller(d: &Daemon, method: &Method, uri: &Uri, headers: &HeaderMap) -> Role {
    match bearer(headers) {
        Some(h) => role_of(&d.web, &d.token, Some(h)),
        None => read_token_role(d, method, uri).unwrap_or(Role::Anonymous),
    }
}

/// Whether a request may call a route that needs `need`; its caller's role if so.
pub fn check(d: &Daemon, need: Need, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Role, Refusal> {
    let role = caller(d, method, uri, headers);
    let allowed = match need {
        Need::Public => true,
        Need::Read => !d.remote || role != Role::Anonymous,
        Need::Mark => role != Role::Anonymous,
        Need::Instruct => role == Role::Instructor,
    };
    match (allowed, role) {
        (true, _) => Ok(role),
        (false, Role::Participant) => Err(Refusal::ParticipantForbidden),
        (false, _) => match auth::check(bearer(headers), &d.token) {
            Verdict::Missing => Err(Refusal::Missing),
            _ => Err(Refusal::Wrong),
        },
    }
}

/// The key of read tokens: both tokens, so that a new participants' token ends the read tokens
/// made with the old one.
fn read_key(d: &Daemon) -> String {
    format!("{}:{}", d.token, d.web.participant_token.as_deref().unwrap_or(""))
}

/// `GET /v1/runs/{id}/read-token`'s answer.
#[derive(Debug, Serialize)]
pub struct ReadToken {
    pub token: String,
    pub role: Role,
    pub expires_in_s: u64,
}

/// A token that reads run `id`'s events and report files for [`auth::READ_TOKEN_TTL`], with the
/// caller's role (so that a participant's stream stays blind), to put in an address.
pub fn read_token(d: &Daemon, id: &str, headers: &HeaderMap) -> ReadToken {
    let role = role_of(&d.web, &d.token, bearer(headers));
    let now = crate::lease::unix_ms(std::time::SystemTime::now());
    let expires = now + auth::READ_TOKEN_TTL.as_millis() as u64;
    ReadToken {
        token: auth::read_token(&read_key(d), id, role.name(), expires),
        role,
        expires_in_s: auth::READ_TOKEN_TTL.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
