//! A local AWS for the tests: moto's server on a free loopback port, a world matching the
//! placeholders of `scenarios/aws/*.yaml` (account 123456789012, region us-east-1, cluster
//! `prod`, service `api`, target group `api`, balancer `prod-lb`, Aurora cluster `prod-db`,
//! secret `prod/api/db`, alarms `api-5xx` and `api-unhealthy-hosts`), and a background scheduler thread that plays ECS:
//! moto records state but runs nothing, so the scheduler replaces stopped tasks after a delay
//! and keeps the target group's registrations in step with the running tasks.
//!
//! Reusable for end-to-end runs of the `siege` binary: [`World::env`] gives the environment a
//! spawned `siege` needs (endpoint and dummy credentials on that process only).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::types::{ContainerDefinition, LaunchType};
use siege::scenario::AwsTarget;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const CLUSTER: &str = "prod";
pub const SERVICE: &str = "api";
pub const TARGET_GROUP: &str = "api";
pub const LOAD_BALANCER: &str = "prod-lb";
pub const DB_CLUSTER: &str = "prod-db";
pub const DB_WRITER: &str = "prod-db-instance-1";
pub const DB_READER: &str = "prod-db-instance-2";
pub const SECRET: &str = "prod/api/db";
pub const SECRET_VALUE: &str = r#"{"username":"app","password":"initial-password"}"#;
/// The Aurora cluster's master password at creation, the one [`SECRET_VALUE`] holds.
pub const DB_PASSWORD: &str = "initial-password";
pub const ALARM: &str = "api-5xx";
pub const UNHEALTHY_ALARM: &str = "api-unhealthy-hosts";
pub const FIS_ROLE: &str = "arn:aws:iam::123456789012:role/siege-fis";
pub const TASKS: usize = 4;

const INSTALL: &str = "moto's server is needed by the AWS tests. Install it with \
`python3 -m venv .venv && .venv/bin/pip install 'moto[server]==5.2.6'` in the repository \
(or run scripts/test, which does it), or point SIEGE_MOTO_SERVER at a moto_server executable";

/// A running moto server, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
    /// Where moto writes the requests it records once [`Moto::start_recording`] is called.
    recording: tempfile::TempDir,
    /// The end of moto's log (it logs every request to stderr), for failure messages.
    log: Arc<Mutex<Vec<u8>>>,
}

/// How much of moto's log is kept.
const LOG_TAIL: usize = 64 * 1024;

/// Reads `pipe` to its end on a thread, keeping the last [`LOG_TAIL`] bytes. moto writes a line
/// per request: a pipe nobody reads fills after a few hundred requests, and moto then blocks
/// for ever in the write, in the middle of answering.
fn drain(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
            log.extend_from_slice(&buf[..n]);
            if log.len() > LOG_TAIL {
                let cut = log.len() - LOG_TAIL;
                log.drain(..cut);
            }
        }
    });
    (log, thread)
}

