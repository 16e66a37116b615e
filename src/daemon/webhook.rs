//! Alerts posted to the config's webhook: Slack-compatible JSON (`{"text": …}` plus the fields
//! a person or a script reads), on a run that ended `failed`, `aborted`, `interrupted` or
//! `revert-failed`, and on a regression (see [`super::trend`]).
//!
//! A slow or dead webhook never holds up a run: [`Webhook::send`] only puts the alert in a
//! bounded queue and returns; one task drains the queue, one alert at a time, each with retries
//! and backoff. When the queue is full the alert is dropped, counted and logged. See
//! docs/daemon.md, "Alerts".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::store::{RunState, StoredRun};
use super::trend::Regression;
use crate::load::Tls;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    Failed,
    Aborted,
    Interrupted,
    RevertFailed,
    Regression,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Failed => "failed",
            AlertKind::Aborted => "aborted",
            AlertKind::Interrupted => "interrupted",
            AlertKind::RevertFailed => "revert-failed",
            AlertKind::Regression => "regression",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub scenario: String,
    pub run_id: String,
    /// The run's final state.
    pub state: RunState,
    /// Why, in a sentence: the verdict's reason, or the regression's message.
    pub reason: String,
    /// The run in the API, a path (`/v1/runs/ID`): the daemon does not know the address its
    /// readers reach it by.
    pub link: String,
}

/// The reason stored in a run's record (report.json: `verdict.reason`), if it has one.
fn record_reason(run: &StoredRun) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(run.record.as_deref()?).ok()?;
    v["verdict"]["reason"].as_str().filter(|s| !s.is_empty()).map(String::from)
}

impl Alert {
    /// The alert for a run that ended, if its state is one that alerts (`failed`, `aborted`,
    /// `interrupted`, `revert-failed`). Pass the run as [`super::store::Store::run`] returns it
    /// (with its record) for the verdict's reason.
    pub fn for_run(run: &StoredRun) -> Option<Alert> {
        let (kind, fallback) = match run.state {
            RunState::Failed => (AlertKind::Failed, "the run failed"),
            RunState::Aborted => (AlertKind::Aborted, "a stop condition aborted the run"),
            RunState::Interrupted => {
                (AlertKind::Interrupted, "the run was interrupted: the daemon stopped or was killed")
            }
            RunState::RevertFailed => (AlertKind::RevertFailed, "a fault could not be reverted: check the target"),
            _ => return None,
        };
        Some(Alert { kind, reason: record_reason(run).unwrap_or_else(|| fallback.to_string()), ..Alert::about(run) })
    }

    /// The alert for a run that is a regression.
    pub fn regression(run: &StoredRun, r: &Regression) -> Alert {
        Alert { kind: AlertKind::Regression, reason: r.message.clone(), ..Alert::about(run) }
    }

    fn about(run: &StoredRun) -> Alert {
        Alert {
            kind: AlertKind::Failed,
            scenario: run.scenario.clone(),
            run_id: run.id.clone(),
            state: run.state,
            reason: String::new(),
            link: format!("/v1/runs/{}", run.id),
        }
    }

    /// The line a chat shows.
    pub fn text(&self) -> String {
        let what = match self.kind {
            AlertKind::Regression => format!("regressed ({})", self.state),
            k => k.as_str().to_string(),
        };
        format!("siege: {} {what}, run {}: {} ({})", self.scenario, self.run_id, self.reason, self.link)
    }

    /// The JSON posted: `text` for Slack, and every field on its own.
    pub fn payload(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["text"] = self.text().into();
        v
    }
}

/// How alerts are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// Tries per alert, the first included.
    pub attempts: u32,
    /// The wait before the first retry, doubled before each next one.
    pub first_backoff: Duration,
    /// Each attempt (connect, TLS, request, answer) is given up after this.
    pub timeout: Duration,
    /// Alerts waiting at most; more are dropped.
    pub queue: usize,
}

impl Default for WebhookOptions {
    /// 4 tries (retries after 1 s, 2 s and 4 s), 5 s each, 64 alerts queued.
    fn default() -> Self {
        WebhookOptions {
            attempts: 4,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            queue: 64,
        }
    }
}

