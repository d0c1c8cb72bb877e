//! The app store's command line: `herald app-store init` and `herald apps
//! add|list|set|disable|remove` on real PostgreSQL and MariaDB, with a running server picking
//! up what they change, and the store's errors as the CLI shows them.

use std::time::Duration;

use crate::app_store_db::{Kind, TestDb};
use crate::common::*;

/// Runs the herald binary with these arguments; returns (success, stdout, stderr).
fn herald_cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .output()
        .expect("herald runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `herald app-store init` creates herald's schema; `herald apps add|list|set|disable|remove`
/// manage it; a running server uses an added app within the cache period.
async fn cli(kind: Kind) {
    let db = TestDb::create(kind).await;
    let driver = if kind == Kind::Pg {
        "postgres"
    } else {
        "mysql"
    };
    // the password part is interpolated like every config value
    let file = write_config(
        &format!("store-{}.toml", db.name),
        &format!(
            "[app_store]\ndriver = \"{driver}\"\nurl = \"{}\"\ncache_ttl_seconds = 1\nnegative_ttl_seconds = 1\n",
            db.url().replace("@", "${HERALD_TEST_NO_PASSWORD:-}@")
        ),
    );
    let cfg = file.to_str().unwrap();
    let (ok, out, err) = herald_cli(&["app-store", "init", "--config", cfg]);
    assert!(ok, "{out}{err}");
    // idempotent
    assert!(herald_cli(&["app-store", "init", "--config", cfg]).0);
    let (ok, out, err) = herald_cli(&[
        "apps",
        "add",
        "--config",
        cfg,
        "--id",
        "501",
        "enable_client_messages=1",
    ]);
    assert!(ok, "{out}{err}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)?
                    .trim()
                    .strip_prefix('=')
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{name} in {out}"))
    };
    let (key, secret) = (field("key"), field("secret"));
    assert_eq!(key.len(), 20);
    assert_eq!(secret.len(), 32);
    let (ok, list, _) = herald_cli(&["apps", "list", "--config", cfg]);
    assert!(ok && list.contains("501") && list.contains(&key), "{list}");
    assert!(!list.contains(&secret), "list never shows secrets");
    // bad input is refused with a reason
    let (ok, _, err) = herald_cli(&[
        "apps",
        "set",
        "--config",
        cfg,
        "501",
        "max_connections=lots",
    ]);
    assert!(!ok && err.contains("max_connections"), "{err}");
    let (ok, _, err) = herald_cli(&["apps", "set", "--config", cfg, "nope", "max_connections=1"]);
    assert!(!ok && err.contains("no app with id"), "{err}");
    let (ok, out, err) = herald_cli(&["apps", "set", "--config", cfg, "501", "max_connections=1"]);
    assert!(ok, "{out}{err}");

    let mut c = config();
    let mut st = db.store_config();
    st.cache_ttl_seconds = 1;
    st.negative_ttl_seconds = 1;
    c.app_store = Some(st);
    let s = start_with(c).await;
    let (mut ws, _) = connect(s.addr, &key).await;
    expect_refused(s.addr, &format!("/app/{key}?protocol=7"), 4004).await;
    let (ok, out, err) = herald_cli(&["apps", "disable", "--config", cfg, "501"]);
    assert!(ok, "{out}{err}");
    let (_, code, _) = expect_close_within(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(code, 4003);
    let (ok, out, err) = herald_cli(&["apps", "remove", "--config", cfg, "501"]);
    assert!(ok, "{out}{err}");
    let (ok, list, _) = herald_cli(&["apps", "list", "--config", cfg]);
    assert!(ok && !list.contains("501"), "{list}");
    s.server.shutdown().await;
}

#[tokio::test]
async fn cli_manages_apps_on_postgres() {
    cli(Kind::Pg).await;
}

#[tokio::test]
async fn cli_manages_apps_on_mariadb() {
    cli(Kind::Maria).await;
}

/// The store's errors never show the URL's password, in the CLI's messages as in the server's
/// log (both print the same error): a login the database refuses (MariaDB's root has no
/// password here), a port nobody listens on, a host that does not resolve and a URL that does
/// not parse.
#[test]
fn store_errors_do_not_show_the_password() {
    const PW: &str = "Zq8-not-shown-Pw";
    let cases = [
        ("mysql", format!("mysql://root:{PW}@127.0.0.1:3306/mysql")),
        (
            "postgres",
            format!("postgres://postgres:{PW}@127.0.0.1:1/postgres"),
        ),
        (
            "mysql",
            format!("mysql://root:{PW}@herald-test.invalid:3306/x"),
        ),
        (
            "postgres",
            format!("postgres://u:{PW}@127.0.0.1:notaport/db"),
        ),
    ];
    for (i, (driver, url)) in cases.iter().enumerate() {
        let file = write_config(
            &format!("store-password-{i}-{}.toml", std::process::id()),
            &format!("[app_store]\ndriver = \"{driver}\"\nurl = \"{url}\"\ntimeout_ms = 2000\n"),
        );
        let (ok, out, err) = herald_cli(&["apps", "list", "--config", file.to_str().unwrap()]);
        assert!(!ok, "{url}: listed apps: {out}");
        assert!(!err.trim().is_empty(), "{url}: no error shown");
        assert!(
            !out.contains(PW) && !err.contains(PW),
            "{url}: the password shows: {out}{err}"
        );
    }
}
