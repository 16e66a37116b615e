//! The daemon's HTTP API (axum): runs, their events as server-sent events, their report files
//! and commands, schedules, reload. Errors are `{"error": {"code", "message"}}` with a stable
//! `code` (see docs/daemon.md, "API").

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;
use serde_json::Value;

use super::access::{self, Need, Refusal, Role};
use super::api;
use super::app::{Daemon, ReloadError};
use super::runs::{RunsError, Start};
use super::scenarios::{self, ScenarioError};
use super::scheduler::ScheduleActionError;
use super::store::{RunQuery, StoreError, StoredRun, Trigger};
use crate::engine::bus::{Bus, Received, Subscription};
use crate::engine::events::{Envelope, Event};
use crate::engine::{FaultChoice, Refused, RunCommand};
use crate::report::MarkKind;
use crate::scenario::Diagnostic;

/// An API error: its status, stable code, message and optional details (diagnostics).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    diagnostics: Option<Vec<Diagnostic>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), diagnostics: None }
    }

    /// `422 code` with the diagnostics of `what`, the first in the message.
    fn invalid(code: &'static str, what: &str, diags: Vec<Diagnostic>) -> ApiError {
        let message = format!(
            "{what} is not valid ({} error(s)): {}",
            diags.len(),
            diags.first().map(|d| d.to_string()).unwrap_or_default()
        );
        ApiError { diagnostics: Some(diags), ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let diagnostics = self
            .diagnostics
            .as_ref()
            .map(|d| d.iter().map(|d| api::DiagnosticView { text: d.to_string(), detail: d }).collect());
        let body = api::ErrorBody { error: api::ErrorDetail { code: self.code, message: &self.message, diagnostics } };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<RunsError> for ApiError {
    fn from(e: RunsError) -> ApiError {
        match e {
            RunsError::Busy { .. } => ApiError::new(StatusCode::CONFLICT, "target-busy", e.to_string()),
            RunsError::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", e.to_string()),
            RunsError::Store(StoreError::BadCursor(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad-cursor", e.to_string())
            }
            RunsError::Store(StoreError::NoSuchRun(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, "no-such-run", e.to_string())
            }
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl From<ScenarioError> for ApiError {
    fn from(e: ScenarioError) -> ApiError {
        match e {
            ScenarioError::BadName(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", e.to_string()),
            ScenarioError::Unknown { .. } => ApiError::new(StatusCode::NOT_FOUND, "unknown-scenario", e.to_string()),
            ScenarioError::NotAScenario(_) | ScenarioError::RunbookOutside(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not-a-scenario", e.to_string())
            }
            ScenarioError::Invalid(diags) => ApiError::invalid("invalid-scenario", "the scenario", diags),
        }
    }
}

impl From<ScheduleActionError> for ApiError {
    fn from(e: ScheduleActionError) -> ApiError {
        match e {
            ScheduleActionError::NoSuchSchedule(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "no-such-schedule", e.to_string())
            }
            ScheduleActionError::InvalidScenario { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-scenario", e.to_string())
            }
            ScheduleActionError::Runs(r) => r.into(),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// One route of the API: its method and path, the role it needs ([`Need`]) and its handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub need: Need,
    handler: MethodRouter<Arc<Daemon>>,
}

impl Route {
    fn get<H: Handler<T, Arc<Daemon>>, T: 'static>(path: &'static str, need: Need, h: H) -> Route {
        Route { method: Method::GET, path, need, handler: get(h) }
    }

    fn post<H: Handler<T, Arc<Daemon>>, T: 'static>(path: &'static str, need: Need, h: H) -> Route {
        Route { method: Method::POST, path, need, handler: post(h) }
    }
}

/// Every route of the API, with the role each needs: the router is built from this table alone,
/// so a route cannot be added without saying who may call it (a test walks it with each role).
pub fn routes() -> Vec<Route> {
    use Need::{Instruct, Mark, Public, Read};
    let mut table = vec![
        Route::get("/healthz", Read, healthz),
        Route::get("/metrics", Read, metrics),
        Route::get("/v1/runs", Read, list_runs),
        Route::post("/v1/runs", Instruct, start_run),
        Route::get("/v1/runs/{id}", Read, show_run),
        Route::get("/v1/runs/{id}/events", Read, run_events),
        Route::get("/v1/runs/{id}/read-token", Read, read_token),
        Route::get("/v1/runs/{id}/report/{file}", Read, report_file),
        Route::post("/v1/runs/{id}/stop", Instruct, stop_run),
        Route::post("/v1/runs/{id}/inject", Instruct, inject),
        Route::post("/v1/runs/{id}/spike", Instruct, spike),
        Route::post("/v1/runs/{id}/marks", Mark, mark),
        Route::post("/v1/runs/{id}/marks/{mark}", Instruct, move_mark),
        Route::get("/v1/schedules", Read, list_schedules),
        Route::post("/v1/schedules/{name}/{action}", Instruct, schedule_action),
        Route::post("/v1/reload", Instruct, reload),
        Route::get("/v1/scenarios", Read, super::web::scenarios),
        Route::get("/v1/scenarios/{name}/trend", Read, scenario_trend),
        Route::get("/v1/whoami", Read, super::web::whoami),
        Route::get("/v1/qr.svg", Instruct, qr_code),
    ];
    for (path, _, _) in super::web::ASSETS {
        table.push(Route::get(path, Public, super::web::asset));
    }
    table
}

/// The API: [`routes`], each behind the check of the role it needs, and every error in the JSON
/// shape.
pub fn router(d: Arc<Daemon>) -> Router {
    let mut r = Router::new();
    for route in routes() {
        let need = (d.clone(), route.need);
        r = r.route(route.path, route.handler.route_layer(middleware::from_fn_with_state(need, require)));
    }
    r.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(middleware::map_response(json_errors))
        .with_state(d)
}

/// The check of a route's [`Need`] against the caller's role ([`access::check`]).
async fn require(State((d, need)): State<(Arc<Daemon>, Need)>, req: Request, next: Next) -> Response {
    match access::check(&d, need, req.method(), req.uri(), req.headers()) {
        Ok(_) => next.run(req).await,
        Err(Refusal::Missing) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this call needs `Authorization: Bearer <token>` (the token is in the data directory's `token` file)",
        )
        .into_response(),
        Err(Refusal::Wrong) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "wrong token").into_response(),
        Err(Refusal::ParticipantForbidden) => ApiError::new(
            StatusCode::FORBIDDEN,
            "participant-forbidden",
            "a participant's token may read runs and mark them (detected, mitigated, notes), nothing else",
        )
        .into_response(),
    }
}

/// Every error in the documented shape (`{"error": {"code", "message"}}`), also those that axum's
/// extractors answer in plain text (a body over the limit: 413; a body that cannot be read).
async fn json_errors(r: Response) -> Response {
    let json = r.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = r.status();
    if json || !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid-request",
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    let text = axum::body::to_bytes(r.into_body(), 64 * 1024).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        t => t.to_string(),
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!("{message}: a request body is at most 2 MiB"),
        _ => message,
    };
    ApiError { status, code, message, diagnostics: None }.into_response()
}

/// `GET /healthz`: 200 `ok` or `shutting-down`; 503 `history-unusable` once SQLite has said the
/// history is damaged (no run can be listed, started or stored).
async fn healthz(State(d): State<Arc<Daemon>>) -> Response {
    let runs = d.manager.active_ids().len();
    if let Some(error) = d.manager.db.damaged() {
        let body = api::Health { status: "history-unusable", runs_in_progress: runs, error: Some(error) };
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let status = if d.manager.accepting() { "ok" } else { "shutting-down" };
    axum::Json(api::Health { status, runs_in_progress: runs, error: None }).into_response()
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", message)
}

/// `GET /metrics`: the history's figures and the live ones, in the Prometheus text format.
async fn metrics(State(d): State<Arc<Daemon>>) -> ApiResult {
    let mut live = super::metrics::Live::default();
    for id in d.manager.active_ids() {
        let Some(a) = d.manager.active(&id) else { continue };
        *live.active_faults.entry(a.scenario.name.clone()).or_default() += a.faults_in_place() as u64;
        live.runs_in_progress += 1;
    }
    let names: Vec<String> = d.manager.config().schedules.iter().map(|s| s.schedule.name.clone()).collect();
    // What the history cannot say is left out: the live figures are still given.
    let firings = d
        .manager
        .db
        .call(move |s| names.iter().map(|n| s.last_firing(n)).collect::<Result<Vec<_>, _>>())
        .await
        .unwrap_or_default();
    for f in firings.into_iter().flatten() {
        let late = (f.recorded_at.as_millisecond() - f.due.as_millisecond()).max(0) as u64;
        live.schedule_lag.insert(f.schedule, std::time::Duration::from_millis(late));
    }
    live.webhook = d.manager.webhook_stats();
    // The live figures and `siege_history_usable 0` even when the history cannot be read.
    let text = match d
        .manager
        .db
        .call({
            let live = live.clone();
            move |s| super::metrics::render(s, &live)
        })
        .await
    {
        Ok(text) => text,
        Err(_) if d.manager.db.damaged().is_some() => super::metrics::render_unusable(&live),
        Err(e) => return Err(e.into()),
    };
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

/// `GET /v1/scenarios/{name}/trend?limit=`: verdicts, time-to-detect and MTTR over time, and
/// regression flags.
async fn scenario_trend(
    State(d): State<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| bad_request(e.body_text()))?;
    let limit = match q.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| bad_request(format!("limit: not a number `{l}`")))?,
        None => 0,
    };
    let t = d.manager.db.call(move |s| super::trend::trend(s, &name, limit)).await?;
    Ok(axum::Json(t).into_response())
}

/// `GET /v1/qr.svg?text=`: `text` (at most 1,000 bytes) as a QR code, an SVG; for the presenter
/// view, which shows the class the participants' link to scan.
async fn qr_code(q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>) -> ApiResult {
    let Query(q) = q.map_err(|e| bad_request(e.body_text()))?;
    let text = q.get("text").filter(|t| !t.is_empty()).ok_or_else(|| bad_request("text: missing".into()))?;
    if text.len() > 1000 {
        return Err(bad_request(format!("text: {} bytes, at most 1000", text.len())));
    }
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| bad_request(format!("text: {e}")))?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).quiet_zone(true).build();
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn list_runs(
    State(d): State<Arc<Daemon>>,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| bad_request(e.body_text()))?;
    let mut query =
        RunQuery { scenario: q.get("scenario").cloned(), cursor: q.get("cursor").cloned(), ..RunQuery::default() };
    if let Some(v) = q.get("verdict").or(q.get("state")) {
        query.state = Some(v.parse().map_err(|e: super::store::UnknownName| bad_request(e.to_string()))?);
    }
    if let Some(s) = q.get("since") {
        query.since = Some(s.parse().map_err(|e| bad_request(format!("since: not an RFC 3339 time `{s}`: {e}")))?);
    }
    if let Some(l) = q.get("limit") {
        query.limit = l
            .parse()
            .ok()
            .filter(|n| (1..=super::store::MAX_PAGE).contains(n))
            .ok_or_else(|| bad_request(format!("limit: expected 1 to {}, found `{l}`", super::store::MAX_PAGE)))?;
    }
    let page = d.manager.db.call(move |s| s.list_runs(&query)).await?;
    Ok(axum::Json(api::RunsPage { runs: page.runs.iter().map(api::RunView::from).collect(), next: page.next })
        .into_response())
}

async fn stored_run(d: &Daemon, id: &str) -> Result<StoredRun, ApiError> {
    let id = id.to_string();
    let r = d.manager.db.call({
        let id = id.clone();
        move |s| s.run(&id)
    });
    r.await?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no-such-run", format!("no run `{id}`")))
}

async fn show_run(State(d): State<Arc<Daemon>>, UrlPath(id): UrlPath<String>) -> ApiResult {
    let r = stored_run(&d, &id).await?;
    let files = {
        let id = id.clone();
        d.manager.db.call(move |s| s.file_names(&id)).await?
    };
    let detail = api::RunDetail {
        run: api::RunView::from(&r),
        record: r.record.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null),
        files,
        events_so_far: d.manager.active(&id).map(|a| a.bus.history().len()),
    };
    Ok(axum::Json(detail).into_response())
}