impl Moto {
    /// Starts moto's server on a free loopback port and waits until it answers. Panics with how
    /// to install moto when it cannot start: these tests never skip.
    pub fn start() -> Moto {
        let bin = std::env::var_os("SIEGE_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::common::repo_root().join(".venv/bin/moto_server"));
        assert!(bin.exists(), "moto_server not found at {}. {INSTALL}", bin.display());
        let recording = tempfile::tempdir().expect("a directory for moto's recording");
        let mut cmd = Command::new(&bin);
        // SAFETY: `prctl` is async-signal-safe; nothing else runs between fork and exec. It ends
        // moto with the test even when the test process is killed (a timeout) and cannot drop it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // Port 0: moto binds a free port itself and names it in its log, in werkzeug's
        // " * Running on http://127.0.0.1:PORT" line.
        let mut child = cmd
            .args(["-H", "127.0.0.1", "-p", "0"])
            // Services report their tasks as running in their deployments, so that a forced
            // deployment can complete.
            .env("MOTO_ECS_SERVICE_RUNNING", TASKS.to_string())
            .env("MOTO_RECORDER_FILEPATH", recording.path().join("requests.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}. {INSTALL}", bin.display()));
        let (log, reader) = drain(child.stderr.take().expect("moto's stderr"));
        let mut reader = Some(reader);
        let mut port = None;
        let ready = crate::common::wait_for(Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                // Its stderr is closed now: read all of it.
                if let Some(r) = reader.take() {
                    let _ = r.join();
                }
                let err = String::from_utf8_lossy(&log.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
                panic!("moto_server exited at start ({status}): {err}\n{INSTALL}");
            }
            if port.is_none() {
                port = listening_port(&String::from_utf8_lossy(&log.lock().unwrap_or_else(|e| e.into_inner())));
            }
            http(port?, "GET", "/moto-api/", "", &[]).ok()
        });
        let Some(port) = port.filter(|_| ready.is_some()) else {
            let err = String::from_utf8_lossy(&log.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
            let _ = child.kill();
            let _ = child.wait();
            panic!("moto_server did not answer within 60s (port {port:?}): {err}\n{INSTALL}");
        };
        let moto = Moto { child, port, endpoint: format!("http://127.0.0.1:{port}"), log, recording };
        // ECS tasks in moto move one state towards STOPPED each time they are described; real
        // tasks keep running until stopped.
        moto.set_transition("ecs::task", r#"{"progression": "manual", "times": 1000000000}"#);
        moto
    }

    /// The last lines of moto's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&log);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// From now on moto records every request it is sent (see [`Moto::recorded`]).
    pub fn start_recording(&self) {
        http(self.port, "POST", "/moto-api/recorder/start-recording", "", &[]).expect("moto start-recording");
    }

    /// The form-encoded bodies of the requests moto recorded, in order, decoded into
    /// name-value pairs.
    pub fn recorded(&self) -> Vec<Vec<(String, String)>> {
        let text = std::fs::read_to_string(self.recording.path().join("requests.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|entry| {
                let body = entry["body"].as_str().unwrap_or_default();
                let bytes = if entry["body_encoded"].as_bool() == Some(true) {
                    base64_decode(body)
                } else {
                    body.as_bytes().to_vec()
                };
                form_urlencoded::parse(&bytes).into_owned().collect()
            })
            .collect()
    }

    fn set_transition(&self, model: &str, transition: &str) {
        let body = format!(r#"{{"model_name": "{model}", "transition": {transition}}}"#);
        http(
            self.port,
            "POST",
            "/moto-api/state-manager/set-transition",
            &body,
            &[("Content-Type", "application/json")],
        )
        .expect("moto set-transition");
    }

    /// SDK configuration for this server: fixed dummy credentials and the local endpoint, set on
    /// the configuration only (never in the process environment, where other tests would see it).
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(siege::backend::aws::https_client())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .timeout_config(timeouts())
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "siege-tests",
            ))
            .load()
            .await
    }

    /// A raw query-protocol call (EC2 and IAM are not dependencies of siege); returns the XML.
    /// moto routes on the credential scope and does not check the signature while auth is off.
    pub fn query(&self, service: &str, version: &str, action: &str, params: &[(&str, &str)]) -> String {
        let mut body = format!("Action={action}&Version={version}");
        for (k, v) in params {
            body.push_str(&format!("&{}={}", urlencode(k), urlencode(v)));
        }
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        http(
            self.port,
            "POST",
            "/",
            &body,
            &[("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", &auth)],
        )
        .unwrap_or_else(|e| panic!("moto {service} {action}: {e}"))
    }

    fn ec2(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.query("ec2", "2016-11-15", action, params)
    }

    /// Creates an IAM user allowed only `actions` and returns its access key; from then on moto
    /// enforces IAM on every request, as AWS does.
    pub fn limited_user(&self, name: &str, actions: &[&str]) -> (String, String) {
        self.query("iam", "2010-05-08", "CreateUser", &[("UserName", name)]);
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{}],"Resource":"*"}}]}}"#,
            actions.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(",")
        );
        self.query(
            "iam",
            "2010-05-08",
            "PutUserPolicy",
            &[("UserName", name), ("PolicyName", "siege"), ("PolicyDocument", &policy)],
        );
        let key = self.query("iam", "2010-05-08", "CreateAccessKey", &[("UserName", name)]);
        let id = xml_values(&key, "AccessKeyId").into_iter().next().expect("access key id");
        let secret = xml_values(&key, "SecretAccessKey").into_iter().next().expect("secret key");
        http(self.port, "POST", "/moto-api/reset-auth", "0", &[]).expect("enable moto auth");
        (id, secret)
    }

    /// SDK configuration with the given credentials.
    pub async fn sdk_config_as(&self, key_id: &str, secret: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(siege::backend::aws::https_client())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .timeout_config(timeouts())
            .credentials_provider(aws_sdk_sts::config::Credentials::new(key_id, secret, None, None, "siege-tests"))
            .load()
            .await
    }
}

