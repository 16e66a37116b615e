//! Integration tests: an AWS endpoint that does not answer (a port that accepts connections and
//! never replies, a closed port) makes `siege plan` and `siege run` stop with a failed
//! precondition (exit 4) that names the endpoint, in bounded time, with nothing changed.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// A minimal AWS scenario whose calls go to `endpoint`.
fn scenario(dir: &Path, endpoint: Option<&str>) -> std::path::PathBuf {
    let endpoint = endpoint.map(|e| format!("    endpoint: {e}\n")).unwrap_or_default();
    let yaml = format!(
        "name: unreachable\ntarget:\n  aws:\n    region: us-east-1\n    account: \"123456789012\"\n    cluster: prod\n\
         \x20   service: api\n    url: http://127.0.0.1:9\n{endpoint}\
         load: {{ url: /, rate: 10/s, duration: 30s }}\nsteady_state: {{ error_rate: \"< 1%\" }}\n\
         faults: [ {{ type: task-kill, at: 10s, select: 1 }} ]\nrecovery: {{ within: 10s, hold: 2s }}\n"
    );
    let path = dir.join("unreachable.yaml");
    std::fs::write(&path, yaml).expect("write scenario");
    path
}

/// `siege COMMAND FILE` with test credentials and nothing from the user's AWS setup, and the
/// time it took.
fn siege(home: &Path, command: &str, file: &Path, env_endpoint: Option<&str>) -> (Output, Duration) {
    let mut cmd = crate::common::siege();
    cmd.env("SIEGE_HOME", home)
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .arg(command)
        .arg(file);
    if command == "run" {
        cmd.arg("--reports").arg(home.join("reports"));
    }
    if let Some(e) = env_endpoint {
        cmd.env("AWS_ENDPOINT_URL", e);
    }
    let started = Instant::now();
    let out = cmd.output().expect("siege");
    (out, started.elapsed())
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn an_aws_endpoint_on_a_closed_port_is_a_failed_precondition_naming_it() {
    let home = tempfile::tempdir().expect("tempdir");
    // Nothing listens on it, and nothing can start to while the test holds it.
    let closed = crate::common::closed_port();
    let endpoint = format!("http://127.0.0.1:{}", closed.port);
    let file = scenario(home.path(), Some(&endpoint));
    for command in ["plan", "run"] {
        let (out, took) = siege(home.path(), command, &file, None);
        let text = text(&out);
        assert_eq!(out.status.code(), Some(4), "{command}: {text}");
        assert!(text.contains(&format!("no answer from {endpoint} (target.aws.endpoint)")), "{command}: {text}");
        assert!(text.contains("cannot reach the AWS endpoint"), "{command}: {text}");
        assert!(!text.contains("internal error"), "{command}: {text}");
        assert!(took < Duration::from_secs(60), "{command} took {took:?}");
    }
    // The same endpoint from the environment is named as coming from there.
    let file = scenario(home.path(), None);
    let (out, _) = siege(home.path(), "plan", &file, Some(&endpoint));
    let text = text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains(&format!("no answer from {endpoint} (AWS_ENDPOINT_URL)")), "{text}");
}

#[test]
fn an_aws_endpoint_that_never_answers_is_a_failed_precondition_in_bounded_time() {
    // Accepts connections (the kernel does, from its backlog) and never replies.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let home = tempfile::tempdir().expect("tempdir");
    let file = scenario(home.path(), Some(&endpoint));
    for command in ["plan", "run"] {
        let (out, took) = siege(home.path(), command, &file, None);
        let text = text(&out);
        assert_eq!(out.status.code(), Some(4), "{command}: {text}");
        assert!(text.contains(&format!("no answer from {endpoint} (target.aws.endpoint)")), "{command}: {text}");
        assert!(took < Duration::from_secs(90), "{command} took {took:?}");
    }
    drop(silent);
}
