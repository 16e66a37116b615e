//! The demo app every lab task runs (a hidden `siege lab task` subcommand in its own process):
//! `/` app info, `/healthz`, `/work?ms=N` CPU burn, `/db` a query to the lab database with the
//! password the task received at start (as ECS injects secrets into the environment).
//!
//! The supervisor steers faults through the task's control channel (stdin, each command acknowledged
//! on stdout once applied: [`super::proc::Control`]), so that no fault switch is reachable through
//! the balancer: `latency DELAY_MS JITTER_MS`, `stress PERCENT DURATION_MS`,
//! `clear latency|stress|all`. End of stdin (the supervisor is gone) ends the task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::web::{self, Resp};
use crate::util::Rng;

/// Environment variable carrying the database password into a task.
pub const PASSWORD_ENV: &str = "SIEGE_LAB_DB_PASSWORD";

/// `siege lab task` (internal): arguments given by the supervisor.
#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub service: String,
    /// Deployment revision, e.g. `3`.
    #[arg(long)]
    pub revision: u32,
    /// Address of the database cluster endpoint.
    #[arg(long)]
    pub db: String,
    /// Version of the secret the password comes from (the password itself is in the environment).
    #[arg(long)]
    pub secret_version: u32,
}

struct Db {
    addr: String,
    password: String,
    pool: Mutex<Vec<BufReader<TcpStream>>>,
    /// Earliest next connection attempt after a failure, the current backoff, the last error.
    backoff: Mutex<(Option<Instant>, Duration, String)>,
}

struct App {
    args: TaskArgs,
    /// Added delay and jitter in microseconds, on every request served and every DB round trip.
    delay_us: AtomicU64,
    jitter_us: AtomicU64,
    /// Bumped to stop the current stress threads.
    stress_gen: Arc<AtomicU64>,
    rng: Mutex<Rng>,
    db: Db,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl App {
    fn delay(&self) -> Duration {
        let d = self.delay_us.load(Ordering::Relaxed) as f64;
        let j = self.jitter_us.load(Ordering::Relaxed) as f64;
        if d == 0.0 && j == 0.0 {
            return Duration::ZERO;
        }
        let u = self.rng.lock().map(|mut r| r.unit()).unwrap_or(0.5);
        Duration::from_micros((d + j * (2.0 * u - 1.0)).max(0.0) as u64)
    }

    async fn pause(&self) {
        let d = self.delay();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    async fn connect_db(&self) -> Result<BufReader<TcpStream>, String> {
        if let Ok(b) = self.db.backoff.lock()
            && let Some(at) = b.0
            && Instant::now() < at
        {
            return Err(format!("{} (reconnecting in {}ms)", b.2, (at - Instant::now()).as_millis()));
        }
        let r = async {
            let s = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&self.db.addr))
                .await
                .map_err(|_| "connect to the database timed out".to_string())?
                .map_err(|e| format!("connect to the database: {e}"))?;
            let _ = s.set_nodelay(true);
            let mut conn = BufReader::new(s);
            let line = exchange(&mut conn, &format!("AUTH {}", self.db.password)).await?;
            if line == "OK" { Ok(conn) } else { Err(line) }
        }
        .await;
        if let Ok(mut b) = self.db.backoff.lock() {
            match &r {
                Ok(_) => *b = (None, BACKOFF_MIN, String::new()),
                Err(e) => {
                    let next = b.1;
                    *b = (Some(Instant::now() + next), (next * 2).min(BACKOFF_MAX), e.clone());
                }
            }
        }
        r
    }

    /// One query on a pooled connection; a broken connection is dropped, so the next request
    /// reconnects (with backoff) — what a connection pool does across a failover.
    async fn query(&self) -> Result<String, String> {
        self.pause().await;
        let pooled = self.db.pool.lock().ok().and_then(|mut p| p.pop());
        let line = match pooled {
            // A pooled connection may have been closed by a failover or a rotation since it was
            // last used: like a pool's validation query, retry once on a fresh connection.
            Some(mut c) => match exchange(&mut c, "QUERY SELECT 1").await {
                Ok(line) => Ok((c, line)),
                Err(_) => {
                    let mut c = self.connect_db().await?;
                    exchange(&mut c, "QUERY SELECT 1").await.map(|l| (c, l))
                }
            },
            None => {
                let mut c = self.connect_db().await?;
                exchange(&mut c, "QUERY SELECT 1").await.map(|l| (c, l))
            }
        };
        let (conn, line) = line?;
        match line.strip_prefix("OK ") {
            Some(rest) => {
                if let Ok(mut p) = self.db.pool.lock() {
                    p.push(conn);
                }
                Ok(rest.to_string())
            }
            None => Err(line),
        }
    }
}