async fn report_file(State(d): State<Arc<Daemon>>, UrlPath((id, file)): UrlPath<(String, String)>) -> ApiResult {
    stored_run(&d, &id).await?;
    let bytes = {
        let (id, file) = (id.clone(), file.clone());
        d.manager
            .db
            .call(move |s| {
                if file != crate::report::REPORT_HTML {
                    return s.file(&id, &file);
                }
                // report.md as a page, its charts (stored beside it) inline.
                let Some(md) = s.file(&id, crate::report::REPORT_MD)? else { return Ok(None) };
                let md = String::from_utf8_lossy(&md);
                let chart = |f: &str| {
                    let svg = f.ends_with(".svg").then(|| s.file(&id, f).ok().flatten()).flatten()?;
                    String::from_utf8(svg).ok()
                };
                Ok(Some(crate::report::html::render(&md, chart).into_bytes()))
            })
            .await?
    };
    let Some(bytes) = bytes else {
        let why = if d.manager.active(&id).is_some() { " yet: the files are stored when the run ends" } else { "" };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no-such-file",
            format!("run `{id}` has no file `{file}`{why}"),
        ));
    };
    let kind = match Path::new(&file).extension().and_then(|e| e.to_str()) {
        Some("md") => "text/markdown; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    scenario: String,
    /// A game day's blind run: its faults are hidden from the participants until it ends.
    #[serde(default)]
    blind: bool,
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the body is not the expected JSON: {e}")))
}

