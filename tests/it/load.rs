//! Integration tests: load. Real sockets on loopback against small in-test servers: a hyper
//! server (status codes by path, an optional one-time stall; plain or TLS with the test-only
//! certificate of tests/fixtures/tls), a server that resets every connection and one that never
//! answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// A hyper server on its own runtime. `GET /status/NNN` answers NNN, `/half` 503 to every
/// other request; anything else 200. When
/// `stall_at` is set, that request (counted from 1) is held for `stall` before it is answered.
/// Over TLS ([`TestServer::start_tls`]) it records the SNI name and ALPN protocol of every
/// handshake.
struct TestServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
    scheme: &'static str,
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

/// `(SNI name, ALPN protocol)` of a TLS handshake the server accepted.
type Handshake = (Option<String>, Option<String>);

/// The test-only certificate for `localhost` (tests/fixtures/tls), issued by `ca.pem` there;
/// HTTP/2 and HTTP/1.1 offered.
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&[b"h2", b"http/1.1"])))
}

/// A server configuration with that certificate, offering `alpn`.
pub(crate) fn tls_config(alpn: &[&[u8]]) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> =
        CertificateDer::pem_slice_iter(include_bytes!("../fixtures/tls/server.pem")).map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../fixtures/tls/server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// The self-signed certificate for `localhost` (tests/fixtures/tls/self-signed.pem, a CA
/// certificate as `openssl req -x509` makes it), offering http/1.1.
fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> =
        CertificateDer::pem_slice_iter(include_bytes!("../fixtures/tls/self-signed.pem")).map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../fixtures/tls/self-signed.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

impl TestServer {
    fn start(stall_at: Option<u64>, stall: Duration) -> TestServer {
        TestServer::start_with(stall_at, stall, None)
    }

    fn start_tls() -> TestServer {
        TestServer::start_with(None, Duration::ZERO, Some(tls_acceptor()))
    }

    fn start_with(stall_at: Option<u64>, stall: Duration, tls: Option<tokio_rustls::TlsAcceptor>) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (std_listener, addr) = bind();
        let requests = Arc::new(AtomicU64::new(0));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let counter = requests.clone();
        let seen = handshakes.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                let seen = seen.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            if Some(n) == stall_at {
                                tokio::time::sleep(stall).await;
                            }
                            let path = req.uri().path();
                            let status = match path.strip_prefix("/status/") {
                                Some(s) => s.parse().unwrap_or(200),
                                // Every other request fails.
                                None if path == "/half" && n.is_multiple_of(2) => 503,
                                None => 200,
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"hello\n")))
                                    .unwrap(),
                            )
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await,
                        Some(tls) => {
                            // A rejected handshake (the client refused the certificate) ends here.
                            let Ok(stream) = tls.accept(stream).await else { return };
                            let conn = stream.get_ref().1;
                            let alpn = conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
                            seen.lock().unwrap().push((conn.server_name().map(str::to_string), alpn));
                            http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await
                        }
                    };
                });
            }
        });
        TestServer { addr, requests, handshakes, scheme, _rt: Background(Some(rt)) }
    }

    fn url(&self, path: &str) -> http::Uri {
        format!("{}://{}{path}", self.scheme, self.addr).parse().unwrap()
    }

    /// The URL by the name the certificate is for.
    fn localhost_url(&self, path: &str) -> String {
        format!("{}://localhost:{}{path}", self.scheme, self.addr.port())
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
        insecure_tls: false,
        notice: Default::default(),
    }
}