/// Sends one line and reads the one-line answer (2 s at most).
async fn exchange(conn: &mut BufReader<TcpStream>, line: &str) -> Result<String, String> {
    let fut = async {
        conn.get_mut().write_all(format!("{line}\n").as_bytes()).await.map_err(|e| format!("database: {e}"))?;
        let mut answer = String::new();
        let n = conn.read_line(&mut answer).await.map_err(|e| format!("database: {e}"))?;
        if n == 0 {
            return Err("database closed the connection".to_string());
        }
        Ok(answer.trim().to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), fut).await.map_err(|_| "database query timed out".to_string())?
}

/// CPU time used by the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Burns `d` of CPU time on the calling thread (on a busy machine that takes longer in wall time,
/// as it would for a real request), giving up after ten times `d` of wall time.
fn burn(d: Duration) {
    let start_cpu = thread_cpu_time();
    let give_up = Instant::now() + d * 10;
    let mut x = 0u64;
    while thread_cpu_time().saturating_sub(start_cpu) < d && Instant::now() < give_up {
        for i in 0..1000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

/// Starts burner threads using `percent` of one core in total until `duration` passes or the
/// stress generation changes.
fn start_stress(app: &App, percent: u32, duration: Duration) {
    let generation = app.stress_gen.fetch_add(1, Ordering::SeqCst) + 1;
    if percent == 0 {
        return;
    }
    let threads = percent.div_ceil(100).max(1);
    let share = percent as f64 / 100.0 / threads as f64;
    let end = Instant::now() + duration;
    let period = Duration::from_millis(20);
    for _ in 0..threads {
        let gen_now = app.stress_gen.clone();
        let _ = std::thread::Builder::new().name("stress".into()).spawn(move || {
            while Instant::now() < end && gen_now.load(Ordering::SeqCst) == generation {
                burn(period.mul_f64(share));
                std::thread::sleep(period.mul_f64(1.0 - share));
            }
        });
    }
}

fn control(app: &App, line: &str) {
    let w: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| w.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    match w.first().copied() {
        Some("latency") => {
            app.delay_us.store(num(1) * 1000, Ordering::Relaxed);
            app.jitter_us.store(num(2) * 1000, Ordering::Relaxed);
        }
        Some("stress") => start_stress(app, num(1) as u32, Duration::from_millis(num(2))),
        Some("clear") => {
            let what = w.get(1).copied().unwrap_or("all");
            if what == "latency" || what == "all" {
                app.delay_us.store(0, Ordering::Relaxed);
                app.jitter_us.store(0, Ordering::Relaxed);
            }
            if what == "stress" || what == "all" {
                app.stress_gen.fetch_add(1, Ordering::SeqCst);
            }
        }
        _ => {}
    }
}

async fn handle(app: Arc<App>, req: hyper::Request<hyper::body::Incoming>) -> Resp {
    app.pause().await;
    let a = &app.args;
    match req.uri().path() {
        "/" => web::json(
            StatusCode::OK,
            &json!({
                "service": a.service, "task": a.id, "revision": a.revision,
                "pid": std::process::id(), "secret_version": a.secret_version,
            }),
        ),
        "/healthz" => web::text(StatusCode::OK, "ok\n"),
        "/work" => {
            let ms = web::query_param(req.uri(), "ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(100).min(10_000);
            let _ = tokio::task::spawn_blocking(move || burn(Duration::from_millis(ms))).await;
            web::json(StatusCode::OK, &json!({ "task": a.id, "ms": ms }))
        }
        "/db" => match app.query().await {
            Ok(info) => {
                let mut v = json!({ "task": a.id });
                for kv in info.split_whitespace() {
                    if let Some((k, val)) = kv.split_once('=') {
                        v[k] = json!(val);
                    }
                }
                web::json(StatusCode::OK, &v)
            }
            Err(e) => web::json(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "task": a.id, "error": e })),
        },
        _ => web::json(StatusCode::NOT_FOUND, &json!({ "error": "not found" })),
    }
}

/// Runs one task until SIGTERM or the end of stdin.
pub fn run(args: TaskArgs) -> std::io::Result<()> {
    let password = std::env::var(PASSWORD_ENV).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let seed = Rng::fresh_seed();
        let app = Arc::new(App {
            db: Db {
                addr: args.db.clone(),
                password,
                pool: Mutex::new(Vec::new()),
                backoff: Mutex::new((None, BACKOFF_MIN, String::new())),
            },
            args,
            delay_us: AtomicU64::new(0),
            jitter_us: AtomicU64::new(0),
            stress_gen: Arc::new(AtomicU64::new(0)),
            rng: Mutex::new(Rng::new(seed)),
        });
        let cancel = CancellationToken::new();
        let server = {
            let app = app.clone();
            tokio::spawn(web::serve(listener, cancel.clone(), move |req, _| handle(app.clone(), req)))
        };
        println!("{}", json!({ "port": port }));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut commands = super::proc::control_lines();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                line = commands.recv() => match line {
                    Some(c) => {
                        control(&app, &c.command);
                        super::proc::ack(c.seq);
                    }
                    None => break,
                },
            }
        }
        // Stop accepting, give in-flight requests a moment, then leave.
        cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_millis(200), server).await;
        app.stress_gen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}