/// A stalled call fails the test instead of hanging it.
fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder().operation_timeout(Duration::from_secs(60)).build()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in moto's (werkzeug's) start-up line " * Running on http://127.0.0.1:PORT".
fn listening_port(log: &str) -> Option<u16> {
    let rest = log.split("Running on http://127.0.0.1:").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Minimal HTTP/1.1 request to the loopback server; `Ok(body)` on a 2xx answer.
fn http(port: u16, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let status: u16 = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    if (200..300).contains(&status) { Ok(body) } else { Err(format!("HTTP {status}: {body}")) }
}

/// Standard base64 (moto's recording of a request body), padding and all.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else { continue };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Every `<tag>value</tag>` in `xml`.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open).skip(1).filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_string())).collect()
}

/// The resources of the world, with the ids moto gave them.
pub struct World {
    /// Declared first so that it stops before moto does.
    scheduler: Option<Scheduler>,
    pub config: SdkConfig,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub rds: aws_sdk_rds::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub fis: aws_sdk_fis::Client,
    pub target_group_arn: String,
    pub load_balancer_arn: String,
    pub load_balancer_dns: String,
    /// A task of the same cluster outside the service: siege must never touch it.
    pub bystander_task: String,
    pub moto: Moto,
}

impl World {
    /// Starts moto and creates the world.
    pub async fn start() -> World {
        let moto = Moto::start();
        let config = moto.sdk_config().await;
        let ecs = aws_sdk_ecs::Client::new(&config);
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
        let rds = aws_sdk_rds::Client::new(&config);
        let secrets = aws_sdk_secretsmanager::Client::new(&config);
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
        let fis = aws_sdk_fis::Client::new(&config);

        // Network: moto's default VPC and its subnets.
        let vpcs = moto.ec2("DescribeVpcs", &[("Filter.1.Name", "isDefault"), ("Filter.1.Value.1", "true")]);
        let vpc = xml_values(&vpcs, "vpcId").into_iter().next().expect("moto has a default VPC");
        let subnets = xml_values(
            &moto.ec2("DescribeSubnets", &[("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", &vpc)]),
            "subnetId",
        );
        assert!(subnets.len() >= 2, "moto's default VPC has subnets");

        // Balancer and target group.
        let lb = elb
            .create_load_balancer()
            .name(LOAD_BALANCER)
            .subnets(&subnets[0])
            .subnets(&subnets[1])
            .send()
            .await
            .expect("create load balancer");
        let lb = lb.load_balancers().first().expect("load balancer").clone();
        let tg = elb
            .create_target_group()
            .name(TARGET_GROUP)
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(8080)
            .vpc_id(&vpc)
            .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
            .send()
            .await
            .expect("create target group");
        let target_group_arn =
            tg.target_groups().first().and_then(|t| t.target_group_arn()).expect("tg arn").to_string();

        // ECS: cluster, task definition, service and its tasks, plus a bystander task.
        ecs.create_cluster().cluster_name(CLUSTER).send().await.expect("create cluster");
        ecs.register_task_definition()
            .family(SERVICE)
            .container_definitions(ContainerDefinition::builder().name("app").image("demo:latest").memory(256).build())
            .send()
            .await
            .expect("register task definition");
        ecs.create_service()
            .cluster(CLUSTER)
            .service_name(SERVICE)
            .task_definition(SERVICE)
            .desired_count(TASKS as i32)
            .launch_type(LaunchType::Fargate)
            .send()
            .await
            .expect("create service");
        run_service_tasks(&ecs, TASKS).await;
        let bystander = ecs
            .run_task()
            .cluster(CLUSTER)
            .task_definition(SERVICE)
            .launch_type(LaunchType::Fargate)
            .group("family:batch")
            .started_by("cron")
            .send()
            .await
            .expect("run bystander task");
        let bystander_task = bystander.tasks().first().and_then(|t| t.task_arn()).expect("task arn").to_string();

        // Aurora: a cluster with a writer and a replica.
        rds.create_db_cluster()
            .db_cluster_identifier(DB_CLUSTER)
            .engine("aurora-postgresql")
            .master_username("app")
            .master_user_password(DB_PASSWORD)
            .send()
            .await
            .expect("create db cluster");
        for id in [DB_WRITER, DB_READER] {
            rds.create_db_instance()
                .db_instance_identifier(id)
                .db_cluster_identifier(DB_CLUSTER)
                .engine("aurora-postgresql")
                .db_instance_class("db.r6g.large")
                .send()
                .await
                .expect("create db instance");
        }

        secrets.create_secret().name(SECRET).secret_string(SECRET_VALUE).send().await.expect("create secret");

        for (alarm, metric, threshold) in
            [(ALARM, "HTTPCode_Target_5XX_Count", 10.0), (UNHEALTHY_ALARM, "UnHealthyHostCount", 1.0)]
        {
            cloudwatch
                .put_metric_alarm()
                .alarm_name(alarm)
                .namespace("AWS/ApplicationELB")
                .metric_name(metric)
                .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
                .period(60)
                .evaluation_periods(1)
                .threshold(threshold)
                .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
                .send()
                .await
                .expect("create alarm");
        }

        let world = World {
            config,
            ecs,
            elb,
            rds,
            secrets,
            cloudwatch,
            fis,
            target_group_arn,
            load_balancer_arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
            load_balancer_dns: lb.dns_name().unwrap_or_default().to_string(),
            bystander_task,
            scheduler: None,
            moto,
        };
        world.sync_targets().await;
        world
    }