/// `connections` connections back to back for `secs` seconds, timeout 2 s.
fn closed(url: http::Uri, connections: usize, secs: u64) -> LoadPlan {
    LoadPlan {
        url,
        mode: Mode::Closed { connections },
        duration: Duration::from_secs(secs),
        timeout: Duration::from_secs(2),
        insecure_tls: false,
        notice: Default::default(),
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
    let r = drive(closed(server.url("/"), 4, 2)).await;
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
    // Bound, not listening, and held for the test: connections are refused.
    let closed = common::closed_port();
    let port = closed.port;
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
    let out = common::siege().args(["load", "ftp://127.0.0.1:9/", "--rate", "1/s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected http://"));
    for bad in ["5", "101%", "-1%"] {
        let arg = format!("--max-error-rate={bad}");
        let out = common::siege().args(["load", "http://127.0.0.1:9/", "-c", "1", &arg]).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--max-error-rate"), "{bad}");
    }
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
        insecure_tls: false,
        notice: Default::default(),
    };
    let r = drive(plan).await;
    assert_eq!(r.per_second.iter().map(|w| w.scheduled).collect::<Vec<_>>(), vec![100, 300, 100], "{r:?}");
    assert_eq!(r.requests, 500);
}

/// A rate set while the load runs takes effect at once, even while the workers wait for a far
/// send time of a slow base rate, and ends when its duration does.
#[tokio::test]
async fn a_rate_set_while_running_takes_effect_at_once_and_ends_on_time() {
    use siege::load::RateControl;
    use siege::scenario::{Rate, Stage};
    let server = TestServer::start(None, Duration::ZERO);
    let control = RateControl::default();
    let plan = open(server.url("/"), 0.5, 4.0, 64, Duration::from_secs(1));
    let started = Instant::now();
    let load = tokio::spawn(siege::load::run_controlled(plan, CancellationToken::new(), None, Some(control.clone())));
    // Time passes on purpose: the rate is set 1.2 s in, while the workers wait on the slow base
    // rate's next send time.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let at = started.elapsed();
    control.set(Stage {
        at,
        rate: Rate { per_second: 100.0 },
        duration: Duration::from_millis(1500),
        ramp: Duration::ZERO,
    });
    let r = load.await.unwrap().unwrap();
    let scheduled: Vec<u64> = r.per_second.iter().map(|w| w.scheduled).collect();
    // About 80 in second 1 (from 1.2s), 70 in second 2 (to 2.7s), then the base rate again.
    assert!(scheduled[1] >= 60 && scheduled[2] >= 55, "{scheduled:?}");
    assert!(scheduled[3] <= 1, "{scheduled:?}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
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

fn tls_fixture(name: &str) -> String {
    common::repo_root().join("tests/fixtures/tls").join(name).display().to_string()
}

/// `siege load` on `url` for one second at 20/s, trusting only the certificates in `ca` (as
/// `SSL_CERT_FILE`); returns the exit code, the JSON report and stderr.
fn siege_load_trusting(ca: &str, url: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = common::siege()
        .env("SSL_CERT_FILE", tls_fixture(ca))
        .env_remove("SSL_CERT_DIR")
        .args(["load", url, "--rate", "20/s", "-d", "1s", "--timeout", "1s", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (out.status.code(), v, stderr)
}

/// An https:// URL is loaded over TLS: the certificate must chain to a trusted root and name the
/// host (SNI is the URL's host, ALPN http/1.1); without that every request is a `tls` error that
/// says why, and `--insecure` accepts the certificate anyway.
#[test]
fn https_verifies_the_certificate_and_sends_sni() {
    let server = TestServer::start_tls();
    let url = server.localhost_url("/");

    let (code, v, err) = siege_load_trusting("ca.pem", &url, &[]);
    assert_eq!(code, Some(0), "{err} {v}");
    assert_eq!((v["requests"].as_u64(), v["errors"]["tls"].as_u64()), (Some(20), Some(0)), "{v}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 20);
    let handshakes = server.handshakes.lock().unwrap().clone();
    assert!(!handshakes.is_empty());
    for (sni, alpn) in &handshakes {
        assert_eq!((sni.as_deref(), alpn.as_deref()), (Some("localhost"), Some("http/1.1")));
    }
    // Keep-alive over TLS: far fewer handshakes than requests.
    assert!(handshakes.len() < 20, "{} handshakes", handshakes.len());

    // An issuer nobody trusts: every request fails with a certificate error, exit 1.
    let (code, v, err) = siege_load_trusting("other-ca.pem", &url, &[]);
    assert_eq!(code, Some(1), "{err} {v}");
    assert_eq!(v["errors"]["tls"], v["requests"], "{v}");
    assert!(v["requests"].as_u64().unwrap() >= 15, "{v}");
    assert!(v["tls_error"].as_str().unwrap().contains("certificate"), "{v}");
    assert!(err.contains("every request failed") && err.contains("tls"), "{err}");

    // A trusted certificate for another name (it is for localhost, not 127.0.0.1).
    let (code, v, _) = siege_load_trusting("ca.pem", &server.url("/").to_string(), &[]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["errors"]["tls"], v["requests"], "{v}");
    assert!(v["tls_error"].as_str().unwrap().contains("not valid for name"), "{v}");

    // --insecure accepts it.
    let before = server.requests.load(Ordering::SeqCst);
    let (code, v, err) = siege_load_trusting("other-ca.pem", &url, &["--insecure"]);
    assert_eq!(code, Some(0), "{err} {v}");
    assert_eq!((v["requests"].as_u64(), v["errors"]["tls"].as_u64()), (Some(20), Some(0)), "{v}");
    assert!(v.get("tls_error").is_none(), "{v}");
    assert_eq!(server.requests.load(Ordering::SeqCst) - before, 20);
}

/// The load driver itself, in process: `insecure_tls` accepts the test certificate for an IP
/// address (no SNI is sent for one), and the closed model keeps its TLS connections alive.
#[tokio::test]
async fn insecure_tls_plan_loads_a_self_signed_endpoint() {
    let server = TestServer::start_tls();
    let r = drive(LoadPlan { insecure_tls: true, ..closed(server.url("/status/201"), 2, 1) }).await;
    assert_eq!((r.errors.total(), r.connections), (0, 2), "{r:?}");
    assert!(r.requests > 50, "{r:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), r.requests);
    let handshakes = server.handshakes.lock().unwrap().clone();
    assert_eq!(handshakes, vec![(None, Some("http/1.1".to_string())); 2]);
}

/// A plain-HTTP server behind an https:// URL: the handshake fails as a `tls` error.
#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let server = TestServer::start(None, Duration::ZERO);
    let url = format!("https://{}/", server.addr).parse().unwrap();
    let r = drive(LoadPlan { insecure_tls: true, ..open(url, 20.0, 1.0, 4, Duration::from_secs(1)) }).await;
    assert_eq!(r.errors.tls, r.requests, "{r:?}");
    assert!(r.requests >= 15 && r.tls_error.is_some(), "{r:?}");
}

/// Exit 1 when every request failed (nothing listens), with the report still printed; with
/// `--max-error-rate`, exit 1 above that share of errors and 0 within it.
#[test]
fn siege_load_exit_code_says_whether_requests_failed() {
    let help = common::siege().args(["load", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("1   every request failed, or the error rate was above --max-error-rate"), "{help}");
    let closed = common::closed_port();
    let out = common::siege()
        .args(["load", &format!("http://127.0.0.1:{}/", closed.port), "--rate", "20/s", "-d", "1s", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("every request failed (20 of 20: connect 20)"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"]["connect"], 20);

    let server = TestServer::start(None, Duration::ZERO);
    let run = |path: &str, max: &str| {
        common::siege()
            .args(["load", &server.url(path).to_string(), "--rate", "20/s", "-d", "1s", "--max-error-rate", max])
            .output()
            .unwrap()
    };
    let out = run("/status/503", "50%");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("every request failed"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("errors     20 (100.00%): 503 20"));
    let out = run("/", "0%");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run("/half", "40%");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error rate 50.00% is above --max-error-rate 40% (10 of 20: 503 10)"), "{err}");
    assert_eq!(run("/half", "50%").status.code(), Some(0));
    // Without --max-error-rate, some successes are enough.
    let out = common::siege().args(["load", &server.url("/half").to_string(), "-c", "1", "-d", "1s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `siege run` of `yaml` in a fresh `SIEGE_HOME` (reports under its `reports`), with
/// `SSL_CERT_FILE` set when given; returns the home, the output and stdout + stderr.
fn siege_run(yaml: &str, ssl_cert_file: Option<&str>) -> (tempfile::TempDir, std::process::Output, String) {
    let home = tempfile::tempdir().unwrap();
    let scenario = home.path().join("scenario.yaml");
    std::fs::write(&scenario, yaml).unwrap();
    let mut cmd = common::siege();
    cmd.env("SIEGE_HOME", home.path()).arg("run").arg(&scenario).arg("--reports").arg(home.path().join("reports"));
    if let Some(file) = ssl_cert_file {
        cmd.env("SSL_CERT_FILE", file).env_remove("SSL_CERT_DIR");
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (home, out, text)
}

/// No trusted root certificate at all (`SSL_CERT_FILE` an empty file): `siege load` and
/// `siege run` stop before any request with exit 4, a precondition, and say why.
#[test]
fn https_without_trusted_roots_is_a_precondition() {
    let server = TestServer::start_tls();
    let out = common::siege()
        .env("SSL_CERT_FILE", "/dev/null")
        .env_remove("SSL_CERT_DIR")
        .args(["load", &server.localhost_url("/"), "-c", "1", "-d", "1s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("no trusted root certificates"), "{err}");

    let yaml = format!(
        "name: roots\ntarget: {{ lab: {{ tasks: 1 }} }}\nload: {{ url: \"{}\", rate: 10/s, duration: 12s }}\n\
         steady_state: {{ error_rate: \"< 1%\" }}\nfaults: [ {{ type: task-kill, at: 4s, select: 1 }} ]\n\
         recovery: {{ within: 4s, hold: 2s }}\n",
        server.localhost_url("/")
    );
    let (_home, out, text) = siege_run(&yaml, Some("/dev/null"));
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("no trusted root certificates"), "{text}");
    assert!(!text.contains("fault injected"), "{text}");
}

/// `siege run` sends its load to an absolute https:// URL (here a self-signed local endpoint,
/// hence `insecure_tls`) and the run passes on it.
#[test]
fn siege_run_loads_an_https_url() {
    let server = TestServer::start_tls();
    let yaml = format!(
        "name: tls\ntarget: {{ lab: {{ tasks: 1 }} }}\n\
         load: {{ url: \"{}\", rate: 20/s, duration: 12s, insecure_tls: true,\n\
           stages: [ {{ at: 4s, rate: 40/s, for: 2s }} ] }}\n\
         steady_state: {{ error_rate: \"< 1%\" }}\nrecovery: {{ within: 4s, hold: 2s }}\n",
        server.localhost_url("/")
    );
    let (home, out, text) = siege_run(&yaml, None);
    let reports = home.path().join("reports");
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report = common::read_report_json(&common::only_report_dir(&reports));
    let load = &report["load"];
    assert_eq!(load["errors"]["tls"], 0, "{load}");
    assert!(load["requests"].as_u64().unwrap() >= 200, "{load}");
    assert_eq!(server.requests.load(Ordering::SeqCst), load["requests"].as_u64().unwrap());
    assert!(server.handshakes.lock().unwrap().iter().all(|(sni, _)| sni.as_deref() == Some("localhost")));
}

/// A self-signed certificate is said in words, whether this machine trusts it (a CA certificate
/// used as the server's own) or not (an issuer it does not trust), never as rustls's debug text;
/// `siege load` adds the `--insecure` hint, and `siege run` stops before its baseline (exit 4)
/// with the `load.insecure_tls` hint.
#[test]
fn a_self_signed_certificate_is_rejected_in_words_with_the_way_to_accept_it() {
    let server = TestServer::start_with(None, Duration::ZERO, Some(self_signed_acceptor()));
    let url = server.localhost_url("/");
    // An issuer this machine does not trust, for the other common case.
    let untrusted = TestServer::start_tls();
    let untrusted_url = untrusted.localhost_url("/");
    let self_signed = "it is a CA certificate used as the server's own: a self-signed certificate";
    for (trusted, url, words) in [
        ("self-signed.pem", &url, self_signed),
        ("ca.pem", &url, self_signed),
        ("other-ca.pem", &untrusted_url, "it is not issued by a certificate authority this machine trusts"),
    ] {
        let (code, v, err) = siege_load_trusting(trusted, url, &[]);
        assert_eq!(code, Some(1), "{trusted}: {err} {v}");
        let e = v["tls_error"].as_str().unwrap_or_default();
        assert!(e.starts_with("the server's certificate was rejected: ") && e.contains(words), "{trusted}: {v}");
        assert!(!e.contains("Other") && !e.contains("CaUsedAsEndEntity"), "{trusted}: {e}");
        let out = common::siege()
            .env("SSL_CERT_FILE", tls_fixture(trusted))
            .env_remove("SSL_CERT_DIR")
            .args(["load", url, "--rate", "10/s", "-d", "1s", "--timeout", "1s"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(words) && text.contains("(--insecure accepts a self-signed certificate)"), "{text}");
    }
    let yaml = format!(
        "name: self-signed\ntarget: {{ lab: {{ tasks: 1 }} }}\nload: {{ url: \"{url}\", rate: 10/s, duration: 12s }}\n\
         steady_state: {{ error_rate: \"< 1%\" }}\nfaults: [ {{ type: task-kill, at: 4s, select: 1 }} ]\n\
         recovery: {{ within: 4s, hold: 2s }}\n"
    );
    let (_home, out, text) = siege_run(&yaml, Some(&tls_fixture("self-signed.pem")));
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("it is a CA certificate used as the server's own"), "{text}");
    assert!(text.contains("`load.insecure_tls: true` in the scenario accepts a self-signed certificate"), "{text}");
    assert!(!text.contains("fault injected") && !text.contains("OtherError"), "{text}");
}

/// Each window notes when its failed requests and those slower than the latency bound were due,
/// on the run's clock (the time to detect is read from them).
#[tokio::test]
async fn windows_note_when_their_failed_and_slow_requests_were_due() {
    // Every other request fails; the 5th request answered stalls 300 ms.
    let server = TestServer::start(Some(5), Duration::from_millis(300));
    let epoch = std::time::Instant::now();
    let notice = siege::load::Notice { epoch: Some(epoch), slow_after: Some(Duration::from_millis(100)) };
    let r = drive(LoadPlan { notice, ..open(server.url("/half"), 50.0, 2.0, 16, Duration::from_secs(1)) }).await;
    let failed: Vec<u32> = r.per_second.iter().flat_map(|w| w.failed_at_ms.iter().copied()).collect();
    let slow: Vec<u32> = r.per_second.iter().flat_map(|w| w.slow_at_ms.iter().copied()).collect();
    let errors = r.errors.total() + r.missed;
    assert!(errors >= 40, "{r:?}");
    // 50/s: one every 20 ms, so none shares its 10 ms with another.
    assert_eq!(failed.len() as u64, errors, "{failed:?}");
    assert!(failed.iter().all(|ms| *ms < 2100), "due within the 2 s (and the setup): {failed:?}");
    for w in &r.per_second {
        assert!(w.failed_at_ms.windows(2).all(|p| p[0] < p[1]), "sorted: {:?}", w.failed_at_ms);
    }
    assert_eq!(slow.len(), 1, "the one stalled request: {slow:?}");
    // The windows' JSON (events, `siege load --json`) does not carry them.
    let json = serde_json::to_string(&r.per_second[0]).unwrap();
    assert!(!json.contains("failed_at_ms") && !json.contains("slow_at_ms"), "{json}");
}
