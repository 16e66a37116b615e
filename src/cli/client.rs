//! `siege runs …` and `siege schedules …`: the client of a running `siege daemon`, over its
//! HTTP API (docs/daemon.md). The address comes from `--daemon` (default 127.0.0.1:7878), the
//! token from `--token` or the data directory's `token` file. Commands that wait for a run end
//! with the exit code `siege run` would have given.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::Failure;
use crate::exit::Exit;

/// Where the daemon is and how to prove who we are.
#[derive(Debug, Clone, Args)]
pub(super) struct Connect {
    /// The daemon's address: `HOST:PORT`, or its URL as the daemon prints it
    /// (`http://127.0.0.1:7878/`); a bare host means port 7878.
    #[arg(long = "daemon", value_name = "ADDR", default_value = "127.0.0.1:7878", global = true,
          value_parser = daemon_addr)]
    pub addr: String,
    /// The bearer token (default: the `token` file of the data directory).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// The daemon's data directory, where its `token` file is (default: under siege's state
    /// directory).
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
}

/// The daemon's port when an address names none.
const DEFAULT_PORT: u16 = 7878;

/// `--daemon`: `HOST:PORT`, `HOST`, or an `http://` URL with at most the path `/` (what the
/// daemon prints, pasted as is), as the `HOST:PORT` to connect to. Anything else is a usage
/// error that says what is wrong, rather than a URL built from it failing later.
fn daemon_addr(given: &str) -> Result<String, String> {
    let example = "e.g. 127.0.0.1:7878 or http://127.0.0.1:7878/";
    let s = given.trim();
    let (rest, url) = match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, true),
        Some((scheme, _)) => {
            return Err(format!("the daemon is reached over http, not `{scheme}://` ({example})"));
        }
        None => (s, false),
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if !(path.is_empty() || path == "/") {
        return Err(format!("`{path}` after the address: give the daemon's address only ({example})"));
    }
    if authority.contains('@') {
        return Err(format!("a daemon address takes no user name; the token goes in --token ({example})"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (ip, after) = v6.split_once(']').ok_or_else(|| format!("`{authority}`: `[` without its `]`"))?;
        ip.parse::<std::net::Ipv6Addr>().map_err(|_| format!("`{ip}` is not an IPv6 address"))?;
        match after {
            "" => (&authority[..ip.len() + 2], None),
            p => (&authority[..ip.len() + 2], Some(p.strip_prefix(':').ok_or_else(|| format!("`{after}` after `]`"))?)),
        }
    } else {
        match authority.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!("`{authority}`: write an IPv6 address in brackets, e.g. [::1]:7878"));
            }
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in `{given}` ({example})"));
    }
    if !host.starts_with('[') && !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(format!("`{host}` is not a host name or an IP address ({example})"));
    }
    let port = match port {
        // A URL without a port means http's own, 80, as anywhere else.
        None => {
            if url {
                80
            } else {
                DEFAULT_PORT
            }
        }
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` is not a port number (1 to 65535)"))?,
    };
    Ok(format!("{host}:{port}"))
}

#[derive(Debug, Subcommand)]
pub(super) enum RunsCommand {
    /// List runs, newest first.
    List {
        #[arg(long)]
        scenario: Option<String>,
        /// Only runs in this state (`passed`, `failed`…).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Print one run (JSON).
    Show { id: String },
    /// Start a run of a scenario (a name or a path the daemon can read).
    Start {
        scenario: String,
        /// Wait for the run to end; the exit code is its verdict.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a running run (every fault reverted).
    Stop { id: String },
    /// Print a run's events as they come (JSON lines); ends with the run, exit code its verdict.
    Events { id: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum SchedulesCommand {
    /// List the schedules (JSON).
    List,
    /// Pause a schedule: its due times are skipped until it is resumed.
    Pause { name: String },
    /// Resume a paused schedule.
    Resume { name: String },
    /// Start a schedule's run now.
    Trigger {
        name: String,
        /// Wait for the run to end; the exit code is its verdict.
        #[arg(long)]
        wait: bool,
    },
}

/// A daemon reached over HTTP.
pub(super) struct Client {
    addr: String,
    token: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// The exit code of a run that ended in `state`, as `siege run` gives it; `None` while running.
pub(super) fn state_exit(state: &str) -> Option<Exit> {
    Some(match state {
        "running" => return None,
        "passed" => Exit::Passed,
        "failed" => Exit::Failed,
        "aborted" | "interrupted" => Exit::Aborted,
        "precondition-failed" => Exit::Precondition,
        "revert-failed" => Exit::RevertFailed,
        _ => Exit::Internal,
    })
}

/// The error of an API answer that is not a success: its message, and the exit code it maps to.
fn api_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["error"]["message"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let code = v["error"]["code"].as_str().unwrap_or("");
    let exit = match status.as_u16() {
        409 if code == "target-busy" => Exit::Precondition,
        400 | 401 | 403 | 404 | 409 | 422 => Exit::Invalid,
        _ => Exit::Internal,
    };
    let mut text = format!("the daemon answered {status}: {message}");
    for d in v["error"]["diagnostics"].as_array().into_iter().flatten() {
        if let Some(t) = d["text"].as_str() {
            text.push('\n');
            text.push_str(t);
        }
    }
    Failure::new(exit, text)
}

impl Client {
    pub fn new(c: &Connect) -> Client {
        let token = c.token.clone().or_else(|| {
            let data = c.data.clone().unwrap_or_else(|| crate::util::state_dir().join("daemon"));
            crate::daemon::auth::read(&data.join(crate::daemon::auth::TOKEN_FILE))
        });
        Client { addr: c.addr.clone(), token }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One call; a success's JSON, or the API's error as a [`Failure`].
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let reply = crate::lab::web::request(method, &self.url(path), self.token.as_deref(), body.as_ref(), TIMEOUT)
            .await
            .map_err(|e| {
                Failure::new(
                    Exit::Internal,
                    format!("cannot reach the daemon at {}: {e} (is `siege daemon` running?)", self.addr),
                )
            })?;
        if !reply.status.is_success() {
            return Err(api_error(reply.status, &reply.body));
        }
        serde_json::from_slice(&reply.body).with_context(|| format!("the daemon's answer to {path} is not JSON"))
    }

    /// Polls a run until it ends; its exit code.
    pub async fn wait(&self, id: &str, every: Duration) -> anyhow::Result<Exit> {
        loop {
            let v = self.call(Method::GET, &format!("/v1/runs/{id}"), None).await?;
            if let Some(exit) = v["state"].as_str().and_then(state_exit) {
                eprintln!("run {id}: {}", v["state"].as_str().unwrap_or(""));
                return Ok(exit);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Streams a run's events (server-sent events), calling `each` with every event's data,
    /// until the stream ends ([`Streamed::Ended`]) or `each` fails to write it or the output is
    /// found closed while the stream is quiet ([`Streamed::OutputClosed`]): nobody reads any more.
    pub async fn events(
        &self,
        id: &str,
        mut each: impl FnMut(&str) -> std::io::Result<()>,
    ) -> anyhow::Result<Streamed> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("cannot reach the daemon at {} (is `siege daemon` running?)", self.addr))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = http::Request::get(format!("/v1/runs/{id}/events"))
            .header(http::header::HOST, self.addr.as_str())
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = sender.send_request(req.body(Empty::<Bytes>::new())?).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            return Err(api_error(status, &bytes));
        }
        let mut buf = Vec::new();
        // A quiet stream writes nothing that could fail: look at the output now and then.
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = check.tick() => {
                    if super::output_closed() {
                        return Ok(Streamed::OutputClosed);
                    }
                    continue;
                }
            };
            let Some(frame) = frame else { return Ok(Streamed::Ended) };
            let Ok(data) = frame?.into_data() else { continue };
            buf.extend_from_slice(&data);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                if let Some(d) = line.trim_end_matches(['\r', '\n']).strip_prefix("data:")
                    && each(d.strip_prefix(' ').unwrap_or(d)).is_err()
                {
                    return Ok(Streamed::OutputClosed);
                }
            }
        }
    }
}

/// How an event stream ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Streamed {
    /// The daemon closed it: the run ended.
    Ended,
    /// Our own output was closed (`siege runs events ID | head`): there is no one to tell.
    OutputClosed,
}

fn print_json(v: &Value) {
    let _ = writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The query string of `runs list`.
fn list_path(scenario: Option<&str>, state: Option<&str>, limit: usize) -> String {
    let mut q = vec![format!("limit={limit}")];
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    if let Some(s) = scenario {
        q.push(format!("scenario={}", enc(s)));
    }
    if let Some(s) = state {
        q.push(format!("state={}", enc(s)));
    }
    format!("/v1/runs?{}", q.join("&"))
}

pub(super) fn cmd_runs(c: Connect, cmd: RunsCommand) -> anyhow::Result<Exit> {
    let client = Client::new(&c);
    super::runtime()?.block_on(async move {
        match cmd {
            RunsCommand::List { scenario, state, limit } => {
                let v =
                    client.call(Method::GET, &list_path(scenario.as_deref(), state.as_deref(), limit), None).await?;
                for r in v["runs"].as_array().into_iter().flatten() {
                    outln!(
                        "{}  {:<20}  {:<19}  {}  mttr {}",
                        r["id"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or(""),
                        r["scenario"].as_str().unwrap_or(""),
                        r["started_at"].as_str().unwrap_or(""),
                        r["mttr_s"].as_f64().map_or("-".to_string(), |m| format!("{m:.1} s")),
                    );
                }
                Ok(Exit::Passed)
            }
            RunsCommand::Show { id } => {
                print_json(&client.call(Method::GET, &format!("/v1/runs/{id}"), None).await?);
                Ok(Exit::Passed)
            }
            RunsCommand::Start { scenario, wait } => {
                let v = client.call(Method::POST, "/v1/runs", Some(json!({ "scenario": scenario }))).await?;
                started(&client, &v, wait).await
            }
            RunsCommand::Stop { id } => {
                client.call(Method::POST, &format!("/v1/runs/{id}/stop"), None).await?;
                outln!("{id}: stopping");
                Ok(Exit::Passed)
            }
            RunsCommand::Events { id } => {
                let print = |d: &str| {
                    let mut o = std::io::stdout().lock();
                    writeln!(o, "{d}").and_then(|()| o.flush())
                };
                if client.events(&id, print).await? == Streamed::OutputClosed {
                    // Like any tool whose reader went away: stop quietly, nothing went wrong.
                    return Ok(Exit::Passed);
                }
                // The stream ends with the run: its exit code.
                let v = client.call(Method::GET, &format!("/v1/runs/{id}"), None).await?;
                match v["state"].as_str().and_then(state_exit) {
                    Some(exit) => Ok(exit),
                    None => {
                        Err(Failure::new(Exit::Internal, format!("the event stream of run {id} ended while it runs")))
                    }
                }
            }
        }
    })
}

async fn started(client: &Client, v: &Value, wait: bool) -> anyhow::Result<Exit> {
    let id = v["id"].as_str().context("the daemon's answer has no run id")?.to_string();
    outln!("{id}");
    if wait { client.wait(&id, Duration::from_secs(1)).await } else { Ok(Exit::Passed) }
}

pub(super) fn cmd_schedules(c: Connect, cmd: SchedulesCommand) -> anyhow::Result<Exit> {
    let client = Client::new(&c);
    super::runtime()?.block_on(async move {
        match cmd {
            SchedulesCommand::List => {
                print_json(&client.call(Method::GET, "/v1/schedules", None).await?);
                Ok(Exit::Passed)
            }
            SchedulesCommand::Pause { name } => {
                client.call(Method::POST, &format!("/v1/schedules/{name}/pause"), None).await?;
                outln!("{name}: paused");
                Ok(Exit::Passed)
            }
            SchedulesCommand::Resume { name } => {
                client.call(Method::POST, &format!("/v1/schedules/{name}/resume"), None).await?;
                outln!("{name}: resumed");
                Ok(Exit::Passed)
            }
            SchedulesCommand::Trigger { name, wait } => {
                let v = client.call(Method::POST, &format!("/v1/schedules/{name}/trigger"), None).await?;
                started(&client, &v, wait).await
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A request as the fake daemon saw it: the head (request line and headers) and the body.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A fake daemon answering every request with the next of `answers` (status, content type,
    /// body), recording what it was sent.
    async fn fake(answers: Vec<(u16, &'static str, String)>) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen: Seen = Arc::default();
        let s2 = seen.clone();
        tokio::spawn(async move {
            for (status, kind, body) in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, req_body) = loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0usize);
                        if rest.len() >= len || n == 0 {
                            break (head.to_string(), rest.to_string());
                        }
                    }
                };
                s2.lock().unwrap().push((head, req_body));
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        (addr, seen)
    }

    fn client(addr: &str, token: Option<&str>) -> Client {
        Client { addr: addr.to_string(), token: token.map(String::from) }
    }

    #[tokio::test]
    async fn start_posts_the_scenario_with_the_token_and_wait_polls_to_the_verdict() {
        let (addr, seen) = fake(vec![
            (202, "application/json", r#"{"id": "r-1"}"#.into()),
            (200, "application/json", r#"{"id": "r-1", "state": "running"}"#.into()),
            (200, "application/json", r#"{"id": "r-1", "state": "aborted"}"#.into()),
        ])
        .await;
        let c = client(&addr, Some("s3cret"));
        let v = c.call(Method::POST, "/v1/runs", Some(json!({"scenario": "task-kill"}))).await.unwrap();
        assert_eq!(v["id"], "r-1");
        assert_eq!(c.wait("r-1", Duration::from_millis(10)).await.unwrap(), Exit::Aborted);
        let seen = seen.lock().unwrap();
        assert!(seen[0].0.starts_with("POST /v1/runs HTTP/1.1\r\n"), "{}", seen[0].0);
        assert!(seen[0].0.to_ascii_lowercase().contains("authorization: bearer s3cret"));
        assert_eq!(serde_json::from_str::<Value>(&seen[0].1).unwrap(), json!({"scenario": "task-kill"}));
        assert!(seen[1].0.starts_with("GET /v1/runs/r-1 HTTP/1.1\r\n"));
        assert_eq!(seen.len(), 3);
    }

    #[tokio::test]
    async fn api_errors_carry_the_message_and_the_exit_code() {
        let (addr, _) = fake(vec![
            (409, "application/json", r#"{"error": {"code": "target-busy", "message": "target lab:api is busy"}}"#.into()),
            (
                422,
                "application/json",
                r#"{"error": {"code": "invalid-scenario", "message": "not valid", "diagnostics": [{"text": "x.yaml:1:1: name: missing"}]}}"#.into(),
            ),
            (401, "application/json", r#"{"error": {"code": "unauthorized", "message": "needs a token"}}"#.into()),
        ])
        .await;
        let c = client(&addr, None);
        let exit_of = |e: anyhow::Error| {
            let f = e.downcast::<Failure>().unwrap();
            (f.exit, f.message)
        };
        let (exit, msg) = exit_of(c.call(Method::POST, "/v1/runs", None).await.unwrap_err());
        assert_eq!(
            (exit, msg.as_str()),
            (Exit::Precondition, "the daemon answered 409 Conflict: target lab:api is busy")
        );
        let (exit, msg) = exit_of(c.call(Method::POST, "/v1/runs", None).await.unwrap_err());
        assert_eq!(exit, Exit::Invalid);
        assert!(msg.ends_with("not valid\nx.yaml:1:1: name: missing"), "{msg}");
        let (exit, _) = exit_of(c.call(Method::POST, "/v1/schedules/n/pause", None).await.unwrap_err());
        assert_eq!(exit, Exit::Invalid);
        // Nobody listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (exit, msg) =
            exit_of(client(&format!("127.0.0.1:{port}"), None).call(Method::GET, "/v1/runs", None).await.unwrap_err());
        assert_eq!(exit, Exit::Internal);
        assert!(msg.contains("is `siege daemon` running?"), "{msg}");
    }

    #[tokio::test]
    async fn events_are_read_from_the_event_stream() {
        let sse =
            "id: 0\nevent: started\ndata: {\"seq\":0}\n\n: keep-alive\n\nid: 1\nevent: verdict\ndata: {\"seq\":1}\n\n";
        let (addr, seen) = fake(vec![(200, "text/event-stream", sse.into())]).await;
        let mut got = Vec::new();
        let streamed = client(&addr, None)
            .events("r-1", |d| {
                got.push(d.to_string());
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(streamed, Streamed::Ended);
        assert_eq!(got, [r#"{"seq":0}"#, r#"{"seq":1}"#]);
        assert!(seen.lock().unwrap()[0].0.starts_with("GET /v1/runs/r-1/events HTTP/1.1\r\n"));
    }

    #[test]
    fn daemon_addresses_are_taken_in_url_form_and_bad_ones_say_why() {
        for (given, addr) in [
            ("127.0.0.1:7878", "127.0.0.1:7878"),
            ("http://127.0.0.1:7878/", "127.0.0.1:7878"),
            ("http://127.0.0.1:7878", "127.0.0.1:7878"),
            ("HTTP://localhost:9000/", "localhost:9000"),
            ("localhost", "localhost:7878"),
            ("http://localhost/", "localhost:80"),
            ("[::1]:7878", "[::1]:7878"),
            ("http://[::1]/", "[::1]:80"),
            (" 127.0.0.1:7878 ", "127.0.0.1:7878"),
        ] {
            assert_eq!(daemon_addr(given).as_deref(), Ok(addr), "{given}");
        }
        for (given, why) in [
            ("https://127.0.0.1:7878/", "over http, not `https://`"),
            ("http://127.0.0.1:7878/v1/runs", "`/v1/runs` after the address"),
            ("127.0.0.1:port", "`port` is not a port number"),
            ("127.0.0.1:0", "`0` is not a port number"),
            ("127.0.0.1:99999", "not a port number"),
            ("http://", "no host"),
            (":7878", "no host"),
            ("::1:7878", "in brackets"),
            ("[::1", "without its `]`"),
            ("[nope]:1", "not an IPv6 address"),
            ("http://u:p@127.0.0.1:7878/", "no user name"),
            ("127.0.0.1 7878", "not a host name"),
        ] {
            let e = daemon_addr(given).unwrap_err();
            assert!(e.contains(why), "{given}: {e}");
        }
    }

    #[test]
    fn states_map_to_the_exit_codes_of_siege_run_and_queries_are_encoded() {
        assert_eq!(state_exit("running"), None);
        for (s, e) in [
            ("passed", 0),
            ("failed", 1),
            ("aborted", 2),
            ("interrupted", 2),
            ("precondition-failed", 4),
            ("revert-failed", 5),
            ("error", 70),
        ] {
            assert_eq!(state_exit(s).map(Exit::code), Some(e), "{s}");
        }
        assert_eq!(list_path(Some("a b&c"), Some("failed"), 20), "/v1/runs?limit=20&scenario=a%20b%26c&state=failed");
        assert_eq!(list_path(None, None, 50), "/v1/runs?limit=50");
    }
}