    /// The scenario target for this world (what `target: aws:` in scenarios/aws/*.yaml names:
    /// the target group and balancer by name), with the endpoint of this moto.
    pub fn target(&self) -> AwsTarget {
        AwsTarget {
            region: Some(REGION.into()),
            account: Some(ACCOUNT.into()),
            cluster: CLUSTER.into(),
            service: SERVICE.into(),
            target_group: Some(TARGET_GROUP.into()),
            load_balancer: Some(LOAD_BALANCER.into()),
            db_cluster: Some(DB_CLUSTER.into()),
            secret: Some(SECRET.into()),
            url: None,
            endpoint: Some(self.moto.endpoint.clone()),
            fis_role: Some(FIS_ROLE.into()),
            max_select: 0.5,
            allow_full_outage: false,
        }
    }

    /// The `target:` block of a scenario file for this world (what scenarios/aws/*.yaml name),
    /// pointing at this moto with `endpoint:`.
    pub fn target_yaml(&self) -> String {
        format!(
            "target:\n  aws:\n    region: {REGION}\n    account: \"{ACCOUNT}\"\n    cluster: {CLUSTER}\n    service: {SERVICE}\n    \
             target_group: {TARGET_GROUP}\n    load_balancer: {LOAD_BALANCER}\n    db_cluster: {DB_CLUSTER}\n    \
             secret: {SECRET}\n    fis_role: {FIS_ROLE}\n    endpoint: {}\n",
            self.moto.endpoint
        )
    }

    /// Environment for a spawned `siege` talking to this moto (set with `Command::envs`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.moto.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Starts the scheduler thread: a stopped service task is replaced `delay` later.
    pub fn start_scheduler(&mut self, delay: Duration) {
        self.scheduler = Some(Scheduler::start(self.config.clone(), self.target_group_arn.clone(), delay));
    }

    /// Every task of the cluster (moto's `ListTasks` ignores the service filter), described.
    pub async fn all_tasks(&self) -> Vec<aws_sdk_ecs::types::Task> {
        all_tasks(&self.ecs).await.unwrap_or_else(|e| panic!("{e}\nmoto's log:\n{}", self.moto.log_tail(20)))
    }