/// The body's media type, lowercase and without parameters (`application/json` when none).
fn media_type(headers: &HeaderMap) -> String {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    kind.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn is_yaml(mime: &str) -> bool {
    matches!(mime, "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml")
}

async fn start_run(State(d): State<Arc<Daemon>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let caller = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    let claim =
        d.web.claim_start(&caller, &body).map_err(|e| ApiError::new(StatusCode::CONFLICT, "repeated-start", e))?;
    let started = start_claimed(&d, &headers, body).await;
    d.web.claimed(claim, started.as_ref().ok().map(String::as_str));
    Ok((StatusCode::ACCEPTED, axum::Json(api::Accepted { id: started? })).into_response())
}

async fn start_claimed(d: &Arc<Daemon>, headers: &HeaderMap, body: Bytes) -> Result<String, ApiError> {
    // A YAML body is a scenario; anything else is read as JSON, whatever it says it is (curl's
    // `-d` sends a form type), as every JSON route does.
    let (scenario, source, blind) = if is_yaml(&media_type(headers)) {
        let workdir = d.workdir.clone();
        let sc = blocking(move || scenarios::load_posted(&body, &workdir)).await?;
        (sc, "posted.yaml".to_string(), false)
    } else {
        let b: StartBody = json_body(&body)?;
        let (roots, workdir) = (d.scenario_roots(), d.workdir.clone());
        let (path, sc) = blocking(move || {
            let path = scenarios::resolve(&roots, &workdir, &b.scenario)?;
            scenarios::load(&path).map(|sc| (path, sc))
        })
        .await?;
        (sc, path.display().to_string(), b.blind)
    };
    Ok(d.manager.start(Start { scenario, source, trigger: Trigger::Api, schedule: None, blind }).await?)
}

/// Runs file reads off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ScenarioError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
    }
}

