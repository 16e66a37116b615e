//! Child processes of the lab: how they are started (from one long-lived thread, with
//! `PR_SET_PDEATHSIG` so that nothing outlives its parent, even on `kill -9`), signalled and
//! measured (CPU and RSS from `/proc`).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;

/// The binary children re-execute: `SIEGE_EXE` if set (library tests run from a test harness
/// binary), else this very executable through `/proc/self/exe`, which still names the running
/// binary after its file was replaced (a rebuild or an upgrade during a run); the path from
/// `current_exe` would then point at the new file, or at nothing.
pub fn siege_exe() -> std::io::Result<PathBuf> {
    match std::env::var_os("SIEGE_EXE") {
        Some(p) => Ok(PathBuf::from(p)),
        None => {
            let proc_exe = PathBuf::from("/proc/self/exe");
            if proc_exe.exists() { Ok(proc_exe) } else { std::env::current_exe() }
        }
    }
}

/// Makes `cmd` receive SIGKILL when the thread that forks it exits, and closes the race where the
/// parent died before the child ran `prctl`.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between fork and exec.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

type SpawnJob = (Command, Handle, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from a dedicated thread that lives as long as the process. `PR_SET_PDEATHSIG`
/// fires when the *thread* that forked exits; tokio retires idle blocking threads, so forking
/// from an arbitrary thread could kill a child at a random moment.
pub fn spawn(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let spawned = std::thread::Builder::new().name("lab-spawner".into()).spawn(move || {
            for (mut cmd, handle, reply) in rx {
                // tokio's Command registers the child with the runtime's process driver.
                let _g = handle.enter();
                let _ = reply.send(cmd.spawn());
            }
        });
        if spawned.is_err() {
            // Without the thread every send below fails and is reported to the caller.
        }
        std::sync::Mutex::new(tx)
    });
    let handle = Handle::try_current().map_err(std::io::Error::other)?;
    let (rtx, rrx) = mpsc::channel();
    tx.lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((cmd, handle, rtx))
        .map_err(|_| std::io::Error::other("process spawner thread is gone"))?;
    rrx.recv().map_err(|_| std::io::Error::other("process spawner thread is gone"))?
}

/// Sends `sig` to `pid`; `false` when the process does not exist.
pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    // SAFETY: plain syscall on a pid we started.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// The fields of `/proc/PID/stat` after the command name (which may contain spaces and
/// parentheses): index 0 is field 3 (state), index `n - 3` is field `n` of proc(5).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(s.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

/// Whether `pid` is running (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|state| state != "Z"))
}

/// What tells a process apart from a later one that was given the same pid: the boot it started
/// in and its start time (clock ticks after boot, field 22 of `/proc/PID/stat`). Two processes
/// never share both.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub boot_id: String,
    pub start_ticks: u64,
}

/// The identity of `pid`, `None` when it does not exist.
pub fn identity(pid: u32) -> Option<Identity> {
    let start_ticks = stat_fields(pid)?.get(22 - 3)?.parse().ok()?;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_owned();
    Some(Identity { boot_id, start_ticks })
}

/// Whether `pid` is running and is the very process `id` was taken from.
pub fn is_process(pid: u32, id: &Identity) -> bool {
    alive(pid) && identity(pid).as_ref() == Some(id)
}

