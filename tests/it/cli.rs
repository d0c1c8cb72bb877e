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
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
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
async fn no_config_serves_the_development_app_and_exits_0_on_sigterm() {
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
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (_, code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 4200);
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let out = tokio::time::timeout(WAIT, exit)
        .await
        .expect("exits in time")
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("development app"), "{err}");
    assert!(
        !err.contains("app-secret"),
        "the secret is printed once on stdout, never logged"
    );
}
