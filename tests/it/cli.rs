//! The `herald` subcommands that read a config: `check-config`, `trigger` and `health`.

use std::process::Command;

use crate::common::*;
use crate::spawned::BIN;

#[test]
fn check_config_accepts_the_example() {
    let out = Command::new(BIN)
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example"),
        ])
        .env("HERALD_APP_SECRET", "s3cret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 app(s)"));
}

#[test]
fn check_config_reports_every_problem_and_exits_1() {
    let file = write_config(
        "bad.toml",
        r#"[server]
port = "sixty"
activity_timeout = 0
colour = "blue"

[server.tls]
cert = "/etc/herald/tls/cert.pem"
kee = "/etc/herald/tls/key.pem"

[[apps]]
id = "1"
key = "k"
secret = "${HERALD_TEST_UNSET_VAR}"

[[apps.webhooks]]
url = "https://backend.example.com/hooks"
evnts = ["member_added"]

[[apps]]
id = "1"
key = "k2"
secret = "s"
"#,
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env_remove("HERALD_TEST_UNSET_VAR")
        .env_remove("HERALD_PORT")
        .env_remove("HERALD_METRICS_PORT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: 8 problem(s) in the configuration:
  - [server] port: invalid type: string \"sixty\", expected u16
  - [server.tls]: missing key 'key'
  - [server.tls]: unknown key 'kee'
  - [server]: unknown key 'colour'
  - [[apps]] #1 secret: environment variable HERALD_TEST_UNSET_VAR is not set
  - [[apps]] #1 [[apps.webhooks]] #1: unknown key 'evnts'
  - [server] activity_timeout: must be at least 1 second
  - [[apps]] #2 id: \"1\" is already used by [[apps]] #1
",
            file.display()
        )
    );
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/herald.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A config with app 1 whose server port is `port` and whose dashboard needs a password from
/// an environment variable nobody sets: `trigger` and `health` do not use the dashboard.
fn config_with_unset_dashboard_password(name: &str, port: u16) -> std::path::PathBuf {
    write_config(
        name,
        &format!(
            r#"[server]
port = {port}

[dashboard]
enabled = true
password = "${{HERALD_TEST_UNSET_DASHBOARD_PASSWORD:?set the dashboard password}}"

[[apps]]
id = "1"
key = "key1"
secret = "secret1"
"#
        ),
    )
}

#[tokio::test]
async fn trigger_checks_only_the_server_and_the_app_it_uses() {
    let t = start().await;
    let file = config_with_unset_dashboard_password("trigger-only.toml", t.addr.port());
    let (mut ws, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, "smoke").await;
    let out = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            Command::new(BIN)
                .args(["trigger", "--config"])
                .arg(&file)
                .args(["--channel", "smoke", "--event", "hello", "--data", "hi"])
                .env_remove("HERALD_TEST_UNSET_DASHBOARD_PASSWORD")
                .env_remove("HERALD_PORT")
                .env_remove("HERALD_HOST")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 {}\n");
    assert_eq!(
        recv(&mut ws).await,
        serde_json::json!({"event": "hello", "channel": "smoke", "data": "hi"})
    );
    // serving the same file does need the password
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env_remove("HERALD_TEST_UNSET_DASHBOARD_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: 1 problem(s) in the configuration:
  - [dashboard] password: environment variable HERALD_TEST_UNSET_DASHBOARD_PASSWORD is not set: set the dashboard password
",
            file.display()
        )
    );
    // a problem in what trigger uses is still reported
    let broken = write_config(
        "trigger-broken.toml",
        "[[apps]]\nid = \"1\"\nkey = \"key1\"\n",
    );
    let out = Command::new(BIN)
        .args(["trigger", "--config"])
        .arg(&broken)
        .args(["--channel", "smoke", "--event", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: 1 problem(s) in the configuration:\n  - [[apps]] #1: missing key 'secret'\n",
            broken.display()
        )
    );
}