    /// ARNs of the service's running tasks.
    pub async fn running_service_tasks(&self) -> Vec<String> {
        running_service_tasks(&self.ecs)
            .await
            .unwrap_or_else(|e| panic!("{e}\nmoto's log:\n{}", self.moto.log_tail(20)))
    }

    /// Registers the running service tasks with the target group and deregisters the others,
    /// as the ALB's ECS integration would.
    pub async fn sync_targets(&self) {
        sync_targets(&self.ecs, &self.elb, &self.target_group_arn)
            .await
            .unwrap_or_else(|e| panic!("{e}\nmoto's log:\n{}", self.moto.log_tail(20)));
    }

    /// Runs `n` more tasks in the service (the scheduler, when started, keeps it at [`TASKS`]).
    pub async fn add_service_tasks(&self, n: usize) {
        run_service_tasks(&self.ecs, n).await;
        self.sync_targets().await;
    }

    /// Sets the alarm's state, as CloudWatch would when its metric breaches.
    pub async fn set_alarm(&self, state: aws_sdk_cloudwatch::types::StateValue) {
        self.cloudwatch
            .set_alarm_state()
            .alarm_name(ALARM)
            .state_value(state)
            .state_reason("set by the test")
            .send()
            .await
            .expect("set alarm state");
    }

    /// The secret's AWSCURRENT value and version id.
    pub async fn secret_current(&self) -> (String, String) {
        // The stage is named because moto's default version does not follow
        // UpdateSecretVersionStage (AWS's does: the default is AWSCURRENT).
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(SECRET)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .expect("get secret value");
        (out.secret_string().unwrap_or_default().to_string(), out.version_id().unwrap_or_default().to_string())
    }

    /// The secret's versions and their staging labels (sorted).
    pub async fn secret_labels(&self) -> HashMap<String, Vec<String>> {
        let out = self.secrets.describe_secret().secret_id(SECRET).send().await.expect("describe secret");
        let mut labels = out.version_ids_to_stages().cloned().unwrap_or_default();
        labels.values_mut().for_each(|v| v.sort());
        labels
    }

    /// The master password of the Aurora cluster as moto holds it: the one it was created with,
    /// or the last one a `ModifyDBCluster` set since [`Moto::start_recording`]. moto keeps the
    /// password but gives it to no API (its getter raises, which also breaks
    /// `/moto-api/data.json` once a cluster exists), so it is read from the requests moto took
    /// (moto refuses a password it would not store, shorter than 8 characters).
    pub fn db_password(&self) -> String {
        self.moto
            .recorded()
            .into_iter()
            .filter(|form| {
                let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
                has("Action", "ModifyDBCluster") && has("DBClusterIdentifier", DB_CLUSTER)
            })
            .filter_map(|form| form.into_iter().find(|(k, _)| k == "MasterUserPassword").map(|(_, v)| v))
            .next_back()
            .unwrap_or_else(|| DB_PASSWORD.to_string())
    }

    /// The service's primary deployment.
    pub async fn primary_deployment(&self) -> String {
        let out =
            self.ecs.describe_services().cluster(CLUSTER).services(SERVICE).send().await.expect("describe service");
        let service = out.services().first().expect("the service").clone();
        let primary = service.deployments().iter().find(|d| d.status() == Some("PRIMARY")).cloned();
        primary.and_then(|d| d.id().map(str::to_string)).unwrap_or_default()
    }

    /// The Aurora cluster's writer instance.
    pub async fn db_writer(&self) -> Option<String> {
        let out = self
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(DB_CLUSTER)
            .send()
            .await
            .expect("describe db clusters");
        out.db_clusters()
            .first()?
            .db_cluster_members()
            .iter()
            .find(|m| m.is_cluster_writer() == Some(true))
            .and_then(|m| m.db_instance_identifier().map(str::to_string))
    }
}

async fn run_service_tasks(ecs: &aws_sdk_ecs::Client, count: usize) {
    if count == 0 {
        return;
    }
    let deployment = ecs
        .describe_services()
        .cluster(CLUSTER)
        .services(SERVICE)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.services().first().and_then(|s| s.deployments().first()).and_then(|d| d.id().map(str::to_string))
        })
        .unwrap_or_else(|| "ecs-svc/0".into());
    ecs.run_task()
        .cluster(CLUSTER)
        .task_definition(SERVICE)
        .count(count as i32)
        .launch_type(LaunchType::Fargate)
        .group(format!("service:{SERVICE}"))
        .started_by(deployment)
        .send()
        .await
        .expect("run service tasks");
}

