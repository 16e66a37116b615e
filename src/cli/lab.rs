//! `siege lab up / down / status`, and the lab's own hidden process entry points (`siege lab
//! task`, `siege lab db-node`).

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Failure;
use crate::exit::Exit;
use crate::lab::balancer::HealthConfig;
use crate::lab::client::ControlClient;
use crate::lab::service::{AutoscalingConfig, ServiceConfig};
use crate::lab::supervisor::{Lab, LabAddress, LabConfig};
use crate::lab::{
    db, is_lab, lab_file, proc, read_lab_file, remove_lab_file_if, render_status, running_lab, task, write_lab_file,
};
use crate::scenario::units::{parse_duration, parse_percent};

/// `siege lab ...`
#[derive(Debug, clap::Subcommand)]
pub(super) enum LabCommand {
    /// Start the lab (foreground, or in the background with --detach).
    Up(UpArgs),
    /// Stop a background lab and every process it started.
    Down,
    /// Show tasks, health, DB writer, secret version and active faults.
    Status {
        /// Print the full state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A lab task process (started by the lab itself).
    #[command(hide = true)]
    Task(task::TaskArgs),
    /// A lab database node process (started by the lab itself).
    #[command(hide = true)]
    DbNode(db::DbNodeArgs),
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn fraction(s: &str) -> Result<f64, String> {
    let f = parse_percent(s)?;
    if f > 1.0 { Err(format!("`{s}` is above 100%")) } else { Ok(f) }
}

fn max_percent(s: &str) -> Result<f64, String> {
    let f = parse_percent(s)?;
    if !(1.0..=4.0).contains(&f) { Err(format!("`{s}` must be between 100% and 400%")) } else { Ok(f) }
}

/// `siege lab up` settings. Defaults: a task killed at t is healthy again by about t+5s.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct UpArgs {
    /// Run in the background; `siege lab status` and `siege lab down` find it.
    #[arg(long)]
    pub detach: bool,
    /// Print one JSON line with the lab's address once it is ready (for programs starting a lab).
    #[arg(long, hide = true)]
    pub ready_json: bool,
    /// Service name.
    #[arg(long, default_value = "api")]
    pub service: String,
    /// Desired task count.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub tasks: u32,
    /// Balancer port on 127.0.0.1 (0: a free port).
    #[arg(long, default_value_t = 0)]
    pub balancer_port: u16,
    /// Control API port on 127.0.0.1 (0: a free port).
    #[arg(long, default_value_t = 0)]
    pub control_port: u16,
    /// Time between two health checks of a target.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub health_interval: Duration,
    /// A health check slower than this fails.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub health_timeout: Duration,
    /// Consecutive successful checks before a target gets traffic.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub healthy_threshold: u32,
    /// Consecutive failed checks before a target stops getting traffic.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub unhealthy_threshold: u32,
    /// Balancer answers 504 when a target takes longer than this.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub target_timeout: Duration,
    /// Time from a task stopping to its replacement being started.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub placement_delay: Duration,
    /// Minimum healthy share of the desired count during a redeploy.
    #[arg(long, default_value = "66%", value_parser = fraction)]
    pub min_healthy: f64,
    /// Maximum running tasks during a redeploy, as a share of the desired count.
    #[arg(long, default_value = "200%", value_parser = max_percent)]
    pub max_percent: f64,
    /// How long a DB failover leaves the cluster without a writer (unless the fault says).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub failover_outage: Duration,
    /// Autoscaling: maximum task count (autoscaling is on when this is given).
    #[arg(long)]
    pub autoscale_max: Option<u32>,
    /// Autoscaling: minimum task count (default: --tasks).
    #[arg(long)]
    pub autoscale_min: Option<u32>,
    /// Autoscaling: target average CPU per task, percent of one core.
    #[arg(long, default_value = "50%", value_parser = parse_percent)]
    pub autoscale_target: f64,
    /// Autoscaling: time between two scaling actions.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub autoscale_cooldown: Duration,
}

impl UpArgs {
    fn config(&self, echo_events: bool) -> LabConfig {
        let autoscaling = self.autoscale_max.map(|max| AutoscalingConfig {
            min: self.autoscale_min.unwrap_or(self.tasks).min(max),
            max,
            target_cpu_percent: self.autoscale_target * 100.0,
            cooldown_ms: self.autoscale_cooldown.as_millis() as u64,
        });
        LabConfig {
            service: ServiceConfig {
                name: self.service.clone(),
                desired: self.tasks,
                placement_delay: self.placement_delay,
                min_healthy: self.min_healthy,
                max_percent: self.max_percent,
                autoscaling,
            },
            balancer_port: self.balancer_port,
            control_port: self.control_port,
            health: HealthConfig {
                interval: self.health_interval,
                timeout: self.health_timeout,
                healthy_threshold: self.healthy_threshold,
                unhealthy_threshold: self.unhealthy_threshold,
            },
            target_timeout: self.target_timeout,
            failover_outage: self.failover_outage,
            echo_events,
        }
    }