/// The SSE event of one envelope: `id:` its seq, `event:` its type, `data:` its JSON.
fn sse_event(seq: u64, json: &str) -> SseEvent {
    let ty = serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|v| v["event"]["type"].as_str().map(String::from))
        .unwrap_or_else(|| "event".into());
    SseEvent::default().id(seq.to_string()).event(ty).data(json)
}

type SseResult = Result<SseEvent, std::convert::Infallible>;

/// A running run's events from `next` on: from the bus, gaps (a slow reader) filled from its
/// history, so nothing is missed or repeated. With `blind` (a secret), a blind run as whoever is
/// not the instructor sees it ([`super::web::blind_view`]).
struct Live {
    sub: Subscription,
    bus: Bus,
    next: u64,
    pending: VecDeque<Arc<Envelope>>,
    blind: Option<String>,
}

fn live_stream(bus: Bus, next: u64, blind: Option<String>) -> impl futures_util::Stream<Item = SseResult> + Send {
    let st = Live { sub: bus.subscribe(), bus, next, pending: VecDeque::new(), blind };
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                if e.seq < st.next {
                    continue;
                }
                st.next = e.seq + 1;
                let json = match &st.blind {
                    None => serde_json::to_string(&*e),
                    Some(secret) => match super::web::blind_view(&e, secret) {
                        Some(v) => serde_json::to_string(&v),
                        None => continue,
                    },
                };
                return Some((Ok(sse_event(e.seq, &json.unwrap_or_default())), st));
            }
            match st.sub.recv().await? {
                Received::Event(e) if e.seq <= st.next => st.pending.push_back(e),
                _ => {
                    let since = st.bus.history_since(st.next as usize);
                    st.pending.extend(since);
                }
            }
        }
    })
}

/// A finished run's events from `next` on, from the history, a page at a time.
fn replay_stream(d: Arc<Daemon>, id: String, next: u64) -> impl futures_util::Stream<Item = SseResult> + Send {
    const PAGE: usize = 500;
    let st = (d, id, next, VecDeque::new());
    futures_util::stream::unfold(st, |(d, id, mut next, mut buf)| async move {
        if buf.is_empty() {
            let i = id.clone();
            buf = d.manager.db.call(move |s| s.events(&i, next, PAGE)).await.ok()?.into();
        }
        let e = buf.pop_front()?;
        next = e.seq + 1;
        Some((Ok(sse_event(e.seq, &e.json)), (d, id, next, buf)))
    })
}

/// `GET /v1/runs/{id}/read-token` ([`super::web::read_token`]).
async fn read_token(State(d): State<Arc<Daemon>>, UrlPath(id): UrlPath<String>, headers: HeaderMap) -> ApiResult {
    stored_run(&d, &id).await?;
    Ok(axum::Json(access::read_token(&d, &id, &headers)).into_response())
}

async fn run_events(
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiResult {
    let next = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |n| n + 1);
    let keep = KeepAlive::default();
    if let Some(a) = d.manager.active(&id) {
        let role = access::caller(&d, &Method::GET, &uri, &headers);
        // Hidden while it runs: once it has finished, its events are shown whole.
        let ended = a.bus.history().last().is_some_and(|e| matches!(e.event, Event::RunFinished { .. }));
        let blind = (a.blind && !ended && role != Role::Instructor).then(|| d.token.clone());
        return Ok(Sse::new(live_stream(a.bus, next, blind)).keep_alive(keep).into_response());
    }
    stored_run(&d, &id).await?;
    Ok(Sse::new(replay_stream(d.clone(), id, next)).keep_alive(keep).into_response())
}

/// The run in progress `id`; `409 run-ended` for a finished one, `404` for none.
async fn running(d: &Daemon, id: &str) -> Result<super::runs::Active, ApiError> {
    if let Some(a) = d.manager.active(id) {
        return Ok(a);
    }
    stored_run(d, id).await?;
    Err(ApiError::new(StatusCode::CONFLICT, "run-ended", format!("run `{id}` has ended")))
}

/// Sends a command to a running run; refusals as 409 / 422 with the engine's reason.
async fn command(d: &Daemon, id: &str, c: RunCommand) -> ApiResult {
    let done = send(d, id, c).await?;
    Ok(axum::Json(api::Done { done }).into_response())
}