/// Every task of the cluster, described. An error is returned, never read as "no tasks": the
/// scheduler would start a whole service's worth of extra tasks, a test would see none stopped.
async fn all_tasks(ecs: &aws_sdk_ecs::Client) -> Result<Vec<aws_sdk_ecs::types::Task>, String> {
    let list = ecs.list_tasks().cluster(CLUSTER).send().await.map_err(|e| format!("ListTasks: {e:?}"))?;
    let arns = list.task_arns().to_vec();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let out = ecs
        .describe_tasks()
        .cluster(CLUSTER)
        .set_tasks(Some(arns))
        .send()
        .await
        .map_err(|e| format!("DescribeTasks: {e:?}"))?;
    Ok(out.tasks().to_vec())
}

async fn running_service_tasks(ecs: &aws_sdk_ecs::Client) -> Result<Vec<String>, String> {
    let group = format!("service:{SERVICE}");
    Ok(all_tasks(ecs)
        .await?
        .into_iter()
        .filter(|t| t.group() == Some(group.as_str()) && t.last_status() == Some("RUNNING"))
        .filter_map(|t| t.task_arn().map(str::to_string))
        .collect())
}

/// A stable private IP per task, so that the target group tracks the running tasks.
fn task_ip(arn: &str) -> String {
    let h = arn.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.0.{}.{}", (h >> 8) % 250 + 1, h % 250 + 2)
}

/// Registers the running service tasks with the target group and deregisters the others.
async fn sync_targets(
    ecs: &aws_sdk_ecs::Client,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    tg: &str,
) -> Result<(), String> {
    use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
    let want: HashSet<String> = running_service_tasks(ecs).await?.iter().map(|a| task_ip(a)).collect();
    let health = elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .map_err(|e| format!("DescribeTargetHealth: {e:?}"))?;
    let have: HashSet<String> = health
        .target_health_descriptions()
        .iter()
        .filter(|d| d.target_health().and_then(|h| h.state()).map(|s| s.as_str()) == Some("healthy"))
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
        .collect();
    let target = |ip: &String| TargetDescription::builder().id(ip).port(8080).build();
    let add: Vec<_> = want.difference(&have).map(target).collect();
    let remove: Vec<_> = have.difference(&want).map(target).collect();
    if !add.is_empty() {
        elb.register_targets()
            .target_group_arn(tg)
            .set_targets(Some(add))
            .send()
            .await
            .map_err(|e| format!("RegisterTargets: {e:?}"))?;
    }
    if !remove.is_empty() {
        elb.deregister_targets()
            .target_group_arn(tg)
            .set_targets(Some(remove))
            .send()
            .await
            .map_err(|e| format!("DeregisterTargets: {e:?}"))?;
    }
    Ok(())
}

/// The background "ECS scheduler": keeps the service at its desired count by running a
/// replacement `delay` after a task stops, and keeps the target group in step.
struct Scheduler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scheduler {
    fn start(config: SdkConfig, tg: String, delay: Duration) -> Scheduler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("scheduler runtime");
            rt.block_on(async move {
                let ecs = aws_sdk_ecs::Client::new(&config);
                let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
                // When each missing task was first noticed.
                let mut missing_since: HashMap<usize, Instant> = HashMap::new();
                while !flag.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // A failed call is tried again on the next round, never read as "no tasks".
                    let Ok(running) = running_service_tasks(&ecs).await else { continue };
                    let missing = TASKS.saturating_sub(running.len());
                    missing_since.retain(|k, _| *k < missing);
                    for k in 0..missing {
                        missing_since.entry(k).or_insert_with(Instant::now);
                    }
                    let due = missing_since.values().filter(|t| t.elapsed() >= delay).count();
                    if due > 0 {
                        run_service_tasks(&ecs, due).await;
                        missing_since.clear();
                    }
                    let _ = sync_targets(&ecs, &elb, &tg).await;
                }
            });
        });
        Scheduler { stop, thread: Some(thread) }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
