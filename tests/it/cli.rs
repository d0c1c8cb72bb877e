//! The `herald` binary: development defaults, signals, and `check-config`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

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
    let file = write_config("bad.toml", "");
    std::fs::write(
        &file,
        "[server]\nactivity_timeout = 0\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"${HERALD_TEST_UNSET_VAR}\"\n[[apps]]\nid = \"1\"\nkey = \"k2\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .env_remove("HERALD_TEST_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "HERALD_TEST_UNSET_VAR is not set",
        "activity_timeout",
        "duplicate app id",
        "secret must not be empty",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/herald.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn no_config_serves_the_development_app_and_a_second_sigint_exits_at_once() {
    let mut child = Command::new(BIN)
        .args(["--port", "0"])
        .env_remove("HERALD_HOST")
        .env_remove("HERALD_PORT")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(4)
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(WAIT, lines)
        .await
        .expect("banner in time")
        .unwrap();
    let addr: std::net::SocketAddr = lines[0]
        .strip_prefix("herald listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("banner: {lines:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback());
    assert_eq!(
        lines[1..],
        [
            "  app_id:  app-id",
            "  key:     app-key",
            "  secret:  app-secret"
        ]
    );
    let (mut ws, _) = connect(addr, "app-key").await;
    subscribe_public(&mut ws, "hello").await;
    let r = api_as(
        addr,
        "app-key",
        "app-secret",
        "POST",
        "/apps/app-id/events",
        &[],
        br#"{"name":"e","channel":"hello","data":"hi"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(recv(&mut ws).await["data"], "hi");
    // SIGINT starts a drain; a second SIGINT exits at once.
    let kill = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    kill("-INT");
    let ready = tokio::time::timeout(WAIT, async {
        loop {
            if request(addr, "GET", "/ready", b"", &[]).await.status == 503 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    ready.await.expect("not ready once draining");
    kill("-INT");
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let out = tokio::time::timeout(WAIT, exit)
        .await
        .expect("exits at once")
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("development app"), "{err}");
    assert!(
        !err.contains("app-secret"),
        "the secret is printed once on stdout, never logged"
    );
    drop(ws);
}

#[tokio::test]
async fn sigterm_drains_gradually_with_4100_then_exits_0() {
    let file = write_config("drain.toml", "");
    let port = crate::redis_server::free_port();
    let toml = format!(
        "[metrics]\nenabled = false\n[server]\nport = {port}\ndrain_seconds = 2\n[[apps]]\nid = \"1\"\nkey = \"key1\"\nsecret = \"secret1\"\n"
    );
    std::fs::write(&file, toml).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_listening(port).await;
    assert_eq!(request(addr, "GET", "/ready", b"", &[]).await.status, 200);
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(addr, "key1").await.0);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let mut waits = Vec::new();
    for mut ws in clients {
        waits.push(tokio::spawn(async move {
            let (texts, code, _) =
                expect_close_within(&mut ws, std::time::Duration::from_secs(5)).await;
            (texts, code, std::time::Instant::now())
        }));
    }
    // While draining: not ready, REST still served, new sockets refused with 4100.
    let deadline = tokio::time::Instant::now() + WAIT;
    let r = loop {
        let r = request(addr, "GET", "/ready", b"", &[]).await;
        if r.status == 503 || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(r.status, 503, "{}", r.raw);
    assert_eq!(r.body["draining"], true);
    expect_refused(addr, "/app/key1?protocol=7", 4100).await;
    let mut closes = Vec::new();
    for w in waits {
        let (texts, code, at) = w.await.unwrap();
        assert_eq!(code, 4100, "a backoff reconnect code");
        expect_error(&texts[0], Some(4100), "reconnect after backing off");
        closes.push(at.duration_since(started));
    }
    closes.sort();
    let (first, last) = (closes[0], closes[closes.len() - 1]);
    assert!(
        last <= std::time::Duration::from_millis(3000),
        "all closed within the 2 s window (+ slack): {last:?}"
    );
    assert!(
        last - first >= std::time::Duration::from_millis(300),
        "closes are spread over the window, not at once: {closes:?}"
    );
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap());
    let code = tokio::time::timeout(WAIT, exit)
        .await
        .expect("exits after the drain")
        .unwrap();
    assert_eq!(code.code(), Some(0));
}

#[tokio::test]
async fn json_logs_open_file_limit_and_the_trigger_command() {
    let file = write_config("t.toml", "");
    let port = crate::redis_server::free_port();
    let toml = format!(
        "[metrics]\nenabled = false\n[server]\nport = {port}\ndrain_seconds = 1\n[[apps]]\nid = \"1\"\nkey = \"key1\"\nsecret = \"secret1\"\n"
    );
    std::fs::write(&file, toml).unwrap();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "--config"])
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
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
        .args(["-TERM", &child.id().to_string()])
        .status();
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
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("/etc/herald/config.toml")
            && dockerfile.contains("HEALTHCHECK")
            && dockerfile.contains("USER herald")
    );
}

#[tokio::test]
async fn sighup_reloads_apps_without_dropping_connections() {
    let file = write_config("hup.toml", "");
    let port = crate::redis_server::free_port();
    let head = format!("[metrics]\nenabled = false\n[server]\nport = {port}\n");
    let app = |id: &str, key: &str, secret: &str| {
        format!("[[apps]]\nid = \"{id}\"\nkey = \"{key}\"\nsecret = \"{secret}\"\n")
    };
    std::fs::write(&file, format!("{head}{}", app("1", "key1", "secret1"))).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, mut logs) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    wait_log(&mut logs, "herald listening").await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (mut kept, _) = connect(addr, "key1").await;
    subscribe_public(&mut kept, "kept").await;
    let hup = |child: &std::process::Child| {
        assert!(Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
    };
    // change app 1's secret and add app 2
    std::fs::write(
        &file,
        format!(
            "{head}{}{}",
            app("1", "key1", "secret1b"),
            app("2", "key2", "secret2")
        ),
    )
    .unwrap();
    hup(&child);
    wait_log(&mut logs, "configuration reloaded").await;
    let body = br#"{"name":"e","channel":"kept","data":"after reload"}"#;
    assert_eq!(
        api_as(addr, "key1", "secret1", "POST", "/apps/1/events", &[], body)
            .await
            .status,
        401
    );
    assert_eq!(
        api_as(
            addr,
            "key1",
            "secret1b",
            "POST",
            "/apps/1/events",
            &[],
            body
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut kept).await["data"], "after reload");
    let (_new_app, _) = connect(addr, "key2").await;
    // a broken file is refused and the running configuration stays
    std::fs::write(
        &file,
        format!("{head}{}{}", app("1", "key1", "x"), app("1", "key9", "y")),
    )
    .unwrap();
    hup(&child);
    let line = wait_log(&mut logs, "reload refused").await;
    assert!(line.contains("previous configuration"), "{line}");
    assert_eq!(
        api_as(
            addr,
            "key1",
            "secret1b",
            "POST",
            "/apps/1/events",
            &[],
            body
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut kept).await["data"], "after reload");
    // removing app 1 closes its sockets with 4001
    std::fs::write(&file, format!("{head}{}", app("2", "key2", "secret2"))).unwrap();
    hup(&child);
    let (texts, code, _) = expect_close(&mut kept).await;
    assert_eq!(code, 4001);
    expect_error(&texts[0], Some(4001), "Application does not exist");
    expect_refused(addr, "/app/key1?protocol=7", 4001).await;
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The next log line containing `needle` (bounded).
async fn wait_log(logs: &mut tokio::sync::mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            let line = logs.recv().await.expect("herald is running");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?}"))
}
