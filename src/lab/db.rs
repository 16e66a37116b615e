//! The lab database: node processes (a hidden `siege lab db-node` subcommand) speaking a tiny
//! line protocol over real TCP, and the cluster (writer + replica behind a cluster endpoint)
//! that the supervisor runs.
//!
//! Protocol, one line each way: `AUTH <password>` → `OK` | `ERR …` (then closed);
//! `QUERY <text>` → `OK node=<name> role=<writer|replica>`; `PING` → `OK`.
//!
//! The supervisor steers a node through its control channel ([`proc::Control`]): `password <pw>` (what the node accepts from
//! now on; sessions opened with another password are closed, as after a rotation the old
//! credentials stop working), `role writer|replica`, `drop` (close every session).
//!
//! The cluster endpoint is a TCP forwarder to the current writer. A failover closes every
//! forwarded connection, refuses new ones for the outage window (no writer), then promotes the
//! replica — what clients of an Aurora cluster endpoint see.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::events::Events;
use super::proc;
use super::task::PASSWORD_ENV;

/// `siege lab db-node` (internal).
#[derive(Debug, clap::Args)]
pub struct DbNodeArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "replica")]
    pub role: String,
}

#[derive(Debug, Clone, PartialEq)]
struct NodeState {
    password: String,
    role: String,
    /// Bumped by `drop`.
    drop_epoch: u64,
}

async fn node_session(stream: TcpStream, name: Arc<str>, mut state: watch::Receiver<NodeState>) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let epoch = state.borrow().drop_epoch;
    let mut authed: Option<String> = None;
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() { return; }
                let s = state.borrow().clone();
                if s.drop_epoch != epoch || authed.as_ref().is_some_and(|p| *p != s.password) {
                    return;
                }
            }
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { return };
                let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let s = state.borrow().clone();
                let (answer, close) = match cmd {
                    "AUTH" if arg == s.password => { authed = Some(arg.to_string()); ("OK".to_string(), false) }
                    "AUTH" => ("ERR password authentication failed".to_string(), true),
                    "QUERY" if authed.is_some() => (format!("OK node={name} role={}", s.role), false),
                    "QUERY" => ("ERR not authenticated".to_string(), true),
                    "PING" => ("OK".to_string(), false),
                    _ => ("ERR unknown command".to_string(), true),
                };
                if w.write_all(format!("{answer}\n").as_bytes()).await.is_err() || close {
                    return;
                }
            }
        }
    }
}

/// Runs one database node until the end of stdin.
pub fn run_node(args: DbNodeArgs) -> std::io::Result<()> {
    let password = std::env::var(PASSWORD_ENV).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", json!({ "port": listener.local_addr()?.port() }));
        let (tx, rx) = watch::channel(NodeState { password, role: args.role.clone(), drop_epoch: 0 });
        let name: Arc<str> = args.name.into();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(node_session(s, name.clone(), rx.clone()));
            }
        });
        let mut commands = proc::control_lines();
        while let Some(c) = commands.recv().await {
            let (cmd, arg) = c.command.split_once(' ').unwrap_or((c.command.as_str(), ""));
            tx.send_modify(|s| match cmd {
                "password" => s.password = arg.to_string(),
                "role" => s.role = arg.to_string(),
                "drop" => s.drop_epoch += 1,
                _ => {}
            });
            proc::ack(c.seq);
        }
        Ok(())
    })
}

struct Node {
    name: String,
    pid: u32,
    port: u16,
    control: proc::Control,
    child: tokio::sync::Mutex<Child>,
}

impl Node {
    async fn tell(&self, line: &str) {
        self.control.send(line).await;
    }
}

#[derive(Debug)]
struct ClusterState {
    /// Index of the writer in `nodes`; `None` during a failover window.
    writer: Option<usize>,
    outage_until: Option<Instant>,
    failovers: u32,
}

/// The database cluster: two nodes and the cluster endpoint.
pub struct Cluster {
    nodes: Vec<Node>,
    state: Mutex<ClusterState>,
    /// Bumped to close every forwarded connection.
    epoch: watch::Sender<u64>,
    pub endpoint_port: u16,
    pub default_outage: Duration,
    events: Arc<Events>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("start database node {name}: {source}")]
    Start { name: String, source: std::io::Error },
    #[error("bind the cluster endpoint: {0}")]
    Bind(std::io::Error),
    #[error("a failover is already in progress")]
    FailoverInProgress,
}

/// What `siege lab status` shows of the cluster.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClusterView {
    pub endpoint: String,
    pub writer: Option<String>,
    pub nodes: Vec<NodeView>,
    pub failover_in_progress: bool,
    pub failovers: u32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeView {
    pub name: String,
    pub pid: u32,
    pub port: u16,
    pub role: String,
}

