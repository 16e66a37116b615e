//! Integration tests: load. Real sockets on loopback against small in-test servers: a hyper
//! server (status codes by path, an optional one-time stall), a server that resets every
//! connection and one that never answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use siege::load::{LoadPlan, LoadReport, Mode, Window, run};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::common;

/// A hyper server on its own runtime. `GET /status/NNN` answers NNN; anything else 200. When
/// `stall_at` is set, that request (counted from 1) is held for `stall` before it is answered.
struct TestServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    _rt: Background,
}

/// A server's runtime, shut down without blocking when dropped (tests drop it inside async code).
struct Background(Option<tokio::runtime::Runtime>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl TestServer {
    fn start(stall_at: Option<u64>, stall: Duration) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (std_listener, addr) = bind();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            if Some(n) == stall_at {
                                tokio::time::sleep(stall).await;
                            }
                            let status =
                                req.uri().path().strip_prefix("/status/").and_then(|s| s.parse().ok()).unwrap_or(200);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"hello\n")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer { addr, requests, _rt: Background(Some(rt)) }
    }

    fn url(&self, path: &str) -> http::Uri {
        format!("http://{}{path}", self.addr).parse().unwrap()
    }
}

/// A listener on a free loopback port, ready to hand to a runtime (tests may run inside one, so
/// nothing here may block on a runtime).
fn bind() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A raw TCP server on its own runtime: each connection is handed to `handle`.
fn raw_server<F, Fut>(handle: F) -> (SocketAddr, Background)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (std_listener, addr) = bind();
    rt.spawn(async move {
        let listener = TcpListener::from_std(std_listener).unwrap();
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    (addr, Background(Some(rt)))
}

fn open(url: http::Uri, rate: f64, secs: f64, max_connections: usize, timeout: Duration) -> LoadPlan {
    LoadPlan {
        url,
        mode: Mode::Open { rate, stages: Vec::new(), max_connections },
        duration: Duration::from_secs_f64(secs),
        timeout,
    }
}

async fn drive(plan: LoadPlan) -> LoadReport {
    run(plan, CancellationToken::new(), None).await.unwrap()
}

#[tokio::test]
async fn heavy_open_model_achieves_the_rate() {
    let server = TestServer::start(None, Duration::ZERO);
    let r = drive(open(server.url("/"), 2000.0, 3.0, 256, Duration::from_secs(2))).await;
    assert_eq!(r.scheduled, 6000, "{r:?}");
    // Every scheduled request is accounted for: sent and answered, or (on a starved machine)
    // given up as missed, never silently dropped.
    assert_eq!(r.requests + r.missed, 6000, "{r:?}");
    assert!(r.missed <= 60 && r.errors.total() == 0, "{r:?}");
    assert!((r.rps - 2000.0).abs() < 40.0, "rps {}", r.rps);
    assert_eq!(r.per_second.iter().map(|w| w.second).collect::<Vec<_>>(), vec![0, 1, 2]);
    for w in &r.per_second {
        assert_eq!(w.scheduled, 2000, "{w:?}");
        assert!(w.requests > 1900 && w.latency_ms.p99 > 0.0, "{w:?}");
    }
    // Keep-alive: connections are reused, not opened per request.
    assert!(r.connections < 100, "{} connections for 6000 requests", r.connections);
    assert_eq!(server.requests.load(Ordering::SeqCst), r.requests);
}

/// A one-second stall of the server during a fixed-rate run: with one connection, every request
/// due during the stall waits behind it. Latency from the scheduled send time shows the stall in
/// p99; latency from the actual send time (what a tool without coordinated-omission correction
/// reports) sees a single slow request and misses it.
#[tokio::test]
async fn heavy_stall_shows_in_corrected_p99_but_not_in_uncorrected() {
    let server = TestServer::start(Some(300), Duration::from_secs(1));
    let r = drive(open(server.url("/"), 200.0, 5.0, 1, Duration::from_secs(3))).await;
    assert_eq!((r.errors.total(), r.missed), (0, 0), "{r:?}");
    assert_eq!(r.requests, 1000);
    assert!(r.latency_ms.max >= 1000.0, "corrected max {:?}", r.latency_ms);
    assert!(r.latency_ms.p99 >= 900.0, "corrected p99 misses the stall: {:?}", r.latency_ms);
    assert!(r.latency_ms.p90 >= 400.0, "the requests behind the stall count: {:?}", r.latency_ms);
    assert!(r.uncorrected_latency_ms.max >= 1000.0, "{:?}", r.uncorrected_latency_ms);
    assert!(r.uncorrected_latency_ms.p99 < 100.0, "uncorrected p99 {:?}", r.uncorrected_latency_ms);
    // The window in which the stalled requests completed shows it too.
    let worst = r.per_second.iter().map(|w| w.latency_ms.p99).fold(0.0, f64::max);
    assert!(worst >= 900.0, "{:?}", r.per_second);
}

#[tokio::test]
async fn heavy_closed_model_keeps_every_connection_busy() {
    let server = TestServer::start(None, Duration::ZERO);
    let plan = LoadPlan {
        url: server.url("/"),
        mode: Mode::Closed { connections: 4 },
        duration: Duration::from_secs(2),
        timeout: Duration::from_secs(2),
    };
    let r = drive(plan).await;
    assert_eq!(r.connections, 4);
    assert_eq!((r.errors.total(), r.missed, r.scheduled), (0, 0, 0), "{r:?}");
    assert!(r.requests > 1000, "{} requests in 2s", r.requests);
    assert_eq!(r.per_second.len(), 2);
    assert_eq!(r.requests, r.per_second.iter().map(|w| w.requests).sum::<u64>());
    assert_eq!(server.requests.load(Ordering::SeqCst), r.requests);
}

#[tokio::test]
async fn status_codes_are_classified_with_502_and_503_apart() {
    let server = TestServer::start(None, Duration::ZERO);
    for (path, pick) in [
        ("/status/503", (|r: &LoadReport| r.errors.status_503) as fn(&LoadReport) -> u64),
        ("/status/502", |r| r.errors.status_502),
        ("/status/504", |r| r.errors.status_504),
        ("/status/500", |r| r.errors.status_5xx),
        ("/status/404", |r| r.errors.status_4xx),
    ] {
        let r = drive(open(server.url(path), 50.0, 1.0, 8, Duration::from_secs(1))).await;
        assert_eq!(r.requests, 50, "{path}: {r:?}");
        assert_eq!(pick(&r), 50, "{path}: {:?}", r.errors);
        assert_eq!(r.errors.total(), 50, "{path}: {:?}", r.errors);
    }
    let ok = drive(open(server.url("/"), 50.0, 1.0, 8, Duration::from_secs(1))).await;
    assert_eq!((ok.requests, ok.errors.total()), (50, 0));
}

#[tokio::test]
async fn refused_connections_are_connect_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // The listener is closed again: nothing listens on the port.
    let r =
        drive(open(format!("http://127.0.0.1:{port}/").parse().unwrap(), 50.0, 1.0, 8, Duration::from_secs(1))).await;
    assert_eq!(r.requests, 50);
    assert_eq!(r.errors.connect, 50, "{:?}", r.errors);
    assert_eq!(r.per_second[0].error_rate(), 1.0);
}