/// What became of the alerts so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// Accepted by the webhook (a 2xx answer).
    pub delivered: u64,
    /// Given up after every attempt, or refused with a 4xx.
    pub failed: u64,
    /// Not queued: the queue was full.
    pub dropped: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Why the latest failed attempt failed.
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook `{0}` is not an http or https URL with a host")]
    Url(String),
    #[error("webhook `{url}`: {message}")]
    Tls { url: String, message: String },
    #[error("the webhook's delivery task needs a tokio runtime")]
    NoRuntime,
}

/// Where alerts go, parsed once.
struct Endpoint {
    url: String,
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header.
    authority: String,
    path: String,
    tls: Option<Tls>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, WebhookError> {
        let bad = || WebhookError::Url(url.to_string());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = host.trim_start_matches('[').trim_end_matches(']');
            Some(Tls::new(name, false).map_err(|message| WebhookError::Tls { url: url.to_string(), message })?)
        } else {
            None
        };
        Ok(Endpoint {
            url: url.to_string(),
            addr: format!("{host}:{port}"),
            authority: uri.authority().ok_or_else(bad)?.to_string(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            tls,
        })
    }
}

/// Why one attempt failed, and whether another could succeed.
struct AttemptError {
    message: String,
    retry: bool,
}

fn transient(message: String) -> AttemptError {
    AttemptError { message, retry: true }
}