impl Cluster {
    /// Starts both nodes (`db-1` writer, `db-2` replica) accepting `password`, and the endpoint.
    pub async fn start(
        password: &str,
        default_outage: Duration,
        events: Arc<Events>,
        cancel: CancellationToken,
    ) -> Result<Arc<Cluster>, DbError> {
        let exe = proc::siege_exe().map_err(|source| DbError::Start { name: "db".into(), source })?;
        let mut nodes = Vec::new();
        for (name, role) in [("db-1", "writer"), ("db-2", "replica")] {
            let mut cmd = Command::new(&exe);
            cmd.args(["lab", "db-node", "--name", name, "--role", role])
                .env(PASSWORD_ENV, password)
                .stderr(std::process::Stdio::null());
            let s = proc::spawn_ready(cmd, Duration::from_secs(10))
                .await
                .map_err(|source| DbError::Start { name: name.into(), source })?;
            nodes.push(Node {
                name: name.into(),
                pid: s.pid,
                port: s.port,
                control: s.control,
                child: tokio::sync::Mutex::new(s.child),
            });
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(DbError::Bind)?;
        let endpoint_port = listener.local_addr().map_err(DbError::Bind)?.port();
        let (epoch, _) = watch::channel(0u64);
        let cluster = Arc::new(Cluster {
            nodes,
            state: Mutex::new(ClusterState { writer: Some(0), outage_until: None, failovers: 0 }),
            epoch,
            endpoint_port,
            default_outage,
            events,
        });
        tokio::spawn(forward(listener, cluster.clone(), cancel));
        Ok(cluster)
    }

    fn writer_port(&self) -> Option<u16> {
        let w = self.state.lock().ok()?.writer?;
        self.nodes.get(w).map(|n| n.port)
    }

    pub fn writer_name(&self) -> Option<String> {
        let w = self.state.lock().ok()?.writer?;
        self.nodes.get(w).map(|n| n.name.clone())
    }

    pub fn view(&self) -> ClusterView {
        let (writer, outage, failovers) =
            self.state.lock().map(|s| (s.writer, s.outage_until.is_some(), s.failovers)).unwrap_or((None, false, 0));
        ClusterView {
            endpoint: format!("127.0.0.1:{}", self.endpoint_port),
            writer: writer.and_then(|w| self.nodes.get(w)).map(|n| n.name.clone()),
            nodes: self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| NodeView {
                    name: n.name.clone(),
                    pid: n.pid,
                    port: n.port,
                    role: if Some(i) == writer { "writer".into() } else { "replica".into() },
                })
                .collect(),
            failover_in_progress: outage,
            failovers,
        }
    }

    /// Pids of the node processes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }

    /// Makes every node accept `password` (and only it) from now on.
    pub async fn set_password(&self, password: &str) {
        for n in &self.nodes {
            n.tell(&format!("password {password}")).await;
        }
    }

    /// Drops the writer and its connections, leaves the cluster without a writer for `outage`,
    /// then promotes the replica.
    pub async fn failover(self: &Arc<Self>, outage: Option<Duration>) -> Result<(String, String), DbError> {
        let outage = outage.unwrap_or(self.default_outage);
        let (old, new, this) = {
            let mut s = self.state.lock().map_err(|_| DbError::FailoverInProgress)?;
            let Some(old) = s.writer else { return Err(DbError::FailoverInProgress) };
            s.writer = None;
            s.outage_until = Some(Instant::now() + outage);
            s.failovers += 1;
            (old, (old + 1) % self.nodes.len(), s.failovers)
        };
        self.epoch.send_modify(|e| *e += 1);
        self.nodes[old].tell("drop").await;
        let (old_name, new_name) = (self.nodes[old].name.clone(), self.nodes[new].name.clone());
        self.events
            .push(format!("db: failover started, writer {old_name} lost, no writer for {}ms", outage.as_millis()));
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            me.end_failover(Some(this)).await;
        });
        Ok((old_name, new_name))
    }

    /// Ends a failover window now (promoting the replica); nothing when the cluster has a writer.
    pub async fn promote(&self) {
        self.end_failover(None).await;
    }

    /// Promotes the replica if a failover is in progress; with `only`, only if that is failover
    /// number `only`. The timer of a failover ended early (by a promote or a revert) must not
    /// end the next one: it would cut that outage short.
    async fn end_failover(&self, only: Option<u32>) {
        let promoted = {
            let Ok(mut s) = self.state.lock() else { return };
            if s.writer.is_some() || only.is_some_and(|n| n != s.failovers) {
                return;
            }
            // The replica is the node that was not the writer before the failover: with two
            // nodes and `failovers` counted, writer index alternates.
            let new = (s.failovers as usize) % self.nodes.len();
            s.writer = Some(new);
            s.outage_until = None;
            new
        };
        for (i, n) in self.nodes.iter().enumerate() {
            n.tell(if i == promoted { "role writer" } else { "role replica" }).await;
        }
        self.events.push(format!("db: {} promoted to writer", self.nodes[promoted].name));
    }

    /// Stops the node processes and reaps them.
    pub async fn stop(&self) {
        for n in &self.nodes {
            let mut c = n.child.lock().await;
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
}

/// The cluster endpoint: forwards each connection to the current writer; refuses (closes) while
/// there is none; closes every forwarded connection when the epoch changes.
async fn forward(listener: TcpListener, cluster: Arc<Cluster>, cancel: CancellationToken) {
    loop {
        let client = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
        };
        let Some(port) = cluster.writer_port() else {
            drop(client);
            continue;
        };
        let mut epoch = cluster.epoch.subscribe();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else { return };
            let _ = upstream.set_nodelay(true);
            let mut client = client;
            let _ = client.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                _ = epoch.changed() => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}