/// The arguments of running process `pid` (`argv[0]` first), `None` when it is gone or a zombie.
pub fn args(pid: u32) -> Option<Vec<String>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if !alive(pid) {
        return None;
    }
    let body = cmdline.strip_suffix(&[0]).unwrap_or(&cmdline);
    Some(body.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// Whether `pid` is running with `words` as consecutive arguments of its command line (a check
/// that a recorded pid was not reused by an unrelated process, for records without an
/// [`Identity`]).
pub fn runs_command(pid: u32, words: &[&str]) -> bool {
    let Some(args) = args(pid) else { return false };
    words.is_empty() || args.windows(words.len()).any(|w| w.iter().zip(words).all(|(a, b)| a == b))
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU time of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    let utime: u64 = f.get(14 - 3)?.parse().ok()?;
    let stime: u64 = f.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

/// 128 random bits as hex, for the control token and lab passwords.
pub fn random_hex() -> String {
    let mut buf = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf)).is_ok();
    if !ok {
        let mut r = crate::util::Rng::new(crate::util::Rng::fresh_seed());
        for b in buf.iter_mut() {
            *b = r.next_u64() as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A started child that announced its port.
pub struct Started {
    pub child: Child,
    pub pid: u32,
    pub port: u16,
    pub control: Control,
}

/// How long a child gets to apply one control command and say so.
const ACK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The parent's end of a child's control channel. Each command goes down the child's stdin as
/// `SEQ COMMAND` and counts as delivered only once the child has applied it and printed `SEQ` on
/// its stdout ([`control_lines`] and [`ack`] are the child's end): a fault the lab reports as
/// injected is in force when the answer leaves, not some moments later.
pub struct Control {
    io: tokio::sync::Mutex<Option<ControlIo>>,
}

struct ControlIo {
    seq: u64,
    stdin: tokio::process::ChildStdin,
    acks: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Control {
    /// Sends `line` and waits for the child to apply it; false if it did not in time or is gone.
    /// A late answer is skipped by the next command, which waits for its own number.
    pub async fn send(&self, line: &str) -> bool {
        use tokio::io::AsyncWriteExt;
        let mut g = self.io.lock().await;
        let Some(io) = g.as_mut() else { return false };
        io.seq += 1;
        let seq = io.seq;
        if io.stdin.write_all(format!("{seq} {line}\n").as_bytes()).await.is_err() {
            *g = None;
            return false;
        }
        let acked = tokio::time::timeout(ACK_DEADLINE, async {
            loop {
                match io.acks.next_line().await {
                    Ok(Some(l)) if l.trim().parse::<u64>().is_ok_and(|n| n >= seq) => return true,
                    Ok(Some(_)) => {}
                    _ => return false,
                }
            }
        })
        .await;
        match acked {
            Ok(true) => true,
            Ok(false) => {
                *g = None;
                false
            }
            Err(_) => false,
        }
    }
}

/// Starts `cmd` (stdin and stdout piped, dies with this process) and waits up to `deadline` for
/// its first stdout line, `{"port": N}`; stdin and stdout then carry its [`Control`] channel.
pub async fn spawn_ready(mut cmd: Command, deadline: std::time::Duration) -> std::io::Result<Started> {
    use tokio::io::AsyncBufReadExt;
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    // Its own process group: a Ctrl-C at the terminal reaches the supervisor only, which then
    // stops its children in order (they are killed by pid, and die with it in any case).
    cmd.process_group(0);
    die_with_parent(&mut cmd);
    let mut child = spawn(cmd)?;
    let pid = child.id().unwrap_or(0);
    let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(deadline, lines.next_line()).await {
        Ok(Ok(Some(l))) => l,
        other => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(std::io::Error::other(match other {
                Err(_) => "child did not become ready in time".to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => "child exited before it was ready".to_string(),
            }));
        }
    };
    let port = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v.get("port").and_then(|p| p.as_u64()))
        .and_then(|p| u16::try_from(p).ok());
    let Some(port) = port else {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(std::io::Error::other(format!("unexpected ready line from child: {line}")));
    };
    let io = child.stdin.take().map(|stdin| ControlIo { seq: 0, stdin, acks: lines });
    Ok(Started { child, pid, port, control: Control { io: tokio::sync::Mutex::new(io) } })
}

/// A control command as the child reads it: its sequence number, to [`ack`], and the command.
pub struct ControlLine {
    pub seq: u64,
    pub command: String,
}

/// Tells the parent that command `seq` is applied.
pub fn ack(seq: u64) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{seq}").and_then(|_| out.flush());
}

/// The control commands on this process's stdin, read on a plain thread (the channel closes at
/// end of input, when the parent is gone). Lines without a sequence number are not commands.
pub fn control_lines() -> tokio::sync::mpsc::UnboundedReceiver<ControlLine> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let Some((seq, command)) = line.split_once(' ') else { continue };
            let Ok(seq) = seq.parse() else { continue };
            if tx.send(ControlLine { seq, command: command.to_string() }).is_err() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that takes `delay` to apply each command (`sh` reading its stdin).
    async fn slow_child(delay: &str) -> Started {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!(r#"echo '{{"port": 1}}'; while read seq cmd; do sleep {delay}; echo $seq; done"#)]);
        spawn_ready(cmd, std::time::Duration::from_secs(5)).await.unwrap()
    }

    #[tokio::test]
    async fn a_command_counts_as_sent_once_the_child_applied_it() {
        let s = slow_child("0.4").await;
        let t0 = std::time::Instant::now();
        assert!(s.control.send("latency 600 0").await);
        assert!(t0.elapsed() >= std::time::Duration::from_millis(400), "{:?}", t0.elapsed());
        assert!(s.control.send("clear all").await);
    }

    #[tokio::test]
    async fn a_child_that_is_gone_is_not_sent_to() {
        let mut s = slow_child("0").await;
        s.child.kill().await.unwrap();
        assert!(!s.control.send("latency 600 0").await);
        assert!(!s.control.send("clear all").await);
    }
}
