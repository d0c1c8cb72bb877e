//! The `herald` process: the development app and its banner, signals (drain on SIGTERM, a
//! second SIGINT, SIGHUP reload).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;
use crate::spawned::{wait_log, Spawned, BIN};

#[tokio::test]
async fn no_config_serves_the_development_app_and_a_second_sigint_exits_at_once() {
    let mut guard = Spawned::new(
        Command::new(BIN)
            .args(["--port", "0", "--metrics-port", "0"])
            .env_remove("HERALD_HOST")
            .env_remove("HERALD_PORT")
            .env_remove("HERALD_METRICS_PORT")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = guard.child().stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(6)
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(WAIT, lines)
        .await
        .expect("banner in time")
        .unwrap();
    let addr: std::net::SocketAddr = lines[0]
        .strip_prefix("herald listening on ")
        .and_then(|r| r.strip_suffix(" (development app)"))
        .unwrap_or_else(|| panic!("banner: {lines:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback());
    // the credentials, which optional features are on (all of them), and every other listener
    let metrics: std::net::SocketAddr = lines[5]
        .strip_prefix("  metrics:   http://")
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("banner: {lines:?}"))
        .parse()
        .unwrap();
    assert_eq!(
        lines[1..5],
        [
            "  app_id:    app-id",
            "  key:       app-key",
            "  secret:    app-secret",
            "  features:  client events, subscription counts, watchlist events",
        ]
    );
    assert_eq!(
        request(metrics, "GET", "/metrics", b"", &[]).await.status,
        200
    );
    let (mut ws, _) = connect(addr, "app-key").await;
    subscribe_public(&mut ws, "hello").await;
    // subscription counts are on for the development app
    assert_eq!(
        recv(&mut ws).await,
        serde_json::json!({"event": "pusher_internal:subscription_count", "channel": "hello", "data": "{\"subscription_count\":1}"})
    );
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
    let pid = guard.child().id();
    let kill = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
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
    let child = guard.take();
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
    let mut child = crate::spawned::herald(&[], &file);
    let addr = wait_listening(port).await;
    assert_eq!(request(addr, "GET", "/ready", b"", &[]).await.status, 200);
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(addr, "key1").await.0);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.child().id().to_string()])
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
    let mut child = child.take();
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap());
    let code = tokio::time::timeout(WAIT, exit)
        .await
        .expect("exits after the drain")
        .unwrap();
    assert_eq!(code.code(), Some(0));
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
    let (mut child, mut logs) = crate::spawned::logged(&[], &file, Some("info"));
    wait_log(&mut logs, "herald listening").await;
    // every listener is logged, here the metrics one being off
    let metrics = wait_log(&mut logs, "metrics:").await;
    assert!(
        metrics.ends_with(" INFO herald::banner: metrics: off"),
        "{metrics}"
    );
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
    hup(child.child());
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
    hup(child.child());
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
    hup(child.child());
    let (texts, code, _) = expect_close(&mut kept).await;
    assert_eq!(code, 4001);
    expect_error(&texts[0], Some(4001), "Application does not exist");
    expect_refused(addr, "/app/key1?protocol=7", 4001).await;
    // the guard kills it
    drop(child);
}