    /// The same settings as command-line arguments, for starting the lab in another process.
    pub fn to_args(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let pct = |f: f64| format!("{}%", f * 100.0);
        let mut a = vec![
            "--service".into(),
            self.service.clone(),
            "--tasks".into(),
            self.tasks.to_string(),
            "--balancer-port".into(),
            self.balancer_port.to_string(),
            "--control-port".into(),
            self.control_port.to_string(),
            "--health-interval".into(),
            ms(self.health_interval),
            "--health-timeout".into(),
            ms(self.health_timeout),
            "--healthy-threshold".into(),
            self.healthy_threshold.to_string(),
            "--unhealthy-threshold".into(),
            self.unhealthy_threshold.to_string(),
            "--target-timeout".into(),
            ms(self.target_timeout),
            "--placement-delay".into(),
            ms(self.placement_delay),
            "--min-healthy".into(),
            pct(self.min_healthy),
            "--max-percent".into(),
            pct(self.max_percent),
            "--failover-outage".into(),
            ms(self.failover_outage),
            "--autoscale-target".into(),
            pct(self.autoscale_target),
            "--autoscale-cooldown".into(),
            ms(self.autoscale_cooldown),
        ];
        if let Some(m) = self.autoscale_max {
            a.extend(["--autoscale-max".into(), m.to_string()]);
        }
        if let Some(m) = self.autoscale_min {
            a.extend(["--autoscale-min".into(), m.to_string()]);
        }
        a
    }
}

pub(super) fn cmd_lab(cmd: LabCommand) -> anyhow::Result<Exit> {
    match cmd {
        LabCommand::Up(args) if args.detach => up_detached(&args),
        LabCommand::Up(args) => up_foreground(&args),
        LabCommand::Down => down(),
        LabCommand::Status { json } => status(json),
        LabCommand::Task(a) => task::run(a).map(|()| Exit::Passed).map_err(Into::into),
        LabCommand::DbNode(a) => db::run_node(a).map(|()| Exit::Passed).map_err(Into::into),
    }
}

fn already_running() -> anyhow::Result<()> {
    if let Some(a) = running_lab() {
        return Err(Failure::new(
            Exit::Invalid,
            format!(
                "a lab is already running (pid {}, balancer {}); stop it with `siege lab down`",
                a.pid, a.balancer_url
            ),
        ));
    }
    Ok(())
}

fn up_detached(args: &UpArgs) -> anyhow::Result<Exit> {
    use std::os::unix::process::CommandExt;
    already_running()?;
    let dir = crate::util::state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let log_path = dir.join("lab.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(proc::siege_exe()?);
    cmd.args(["lab", "up", "--ready-json"])
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    // Its own session: the lab must not get the terminal's Ctrl-C or die with this shell.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("start the lab in the background")?;
    let stdout = child.stdout.take().context("lab stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).context("read the lab's address")?;
    let addr: LabAddress = match serde_json::from_str(line.trim()) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            anyhow::bail!("the lab did not start:\n{}", log.trim());
        }
    };
    write_lab_file(&addr)?;
    outln!("lab running in the background (pid {})", addr.pid);
    outln!("  balancer  {}", addr.balancer_url);
    outln!("  control   {}", addr.control_url);
    outln!("  log       {}", log_path.display());
    outln!("`siege lab status` shows it; `siege lab down` stops it.");
    Ok(Exit::Passed)
}

fn up_foreground(args: &UpArgs) -> anyhow::Result<Exit> {
    if !args.ready_json {
        already_running()?;
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let lab = Lab::start(args.config(!args.ready_json)).await?;
        let ready = lab.wait_ready(Duration::from_secs(60)).await;
        if !ready {
            lab.shutdown().await;
            anyhow::bail!("the lab's tasks did not become healthy within 60s");
        }
        let addr = lab.address.clone();
        if args.ready_json {
            outln!("{}", serde_json::to_string(&addr)?);
        } else {
            write_lab_file(&addr)?;
            outln!("lab ready (pid {}): {} tasks of service {}", addr.pid, args.tasks, args.service);
            outln!("  balancer  {}", addr.balancer_url);
            outln!("  control   {}", addr.control_url);
            outln!("Ctrl-C stops it; events follow.");
        }
        let _ = std::io::stdout().flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = lab.stop.cancelled() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        lab.shutdown().await;
        remove_lab_file_if(addr.pid);
        anyhow::Ok(())
    })?;
    Ok(Exit::Passed)
}

fn no_lab() -> anyhow::Error {
    Failure::new(Exit::Precondition, "no lab is running (start one with `siege lab up --detach`)")
}

fn status(json: bool) -> anyhow::Result<Exit> {
    let addr = running_lab().ok_or_else(no_lab)?;
    let rt = super::runtime()?;
    let st = rt.block_on(ControlClient::new(&addr.control_url, &addr.token).state(0))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        out!("{}", render_status(&st));
    }
    Ok(Exit::Passed)
}

fn down() -> anyhow::Result<Exit> {
    let Some(addr) = read_lab_file() else {
        outln!("no lab is running");
        return Ok(Exit::Passed);
    };
    if !is_lab(addr.pid) {
        let _ = std::fs::remove_file(lab_file());
        outln!("no lab is running (removed a stale record of pid {})", addr.pid);
        return Ok(Exit::Passed);
    }
    let rt = super::runtime()?;
    let asked = rt.block_on(ControlClient::new(&addr.control_url, &addr.token).send(&crate::lab::control::Shutdown {}));
    // The supervisor stops and reaps its children before it exits; waiting for it is enough.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc::alive(addr.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_lab(addr.pid) {
        // Its children die with it (PR_SET_PDEATHSIG).
        proc::signal(addr.pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc::alive(addr.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::fs::remove_file(lab_file());
    match asked {
        Ok(_) => outln!("lab stopped (pid {})", addr.pid),
        Err(e) => outln!("lab stopped (pid {}, killed: {e})", addr.pid),
    }
    Ok(Exit::Passed)
}