/// Runs `herald health` with `args` and the given environment; (exit code, stdout, stderr).
fn health(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("health")
        .args(args)
        .env_remove("HERALD_PORT")
        .env_remove("HERALD_HOST")
        .env_remove("HERALD_TEST_UNSET_DASHBOARD_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn health_probes_the_configured_port() {
    let t = start().await;
    let port = t.addr.port();
    assert_ne!(port, 6001);
    let ok = (
        Some(0),
        format!("http://127.0.0.1:{port}/health: 200 {{\"ok\":true}}\n"),
        String::new(),
    );
    // the port from the config file (whose dashboard password is not set: health needs [server] only)
    let file = config_with_unset_dashboard_password("health.toml", port);
    let file = file.to_str().unwrap();
    let probe = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            health(&args, &env)
        })
    };
    assert_eq!(
        probe(vec!["--config".into(), file.into()], vec![])
            .await
            .unwrap(),
        ok
    );
    // HERALD_PORT and --port override the file, as for serve
    let elsewhere = config_with_unset_dashboard_password("health-elsewhere.toml", 1);
    let elsewhere = elsewhere.to_str().unwrap().to_string();
    assert_eq!(
        probe(
            vec!["--config".into(), elsewhere.clone()],
            vec![("HERALD_PORT", port.to_string())]
        )
        .await
        .unwrap(),
        ok
    );
    assert_eq!(
        probe(
            vec![
                "--config".into(),
                elsewhere,
                "--port".into(),
                port.to_string()
            ],
            vec![]
        )
        .await
        .unwrap(),
        ok
    );
    // without a config: the development defaults and the environment
    assert_eq!(
        probe(vec![], vec![("HERALD_PORT", port.to_string())])
            .await
            .unwrap(),
        ok
    );
    // nothing listening there: exit code 1 and the reason
    let free = crate::redis_server::free_port();
    let (code, out, err) = probe(vec!["--port".into(), free.to_string()], vec![])
        .await
        .unwrap();
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        err.starts_with(&format!("http://127.0.0.1:{free}/health: ")),
        "{err}"
    );
}

#[tokio::test]
async fn json_logs_open_file_limit_and_the_trigger_command() {
    let file = write_config("t.toml", "");
    let port = crate::redis_server::free_port();
    let toml = format!(
        "[metrics]\nenabled = false\n[server]\nport = {port}\ndrain_seconds = 1\n[[apps]]\nid = \"1\"\nkey = \"key1\"\nsecret = \"secret1\"\n"
    );
    std::fs::write(&file, toml).unwrap();
    let (mut child, mut rx) =
        crate::spawned::logged(&["--log-format", "json"], &file, Some("info"));
    // Every log line is a JSON object; one says what the open-file limit is.
    let limit = tokio::time::timeout(WAIT, async {
        loop {
            let line = rx.recv().await.expect("log line");
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            if v["fields"]["message"] == "open-file limit" {
                return v["fields"]["open_files"].as_u64().unwrap();
            }
        }
    })
    .await
    .expect("open-file limit logged");
    assert!(limit >= 1024, "{limit}");
    let addr = wait_listening(port).await;
    let (mut ws, _) = connect(addr, "key1").await;
    subscribe_public(&mut ws, "smoke").await;
    let out = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            Command::new(BIN)
                .args(["trigger", "--config"])
                .arg(&file)
                .args([
                    "--channel",
                    "smoke",
                    "--event",
                    "ping",
                    "--data",
                    "{\"ok\":true}",
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200 {}");
    assert_eq!(
        recv(&mut ws).await,
        serde_json::json!({"event": "ping", "channel": "smoke", "data": "{\"ok\":true}"})
    );
    // a wrong channel name is reported with the server's answer and exit code 1
    let out = Command::new(BIN)
        .args(["trigger", "--config"])
        .arg(&file)
        .args(["--channel", "bad name", "--event", "e"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("400 "));
    let _ = Command::new("kill")
        .args(["-TERM", &child.child().id().to_string()])
        .status();
    let mut child = child.take();
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap());
    assert_eq!(
        tokio::time::timeout(WAIT, exit)
            .await
            .unwrap()
            .unwrap()
            .code(),
        Some(0)
    );
}

#[test]
fn compose_example_config_passes_check_config() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/herald.toml");
    let out = Command::new(BIN)
        .args(["check-config", file])
        .env("HERALD_APP_SECRET", "s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the secret is required, with the message from the file
    let out = Command::new(BIN)
        .args(["check-config", file])
        .env_remove("HERALD_APP_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set HERALD_APP_SECRET"));
    // the compose file mounts exactly this config where the image reads it
    let compose = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker-compose.example.yml"
    ))
    .unwrap();
    assert!(compose.contains("./deploy/herald.toml:/etc/herald/config.toml"));
    // every service restarts; the nodes wait for a healthy Redis and nginx for healthy nodes
    // (tests/docker/smoke runs the file for real where a Docker daemon can run)
    assert_eq!(compose.matches("restart: unless-stopped").count(), 3);
    assert_eq!(compose.matches("condition: service_healthy").count(), 3);
    assert!(compose.contains(r#"test: ["CMD", "redis-cli", "ping"]"#));
    assert!(compose.contains("stop_grace_period: 15s"));
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(dockerfile.contains("/etc/herald/config.toml") && dockerfile.contains("USER herald"));
    // the health check follows the configured port: it asks herald itself
    let healthcheck: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("HEALTHCHECK"))
        .collect();
    assert_eq!(
        healthcheck,
        [
            r#"HEALTHCHECK --interval=10s --timeout=5s CMD ["herald", "health", "--config", "/etc/herald/config.toml"]"#
        ]
    );
}