/// [`command`]: what the run did, in words.
async fn send(d: &Daemon, id: &str, c: RunCommand) -> Result<String, ApiError> {
    let r = match running(d, id).await?.commander.send(c).await {
        Ok(done) => return Ok(done),
        Err(r) => r,
    };
    let (status, code) = match &r {
        Refused::UnknownFault(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown-fault"),
        Refused::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-command"),
        Refused::NotNow(_) => (StatusCode::CONFLICT, "not-now"),
        Refused::Target(_) => (StatusCode::CONFLICT, "target-refused"),
        Refused::Failed(_) => (StatusCode::BAD_GATEWAY, "injection-failed"),
        Refused::Ended => (StatusCode::CONFLICT, "run-ended"),
    };
    Err(ApiError::new(status, code, r.to_string()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StopBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn stop_run(State(d): State<Arc<Daemon>>, UrlPath(id): UrlPath<String>, body: Bytes) -> ApiResult {
    let b: StopBody = json_body(&body)?;
    let reason = b.reason.unwrap_or_else(|| "stopped through the daemon's API".into());
    command(&d, &id, RunCommand::Stop { reason }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectBody {
    /// A name of the manual catalog, or a fault mapping.
    fault: Option<Value>,
    number: Option<usize>,
}

/// A fault given in full (YAML or JSON text), checked against the run's scenario like an entry
/// of its manual catalog; `422 invalid-fault` with the diagnostics.
async fn given_fault(d: &Daemon, id: &str, text: &[u8]) -> Result<FaultChoice, ApiError> {
    let run = running(d, id).await?;
    crate::scenario::load_fault("request", text, &run.scenario)
        .map(FaultChoice::Given)
        .map_err(|diags| ApiError::invalid("invalid-fault", "the fault", diags))
}

/// `{"fault": "name"}`, `{"number": N}`, `{"fault": {…a fault mapping…}}`, or the mapping as a
/// YAML body (`Content-Type: application/yaml`).
async fn inject(
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let choice = if is_yaml(&media_type(&headers)) {
        given_fault(&d, &id, &body).await?
    } else {
        let b: InjectBody = json_body(&body)?;
        match (b.fault, b.number) {
            (Some(Value::String(f)), None) => FaultChoice::Named(f),
            // One key a line, so that a diagnostic's line points at its key.
            (Some(m @ Value::Object(_)), None) => {
                given_fault(&d, &id, serde_json::to_string_pretty(&m).unwrap_or_default().as_bytes()).await?
            }
            (None, Some(n)) => FaultChoice::Numbered(n),
            _ => {
                return Err(bad_request(
                    "give either `fault` (a name of the manual catalog, or a fault mapping) or `number`".into(),
                ));
            }
        }
    };
    command(&d, &id, RunCommand::Inject(choice)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpikeBody {
    rate: Value,
    duration: Value,
}

async fn spike(State(d): State<Arc<Daemon>>, UrlPath(id): UrlPath<String>, body: Bytes) -> ApiResult {
    let b: SpikeBody = json_body(&body)?;
    let (rate, duration) = spike_numbers(&b).map_err(bad_request)?;
    command(&d, &id, RunCommand::SetRate { rate, duration }).await
}

/// The longest spike a request may ask for (as a scenario's durations).
const MAX_SPIKE_SECONDS: f64 = 1e9;

/// A spike's rate and duration, range-checked: a number out of range is the request's fault
/// (400), never a panic further on.
fn spike_numbers(b: &SpikeBody) -> Result<(f64, std::time::Duration), String> {
    use crate::engine::run::MAX_COMMANDED_RATE;
    use crate::scenario::units::{parse_duration, parse_rate};
    let rate = match &b.rate {
        Value::Number(n) => n.as_f64().ok_or_else(|| "not a number".to_string()),
        Value::String(s) => parse_rate(s),
        _ => Err("expected a number or a rate such as `60/s`".into()),
    }
    .and_then(|r| {
        (r.is_finite() && (0.0..=MAX_COMMANDED_RATE).contains(&r))
            .then_some(r)
            .ok_or_else(|| format!("expected 0 to {MAX_COMMANDED_RATE} requests per second, found {r}"))
    })
    .map_err(|e| format!("rate: {e}"))?;
    let duration = match &b.duration {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_SPIKE_SECONDS)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| format!("expected a number of seconds above 0 and at most {MAX_SPIKE_SECONDS}, found {n}")),
        Value::String(s) => parse_duration(s),
        _ => Err("expected seconds or a duration such as `15s`".into()),
    }
    .map_err(|e| format!("duration: {e}"))?;
    Ok((rate, duration))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkBody {
    kind: MarkKind,
    #[serde(default)]
    author: String,
    #[serde(default)]
    text: String,
    /// The fault the mark is about: its name, or in a blind run the alias the page shows.
    #[serde(default)]
    fault: Option<String>,
}

async fn mark(
    State(d): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let b: MarkBody = json_body(&body)?;
    // In a blind run, everyone but the instructor names a fault by its alias, and is answered
    // (or refused, with the faults injected listed) in aliases: a guessed name is not confirmed.
    let hidden = d.manager.active(&id).is_some_and(|a| a.blind)
        && access::caller(&d, &Method::POST, &uri, &headers) != Role::Instructor;
    let fault = match b.fault {
        Some(alias) if hidden => Some(fault_of_alias(&aliases(&d, &id), &alias).ok_or_else(|| {
            let why = "refused: no fault this run injected has that alias";
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown-fault", why)
        })?),
        other => other,
    };
    let sent = send(&d, &id, RunCommand::Mark { kind: b.kind, author: b.author, text: b.text, fault }).await;
    // Read after the answer: it names the faults injected by then.
    let pairs = if hidden { aliases(&d, &id) } else { vec![] };
    match sent {
        Ok(done) => Ok(axum::Json(api::Done { done: aliased(&pairs, done) }).into_response()),
        Err(mut e) => {
            e.message = aliased(&pairs, std::mem::take(&mut e.message));
            Err(e)
        }
    }
}

/// `text` with every fault name of `pairs` replaced by its alias.
fn aliased(pairs: &[(String, String)], mut text: String) -> String {
    for (name, alias) in pairs {
        text = text.replace(name, alias);
    }
    text
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    fault: String,
}

/// `POST /v1/runs/{id}/marks/{mark}`: the instructor credits a mark to another fault.
async fn move_mark(
    State(d): State<Arc<Daemon>>,
    UrlPath((id, mark)): UrlPath<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let b: MoveBody = json_body(&body)?;
    let Ok(mark) = mark.parse::<u32>() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", format!("no mark `{mark}`")));
    };
    let fault = fault_named(&d, &id, b.fault);
    command(&d, &id, RunCommand::MoveMark { id: mark, fault }).await
}

/// The fault a blind run's alias stands for (the name itself otherwise), for the instructor.
fn fault_named(d: &Daemon, id: &str, fault: String) -> String {
    if !d.manager.active(id).is_some_and(|a| a.blind) {
        return fault;
    }
    fault_of_alias(&aliases(d, id), &fault).unwrap_or(fault)
}

/// The injected fault whose alias is `alias`, of `pairs` ([`aliases`]).
fn fault_of_alias(pairs: &[(String, String)], alias: &str) -> Option<String> {
    pairs.iter().find(|(_, a)| a == alias).map(|(name, _)| name.clone())
}

/// The faults the running run `id` has injected, each with its blind alias, the longest name
/// first (`slow#2` is replaced before `slow`).
fn aliases(d: &Daemon, id: &str) -> Vec<(String, String)> {
    let Some(a) = d.manager.active(id) else { return vec![] };
    let history = a.bus.history();
    let mut pairs: Vec<(String, String)> = history
        .iter()
        .filter_map(|e| match &e.event {
            Event::FaultInjected { fault, .. } => Some((fault.clone(), super::web::fault_alias(&d.token, id, fault))),
            _ => None,
        })
        .collect();
    pairs.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    pairs
}

async fn list_schedules(State(d): State<Arc<Daemon>>) -> ApiResult {
    let config = d.manager.config();
    let now = jiff::Timestamp::now();
    let mut out = vec![];
    for sc in &config.schedules {
        let s = &sc.schedule;
        let name = s.name.clone();
        let last = d.manager.db.call(move |st| st.last_firing(&name)).await?;
        let cadence = match &s.cadence {
            super::schedule::Cadence::Cron(c) => {
                api::CadenceView::Cron { cron: c.expr().into(), timezone: c.zone_name().into() }
            }
            super::schedule::Cadence::Every(e) => api::CadenceView::Every { every: crate::util::format_duration(*e) },
        };
        out.push(api::ScheduleView {
            name: s.name.clone(),
            scenario: sc.scenario.display().to_string(),
            cadence,
            enabled: s.enabled,
            paused: d.scheduler.is_paused(&s.name),
            next_due: api::due(s.enabled.then(|| s.next_due(now)).flatten()),
            last_firing: last.map(api::FiringView::from),
        });
    }
    Ok(axum::Json(api::Schedules { schedules: out }).into_response())
}

async fn schedule_action(
    State(d): State<Arc<Daemon>>,
    UrlPath((name, action)): UrlPath<(String, String)>,
) -> ApiResult {
    match action.as_str() {
        "pause" | "resume" => {
            d.scheduler.set_paused(&name, action == "pause").await?;
            Ok(axum::Json(api::PauseState { paused: action == "pause", name }).into_response())
        }
        "trigger" => {
            let id = d.scheduler.trigger(&name).await?;
            Ok((StatusCode::ACCEPTED, axum::Json(api::Accepted { id })).into_response())
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "expected pause, resume or trigger")),
    }
}

async fn reload(State(d): State<Arc<Daemon>>) -> ApiResult {
    match d.reload() {
        Ok(n) => Ok(axum::Json(api::Reloaded { reloaded: true, schedules: n }).into_response()),
        Err(ReloadError::NoConfig) => {
            Err(ApiError::new(StatusCode::CONFLICT, "no-config", ReloadError::NoConfig.to_string()))
        }
        Err(ReloadError::Invalid(e)) => Err(ApiError {
            diagnostics: Some(e.diagnostics.clone()),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-config",
                format!("the config is not valid; the old one stays in force:\n{e}"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::app::Web;
    use crate::daemon::config::Config;
    use crate::daemon::runs::{Db, Manager};
    use crate::daemon::scheduler::Scheduler;
    use crate::daemon::store::{NewRun, RunEnd, RunState, Store};
    use axum::body::Body;
    use tower::ServiceExt;

    const INSTRUCTOR: &str = "instructor-token";
    const PARTICIPANT: &str = "participant-token";

    /// A daemon in this process on a history holding one finished run, `r1`, with its
    /// report.md, and a scenario `quick` in its `scenarios/`.
    fn daemon(remote: bool) -> (tempfile::TempDir, Arc<Daemon>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("history.db")).unwrap();
        let at = "2026-12-01T00:00:00Z".parse().unwrap();
        let run = NewRun {
            id: "r1".into(),
            scenario: "quick".into(),
            target: "lab".into(),
            trigger: Trigger::Api,
            schedule: None,
            started_at: at,
            blind: false,
        };
        store.insert_run(&run).unwrap();
        let end = RunEnd { state: RunState::Passed, finished_at: at, time_to_detect: None, mttr: None, record: None };
        store.finish_run("r1", &end).unwrap();
        store.put_file("r1", "report.md", b"# report").unwrap();
        std::fs::create_dir(dir.path().join("scenarios")).unwrap();
        std::fs::write(
            dir.path().join("scenarios/quick.yaml"),
            "name: quick\ntarget: { lab: { service: api, tasks: 1 } }\nload: { url: /, rate: 5/s, duration: 10s }\n\
             steady_state: { error_rate: \"< 1%\" }\nrecovery: { within: 5s }\n",
        )
        .unwrap();
        let conn = crate::backend::Connection::from_env().unwrap();
        let manager = Arc::new(Manager::new(Db::new(store), dir.path(), conn, Config::default(), None));
        let scheduler = Scheduler::new(manager.clone());
        let d = Daemon {
            manager,
            scheduler,
            config_path: None,
            token: INSTRUCTOR.into(),
            remote,
            workdir: dir.path().to_path_buf(),
            scenario_roots: vec![],
            web: Web::new(Some(PARTICIPANT.into()), vec![]),
        };
        (dir, Arc::new(d))
    }

    /// One request through the router, no socket: the status and the body (JSON when it is).
    async fn call(d: &Arc<Daemon>, method: &str, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
        call_typed(d, method, path, token, "application/json", body.as_bytes().to_vec()).await
    }

    async fn call_typed(
        d: &Arc<Daemon>,
        method: &str,
        path: &str,
        token: Option<&str>,
        kind: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = axum::http::Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, kind);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = router(d.clone()).oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        if resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")) {
            return (status, Value::Null);
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Who may call what: every route of the router, and nothing else. A new route must be added
    /// here, saying who may call it, or this test fails.
    const TABLE: &[(&str, &str, Need)] = &[
        ("GET", "/healthz", Need::Read),
        ("GET", "/metrics", Need::Read),
        ("GET", "/v1/runs", Need::Read),
        ("POST", "/v1/runs", Need::Instruct),
        ("GET", "/v1/runs/{id}", Need::Read),
        ("GET", "/v1/runs/{id}/events", Need::Read),
        ("GET", "/v1/runs/{id}/read-token", Need::Read),
        ("GET", "/v1/runs/{id}/report/{file}", Need::Read),
        ("POST", "/v1/runs/{id}/stop", Need::Instruct),
        ("POST", "/v1/runs/{id}/inject", Need::Instruct),
        ("POST", "/v1/runs/{id}/spike", Need::Instruct),
        ("POST", "/v1/runs/{id}/marks", Need::Mark),
        ("POST", "/v1/runs/{id}/marks/{mark}", Need::Instruct),
        ("GET", "/v1/schedules", Need::Read),
        ("POST", "/v1/schedules/{name}/{action}", Need::Instruct),
        ("POST", "/v1/reload", Need::Instruct),
        ("GET", "/v1/scenarios", Need::Read),
        ("GET", "/v1/scenarios/{name}/trend", Need::Read),
        ("GET", "/v1/whoami", Need::Read),
        ("GET", "/v1/qr.svg", Need::Instruct),
        ("GET", "/", Need::Public),
        ("GET", "/ui/app.js", Need::Public),
        ("GET", "/ui/app.css", Need::Public),
    ];

    #[test]
    fn every_route_is_in_the_role_table_and_the_table_has_no_other() {
        let mut routed: Vec<(String, &str, Need)> =
            routes().iter().map(|r| (r.method.to_string(), r.path, r.need)).collect();
        let mut table: Vec<(String, &str, Need)> = TABLE.iter().map(|(m, p, n)| (m.to_string(), *p, *n)).collect();
        routed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        table.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        assert_eq!(routed, table);
    }

    /// What a caller without a role is answered on a route that needs `need`: allowed (`None`)
    /// or refused with this status and code.
    fn expected(need: Need, who: Option<&str>, remote: bool) -> Option<(StatusCode, &'static str)> {
        let role = match who {
            Some(INSTRUCTOR) => Role::Instructor,
            Some(PARTICIPANT) => Role::Participant,
            _ => Role::Anonymous,
        };
        let refused = match who {
            Some(PARTICIPANT) => (StatusCode::FORBIDDEN, "participant-forbidden"),
            Some(INSTRUCTOR) => return None,
            Some(_) => (StatusCode::FORBIDDEN, "forbidden"),
            None => (StatusCode::UNAUTHORIZED, "unauthorized"),
        };
        let allowed = match need {
            Need::Public => true,
            Need::Read => !remote || role != Role::Anonymous,
            Need::Mark => role != Role::Anonymous,
            Need::Instruct => role == Role::Instructor,
        };
        (!allowed).then_some(refused)
    }

    #[tokio::test]
    async fn every_route_answers_each_role_as_the_table_says() {
        for remote in [false, true] {
            let (_dir, d) = daemon(remote);
            for (method, path, need) in TABLE {
                let path = path
                    .replace("{id}", "r1")
                    .replace("{file}", "report.md")
                    .replace("{name}", "nightly")
                    .replace("{action}", "pause");
                for who in [None, Some(PARTICIPANT), Some(INSTRUCTOR), Some("a-wrong-token")] {
                    let (status, v) = call(&d, method, &path, who, "{}").await;
                    let what = format!("{method} {path} as {who:?} (remote: {remote}): {status} {v}");
                    match expected(*need, who, remote) {
                        Some((s, code)) => {
                            assert_eq!((status, v["error"]["code"].as_str()), (s, Some(code)), "{what}")
                        }
                        None => {
                            assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{what}")
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn the_error_table_each_in_the_json_shape() {
        let (_dir, d) = daemon(false);
        let big = vec![b' '; 3 << 20];
        let yaml = b"name: bad\nload: { url: /, rate: 10/s, duraton: 5s }\n".to_vec();
        let cases: Vec<(&str, &str, Option<&str>, &str, Vec<u8>, u16, &str)> = vec![
            ("POST", "/v1/runs", None, "application/json", b"{}".to_vec(), 401, "unauthorized"),
            ("POST", "/v1/runs", Some("nope"), "application/json", b"{}".to_vec(), 403, "forbidden"),
            (
                "POST",
                "/v1/runs/r1/stop",
                Some(PARTICIPANT),
                "application/json",
                b"{}".to_vec(),
                403,
                "participant-forbidden",
            ),
            ("GET", "/v1/runs/nope", None, "application/json", vec![], 404, "no-such-run"),
            ("GET", "/v1/runs/r1/report/nope.md", None, "application/json", vec![], 404, "no-such-file"),
            ("GET", "/v1/nothing-here", None, "application/json", vec![], 404, "not-found"),
            (
                "POST",
                "/v1/runs",
                Some(INSTRUCTOR),
                "text/plain",
                br#"{"scenario": "missing"}"#.to_vec(),
                404,
                "unknown-scenario",
            ),
            ("DELETE", "/v1/runs", Some(INSTRUCTOR), "application/json", vec![], 405, "method-not-allowed"),
            ("POST", "/v1/runs/r1/stop", Some(INSTRUCTOR), "application/json", b"{}".to_vec(), 409, "run-ended"),
            ("POST", "/v1/runs", Some(INSTRUCTOR), "application/json", big, 413, "body-too-large"),
            ("POST", "/v1/runs", Some(INSTRUCTOR), "application/yaml", yaml, 422, "invalid-scenario"),
            (
                "POST",
                "/v1/runs/r1/spike",
                Some(INSTRUCTOR),
                "application/json",
                br#"{"rate": 1, "duration": 1e308}"#.to_vec(),
                400,
                "invalid-request",
            ),
            ("POST", "/v1/runs", Some(INSTRUCTOR), "application/json", b"{nope".to_vec(), 400, "invalid-request"),
            ("POST", "/v1/reload", Some(INSTRUCTOR), "application/json", vec![], 409, "no-config"),
            ("GET", "/v1/qr.svg", Some(INSTRUCTOR), "application/json", vec![], 400, "invalid-request"),
        ];
        for (method, path, token, kind, body, status, code) in cases {
            let (s, v) = call_typed(&d, method, path, token, kind, body).await;
            let what = format!("{method} {path}: {s} {v}");
            assert_eq!((s.as_u16(), v["error"]["code"].as_str()), (status, Some(code)), "{what}");
            assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
        }
        // 503 once the daemon stops taking runs; /healthz says so.
        d.manager.shutdown("the test stops the daemon");
        let (s, v) = call(&d, "POST", "/v1/runs", Some(INSTRUCTOR), r#"{"scenario": "quick"}"#).await;
        assert_eq!((s.as_u16(), v["error"]["code"].as_str()), (503, Some("shutting-down")), "{v}");
        let (s, v) = call(&d, "GET", "/healthz", None, "").await;
        assert_eq!((s.as_u16(), v["status"].as_str()), (200, Some("shutting-down")), "{v}");
    }

    #[tokio::test]
    async fn a_schedule_scenario_in_the_working_directory_is_a_root_and_its_neighbours_are_not() {
        let (dir, d) = daemon(false);
        let quick = std::fs::read_to_string(dir.path().join("scenarios/quick.yaml")).unwrap();
        std::fs::write(dir.path().join("nightly.yaml"), quick.replace("quick", "nightly")).unwrap();
        std::fs::write(dir.path().join("other.yaml"), quick.replace("quick", "other")).unwrap();
        let text = "schedules:\n  - { name: n, scenario: nightly.yaml, every: 1h }\n";
        d.manager.set_config(crate::daemon::config::load_str("daemon.yaml", text, dir.path()).unwrap());
        let roots = d.scenario_roots();
        assert!(!roots.contains(&dir.path().to_path_buf()), "{roots:?}");
        let found = scenarios::resolve(&roots, dir.path(), "nightly").unwrap();
        assert_eq!(found, dir.path().join("nightly.yaml").canonicalize().unwrap());
        let refused = scenarios::resolve(&roots, dir.path(), "other.yaml");
        assert!(matches!(refused, Err(ScenarioError::Unknown { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn the_scenario_list_names_a_file_that_is_not_a_scenario_without_its_content() {
        let (dir, d) = daemon(false);
        std::fs::write(dir.path().join("scenarios/notes.yaml"), "db_password: NOT-TO-BE-SHOWN\n").unwrap();
        let (s, v) = call(&d, "GET", "/v1/scenarios", None, "").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(!v.to_string().contains("NOT-TO-BE-SHOWN") && !v.to_string().contains("db_password"), "{v}");
        let notes =
            v["scenarios"].as_array().unwrap().iter().find(|e| e["file"].as_str().unwrap().ends_with("notes.yaml"));
        assert!(notes.is_some_and(|e| e["error"].as_str().unwrap().contains("is not a scenario")), "{v}");
    }
}