async fn post_on<IO>(io: IO, ep: &Endpoint, body: Bytes) -> Result<(), AttemptError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| transient(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::post(ep.path.as_str())
        .header(http::header::HOST, ep.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, concat!("siege/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(body))
        .map_err(|e| AttemptError { message: e.to_string(), retry: false })?;
    let resp = sender.send_request(req).await.map_err(|e| transient(e.to_string()))?;
    let status = resp.status();
    // Read the answer so that the connection ends cleanly; its content does not matter.
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        return Ok(());
    }
    // A client error is final (the URL or the payload is wrong), except "too many requests" and
    // "request timeout".
    let retry = !status.is_client_error() || matches!(status.as_u16(), 408 | 429);
    Err(AttemptError { message: format!("answered {status}"), retry })
}

async fn attempt(ep: &Endpoint, body: Bytes) -> Result<(), AttemptError> {
    let tcp =
        TcpStream::connect(&ep.addr).await.map_err(|e| transient(format!("cannot connect to {}: {e}", ep.addr)))?;
    let _ = tcp.set_nodelay(true);
    match &ep.tls {
        None => post_on(tcp, ep, body).await,
        Some(tls) => {
            let stream = tls.handshake(tcp).await.map_err(|e| transient(format!("TLS: {e}")))?;
            post_on(stream, ep, body).await
        }
    }
}

#[derive(Default)]
struct Shared {
    stats: Mutex<WebhookStats>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut WebhookStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Delivers one alert, with retries; records the outcome.
async fn deliver(ep: &Endpoint, opts: &WebhookOptions, shared: &Shared, alert: &Alert) {
    let body = Bytes::from(alert.payload().to_string());
    let mut backoff = opts.first_backoff;
    for n in 1..=opts.attempts.max(1) {
        if n > 1 {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
            shared.update(|s| s.retries += 1);
        }
        let r = match tokio::time::timeout(opts.timeout, attempt(ep, body.clone())).await {
            Ok(r) => r,
            Err(_) => Err(transient(format!("no answer within {:?}", opts.timeout))),
        };
        match r {
            Ok(()) => {
                shared.update(|s| s.delivered += 1);
                return;
            }
            Err(e) => {
                let last = !e.retry || n == opts.attempts.max(1);
                shared.update(|s| s.last_error = Some(e.message.clone()));
                if last {
                    eprintln!(
                        "siege daemon: webhook {}: gave up on the {} alert of run {} after {n} attempt(s): {}",
                        ep.url,
                        alert.kind.as_str(),
                        alert.run_id,
                        e.message
                    );
                    shared.update(|s| s.failed += 1);
                    return;
                }
            }
        }
    }
}

/// The webhook's queue and the task that drains it. Dropping it lets the task finish the queued
/// alerts and end.
pub struct Webhook {
    url: String,
    tx: mpsc::Sender<Alert>,
    shared: Arc<Shared>,
}

impl Webhook {
    /// Starts the delivery task for `url` on the current tokio runtime. The task ends once the
    /// `Webhook` is dropped and the queue is drained.
    pub fn start(url: &str, opts: WebhookOptions) -> Result<(Webhook, tokio::task::JoinHandle<()>), WebhookError> {
        let ep = Endpoint::parse(url)?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        let (tx, mut rx) = mpsc::channel::<Alert>(opts.queue.max(1));
        let shared = Arc::new(Shared::default());
        let task = rt.spawn({
            let shared = shared.clone();
            async move {
                while let Some(alert) = rx.recv().await {
                    deliver(&ep, &opts, &shared, &alert).await;
                }
            }
        });
        Ok((Webhook { url: url.to_string(), tx, shared }, task))
    }

    /// Queues an alert and returns at once: `false` if the queue was full and the alert was
    /// dropped (counted and logged).
    pub fn send(&self, alert: Alert) -> bool {
        match self.tx.try_send(alert) {
            Ok(()) => true,
            Err(e) => {
                let alert = match e {
                    mpsc::error::TrySendError::Full(a) | mpsc::error::TrySendError::Closed(a) => a,
                };
                eprintln!(
                    "siege daemon: webhook {}: queue full, dropped the {} alert of run {}",
                    self.url,
                    alert.kind.as_str(),
                    alert.run_id
                );
                self.shared.update(|s| s.dropped += 1);
                false
            }
        }
    }

    /// What became of the alerts so far.
    pub fn stats(&self) -> WebhookStats {
        self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// At exit: closes `hook`'s queue and waits for the delivery `tasks` to post what is still
/// queued, at most `grace`, or until `hurry` is cancelled. Returns whether every queued alert was
/// handled (delivered or given up on) and how many were queued when the queue closed.
pub async fn drain(
    hook: Option<Webhook>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
    hurry: &tokio_util::sync::CancellationToken,
) -> (bool, usize) {
    let queued = hook.as_ref().map_or(0, |h| h.tx.max_capacity() - h.tx.capacity());
    // The tasks end once their queue is closed and drained.
    drop(hook);
    let all = futures_util::future::join_all(tasks);
    let done = tokio::select! {
        r = tokio::time::timeout(grace, all) => r.is_ok(),
        _ = hurry.cancelled() => false,
    };
    (done, queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn run(state: RunState, record: Option<&str>) -> StoredRun {
        StoredRun {
            id: "r-42".into(),
            scenario: "task-kill".into(),
            target: "lab:api".into(),
            state,
            trigger: super::super::store::Trigger::Schedule,
            schedule: Some("nightly".into()),
            started_at: "2026-12-01T02:30:00Z".parse().unwrap(),
            finished_at: None,
            time_to_detect: None,
            mttr: None,
            blind: false,
            record: record.map(String::from),
        }
    }

    /// What the fake webhook received: each request's arrival and body.
    #[derive(Default)]
    struct Seen {
        requests: Mutex<Vec<(Instant, String)>>,
    }

    /// Reads one HTTP/1.1 request (head and Content-Length body) from `s`.
    async fn read_request(s: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
                assert_eq!((req.method, req.path), (Some("POST"), Some("/hooks/T0?x=1")));
                let len: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= head + len {
                    return Some(String::from_utf8_lossy(&buf[head..head + len]).into_owned());
                }
            }
        }
    }

    /// A webhook on loopback answering each request with `status(n)` for the n-th request
    /// (from 0), or never answering when it returns `None`.
    async fn server(status: impl Fn(usize) -> Option<u16> + Send + Sync + 'static) -> (String, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/T0?x=1", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        let count = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(status);
        tokio::spawn({
            let seen = seen.clone();
            async move {
                loop {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let (seen, count, status) = (seen.clone(), count.clone(), status.clone());
                    tokio::spawn(async move {
                        let Some(body) = read_request(&mut s).await else { return };
                        seen.requests.lock().unwrap().push((Instant::now(), body));
                        match status(count.fetch_add(1, Ordering::SeqCst)) {
                            Some(code) => {
                                let resp =
                                    format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                                let _ = s.write_all(resp.as_bytes()).await;
                            }
                            // Hold the connection open and say nothing.
                            None => tokio::time::sleep(Duration::from_secs(3600)).await,
                        }
                    });
                }
            }
        });
        (url, seen)
    }

    async fn wait_for(wh: &Webhook, done: impl Fn(&WebhookStats) -> bool) -> WebhookStats {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = wh.stats();
            if done(&s) || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn alerts_for_the_states_that_alert_with_the_verdict_reason() {
        let record = r#"{"verdict": {"outcome": "failed", "reason": "p99 latency 2.1 s over 500 ms"}}"#;
        let a = Alert::for_run(&run(RunState::Failed, Some(record))).unwrap();
        assert_eq!(
            (a.kind, a.reason.as_str(), a.link.as_str()),
            (AlertKind::Failed, "p99 latency 2.1 s over 500 ms", "/v1/runs/r-42")
        );
        let v = a.payload();
        assert_eq!(v["text"], "siege: task-kill failed, run r-42: p99 latency 2.1 s over 500 ms (/v1/runs/r-42)");
        assert_eq!((v["scenario"].as_str(), v["run_id"].as_str()), (Some("task-kill"), Some("r-42")));
        assert_eq!((v["kind"].as_str(), v["state"].as_str()), (Some("failed"), Some("failed")));
        for (state, kind) in [
            (RunState::Aborted, AlertKind::Aborted),
            (RunState::Interrupted, AlertKind::Interrupted),
            (RunState::RevertFailed, AlertKind::RevertFailed),
        ] {
            let a = Alert::for_run(&run(state, None)).unwrap();
            assert_eq!(a.kind, kind);
            assert!(!a.reason.is_empty());
        }
        for state in [RunState::Passed, RunState::Running, RunState::Error, RunState::PreconditionFailed] {
            assert_eq!(Alert::for_run(&run(state, None)), None, "{state}");
        }
        let r = Regression {
            kind: super::super::trend::RegressionKind::SlowerRecovery,
            message: "task-kill recovered in 40.0 s, past its limit".into(),
            previous_run: None,
            normal_mttr_s: Some(20.0),
            limit_mttr_s: Some(25.0),
        };
        let a = Alert::regression(&run(RunState::Passed, None), &r);
        assert_eq!(
            a.text(),
            "siege: task-kill regressed (passed), run r-42: task-kill recovered in 40.0 s, past its limit (/v1/runs/r-42)"
        );
        assert_eq!(a.payload()["kind"], "regression");
    }

    #[test]
    fn bad_urls_are_refused() {
        for u in ["ftp://x/y", "hooks.example.com/x", "http:///x", ""] {
            assert!(matches!(Endpoint::parse(u), Err(WebhookError::Url(_))), "{u}");
        }
        let ep = Endpoint::parse("http://127.0.0.1:9/a/b?c").unwrap();
        assert_eq!(
            (ep.addr.as_str(), ep.path.as_str(), ep.authority.as_str()),
            ("127.0.0.1:9", "/a/b?c", "127.0.0.1:9")
        );
        assert_eq!(Endpoint::parse("http://[::1]/").unwrap().addr, "[::1]:80");
    }

    #[tokio::test]
    async fn a_failing_webhook_gets_one_delivery_after_retries_with_backoff() {
        // 503, 500, then 200.
        let (url, seen) = server(|n| match n {
            0 => Some(503),
            1 => Some(500),
            _ => Some(200),
        })
        .await;
        let opts = WebhookOptions { first_backoff: Duration::from_millis(50), ..WebhookOptions::default() };
        let (wh, task) = Webhook::start(&url, opts).unwrap();
        assert!(wh.send(Alert::for_run(&run(RunState::Failed, None)).unwrap()));
        let stats = wait_for(&wh, |s| s.delivered + s.failed > 0).await;
        assert_eq!((stats.delivered, stats.failed, stats.dropped, stats.retries), (1, 0, 0, 2), "{stats:?}");
        assert_eq!(stats.last_error.as_deref(), Some("answered 500 Internal Server Error"));
        let reqs = seen.requests.lock().unwrap().clone();
        assert_eq!(reqs.len(), 3, "one alert, three attempts");
        let body: serde_json::Value = serde_json::from_str(&reqs[2].1).unwrap();
        assert_eq!(body["run_id"], "r-42");
        assert!(body["text"].as_str().unwrap().starts_with("siege: task-kill failed"));
        // The waits double: 50 ms, then 100 ms.
        let (gap1, gap2) = (reqs[1].0 - reqs[0].0, reqs[2].0 - reqs[1].0);
        assert!(gap1 >= Duration::from_millis(50) && gap2 >= Duration::from_millis(100), "{gap1:?} {gap2:?}");
        drop(wh);
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the task ends with its queue").unwrap();
    }

    #[tokio::test]
    async fn at_exit_the_queued_alerts_are_sent_within_the_grace_and_no_longer() {
        let alert = Alert::for_run(&run(RunState::Interrupted, None)).unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        // Answered at once: every queued alert is delivered before the drain returns.
        let (url, seen) = server(|_| Some(200)).await;
        let (wh, task) = Webhook::start(&url, WebhookOptions::default()).unwrap();
        for _ in 0..3 {
            assert!(wh.send(alert.clone()));
        }
        let stats = wh.shared.clone();
        assert!(drain(Some(wh), vec![task], Duration::from_secs(10), &stop).await.0);
        assert_eq!(stats.stats.lock().unwrap().delivered, 3);
        assert_eq!(seen.requests.lock().unwrap().len(), 3);
        // Never answered: given up once the grace has passed.
        let (url, _) = server(|_| None).await;
        let (wh, task) = Webhook::start(&url, WebhookOptions::default()).unwrap();
        wh.send(alert.clone());
        wh.send(alert.clone());
        let t0 = Instant::now();
        let (done, _) = drain(Some(wh), vec![task], Duration::from_millis(300), &stop).await;
        assert!(!done);
        assert!((Duration::from_millis(300)..Duration::from_secs(2)).contains(&t0.elapsed()), "{:?}", t0.elapsed());
        // A hurry stops the wait at once.
        let (url, _) = server(|_| None).await;
        let (wh, task) = Webhook::start(&url, WebhookOptions::default()).unwrap();
        wh.send(alert);
        stop.cancel();
        let t0 = Instant::now();
        assert!(!drain(Some(wh), vec![task], Duration::from_secs(60), &stop).await.0);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried() {
        let (url, seen) = server(|_| Some(404)).await;
        let opts = WebhookOptions { first_backoff: Duration::from_millis(10), ..WebhookOptions::default() };
        let (wh, _task) = Webhook::start(&url, opts).unwrap();
        wh.send(Alert::for_run(&run(RunState::Aborted, None)).unwrap());
        let stats = wait_for(&wh, |s| s.failed > 0).await;
        assert_eq!((stats.delivered, stats.failed, stats.retries), (0, 1, 0));
        assert_eq!(seen.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_webhook_that_never_answers_blocks_nothing_and_drops_what_does_not_fit() {
        let (url, seen) = server(|_| None).await;
        let opts = WebhookOptions {
            attempts: 2,
            first_backoff: Duration::from_millis(10),
            timeout: Duration::from_millis(200),
            queue: 1,
        };
        let (wh, _task) = Webhook::start(&url, opts).unwrap();
        let alert = Alert::for_run(&run(RunState::Interrupted, None)).unwrap();
        let t0 = Instant::now();
        let queued = (0..10).filter(|_| wh.send(alert.clone())).count();
        assert!(t0.elapsed() < Duration::from_millis(50), "send waited {:?}", t0.elapsed());
        // One in the queue, perhaps one already taken by the task: the rest are dropped.
        assert!((1..=2).contains(&queued), "{queued}");
        assert_eq!(wh.stats().dropped, 10 - queued as u64);
        let stats = wait_for(&wh, |s| s.failed == queued as u64).await;
        assert_eq!((stats.delivered, stats.failed), (0, queued as u64), "{stats:?}");
        assert_eq!(stats.last_error.as_deref(), Some("no answer within 200ms"));
        assert_eq!(seen.requests.lock().unwrap().len(), 2 * queued, "two attempts per queued alert");
    }

    #[tokio::test]
    async fn an_unreachable_webhook_fails_after_its_attempts() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let opts = WebhookOptions { attempts: 3, first_backoff: Duration::from_millis(5), ..WebhookOptions::default() };
        let (wh, _task) = Webhook::start(&format!("http://127.0.0.1:{port}/x"), opts).unwrap();
        wh.send(Alert::for_run(&run(RunState::RevertFailed, None)).unwrap());
        let stats = wait_for(&wh, |s| s.failed > 0).await;
        assert_eq!((stats.failed, stats.retries), (1, 2));
        assert!(stats.last_error.unwrap().starts_with("cannot connect to 127.0.0.1:"));
    }
}