#[tokio::test]
async fn unanswered_requests_are_timeouts() {
    let (addr, _rt) = raw_server(|mut s| async move {
        // Read the request and never answer.
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let r = drive(open(format!("http://{addr}/").parse().unwrap(), 20.0, 1.0, 64, Duration::from_millis(200))).await;
    assert_eq!(r.errors.timeout, r.requests, "{r:?}");
    assert!(r.requests >= 15, "{r:?}");
    assert!(r.latency_ms.p50 >= 200.0, "a timeout counts its wait: {:?}", r.latency_ms);
}

#[tokio::test]
async fn reset_connections_are_resets() {
    let (addr, _rt) = raw_server(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        // Zero linger: closing sends RST instead of FIN.
        let _ = s.set_zero_linger();
        drop(s);
    });
    let r = drive(open(format!("http://{addr}/").parse().unwrap(), 50.0, 1.0, 8, Duration::from_secs(1))).await;
    assert_eq!(r.requests, 50);
    assert_eq!(r.errors.reset, 50, "{:?}", r.errors);
}

#[tokio::test]
async fn windows_arrive_while_the_load_runs_and_cancel_stops_it() {
    let server = TestServer::start(None, Duration::ZERO);
    let (tx, mut rx) = mpsc::unbounded_channel::<Window>();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let task =
        tokio::spawn(run(open(server.url("/"), 100.0, 30.0, 16, Duration::from_secs(1)), cancel.clone(), Some(tx)));
    let first = rx.recv().await.unwrap();
    assert_eq!(first.second, 0);
    assert_eq!(first.scheduled, 100);
    assert!(started.elapsed() < Duration::from_millis(1500), "window 0 came after {:?}", started.elapsed());
    let second = rx.recv().await.unwrap();
    assert_eq!(second.second, 1);
    assert!(!task.is_finished());
    let cancelled = Instant::now();
    cancel.cancel();
    let r = task.await.unwrap().unwrap();
    assert!(cancelled.elapsed() < Duration::from_secs(1), "cancel took {:?}", cancelled.elapsed());
    assert!(r.duration_s < 5.0 && r.per_second.len() >= 2, "{r:?}");
}

#[test]
fn siege_load_json_prints_one_object() {
    let server = TestServer::start(None, Duration::ZERO);
    let out = common::siege()
        .args(["load", &server.url("/").to_string(), "--rate", "100/s", "--duration", "2s", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"], 200);
    assert!(v["duration_s"].as_f64().unwrap() >= 1.9);
    assert!((v["rps"].as_f64().unwrap() - 100.0).abs() < 5.0, "{v}");
    for class in ["connect", "reset", "timeout", "status_502", "status_503", "status_5xx"] {
        assert_eq!(v["errors"][class], 0, "{class}: {v}");
    }
    for p in ["p50", "p90", "p95", "p99", "max"] {
        assert!(v["latency_ms"][p].as_f64().unwrap() > 0.0, "{p}: {v}");
    }
    let windows = v["per_second"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[1]["second"], 1);
    assert!(windows[0]["latency_ms"]["p99"].as_f64().is_some());
}

#[test]
fn siege_load_prints_a_human_summary() {
    let server = TestServer::start(None, Duration::ZERO);
    let out = common::siege().args(["load", &server.url("/").to_string(), "-c", "2", "-d", "1s"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("closed model, 2 connections"), "{text}");
    assert!(text.contains("req/s") && text.contains("p99") && text.contains("errors     none"), "{text}");
    // Not a terminal: no progress line on stderr.
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_arguments_exit_3_with_a_clear_message() {
    for (args, expect) in [
        (&["--rate", "100"][..], "--rate: invalid rate `100`"),
        (&["--rate", "0/s"], "--rate: must be more than zero"),
        (&["--rate", "10/s", "--duration", "10"], "--duration"),
        (&["--concurrency", "0"], "--concurrency: must be at least 1"),
        (&["--rate", "10/s", "--timeout", "0s"], "--timeout"),
        (&[], "--rate"),
        (&["--rate", "10/s", "-c", "3"], "cannot be used with"),
    ] {
        let out = common::siege().args(["load", "http://127.0.0.1:9/"]).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let out = common::siege().args(["load", "https://127.0.0.1:9/", "--rate", "1/s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https is not supported"));
}

#[tokio::test]
async fn stages_change_the_scheduled_rate_per_window() {
    use siege::scenario::{Rate, Stage};
    let server = TestServer::start(None, Duration::ZERO);
    let spike = Stage {
        at: Duration::from_secs(1),
        rate: Rate { per_second: 300.0 },
        duration: Duration::from_secs(1),
        ramp: Duration::ZERO,
    };
    let plan = LoadPlan {
        url: server.url("/"),
        mode: Mode::Open { rate: 100.0, stages: vec![spike], max_connections: 64 },
        duration: Duration::from_secs(3),
        timeout: Duration::from_secs(1),
    };
    let r = drive(plan).await;
    assert_eq!(r.per_second.iter().map(|w| w.scheduled).collect::<Vec<_>>(), vec![100, 300, 100], "{r:?}");
    assert_eq!(r.requests, 500);
}

/// On a terminal, a progress line is rewritten once a second (run under `script`, which gives
/// the command a pseudo-terminal).
#[test]
fn siege_load_shows_progress_on_a_terminal() {
    let server = TestServer::start(None, Duration::ZERO);
    let cmd = format!("{} load {} --rate 50/s -d 2s", common::siege_bin().display(), server.url("/"));
    let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[   1s]") && text.contains("[   2s]"), "{text:?}");
    assert!(text.contains("\r\x1b[2K"), "the line is rewritten in place: {text:?}");
}

#[test]
fn ctrl_c_stops_siege_load_and_prints_what_was_measured() {
    let server = TestServer::start(None, Duration::ZERO);
    let child = common::siege()
        .args(["load", &server.url("/").to_string(), "--rate", "100/s", "-d", "60s", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for(Duration::from_secs(10), || (server.requests.load(Ordering::SeqCst) > 10).then_some(()))
        .expect("the load started");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["duration_s"].as_f64().unwrap() < 30.0, "{v}");
    assert!(v["requests"].as_u64().unwrap() > 10, "{v}");
}
