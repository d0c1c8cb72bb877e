use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "APP_SECRET" => Some("from-env".into()),
        _ => None,
    }
}

#[test]
fn full_file_parses() {
    let text = r#"
        [server]
        host = "0.0.0.0"
        port = 7000
        activity_timeout = 30
        [limits]
        max_batch_events = 20
        [[apps]]
        id = "1"
        key = "k1"
        secret = "${APP_SECRET}"
        enable_client_messages = true
        max_connections = 500
        [apps.limits]
        client_events_per_second = 5
        [[apps]]
        id = "2"
        key = "k2"
        secret = "${MISSING:-fallback}"
        enabled = false
    "#;
    let c = Config::from_toml(text, &env).unwrap();
    assert_eq!(c.server.host, "0.0.0.0");
    assert_eq!(c.server.port, 7000);
    assert_eq!(c.server.activity_timeout, 30);
    assert_eq!(c.server.pong_timeout, 30);
    assert_eq!(c.limits.max_batch_events, 20);
    assert_eq!(c.limits.max_channels_per_trigger, 100);
    assert_eq!(c.apps[0].secret, "from-env");
    assert_eq!(c.apps[0].max_connections, Some(500));
    assert_eq!(
        c.limits.merged(&c.apps[0].limits).client_events_per_second,
        5
    );
    assert_eq!(c.limits.merged(&c.apps[0].limits).max_batch_events, 20);
    assert!(c.apps[0].enable_client_messages);
    assert_eq!(c.apps[1].secret, "fallback");
    assert!(!c.apps[1].enabled);
    assert!(c.apps[1].enabled != c.apps[0].enabled);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        bogus = 1
        [server]
        activity_timeout = 0
        prot = 5
        [[apps]]
        id = "1"
        key = "k"
        secret = "${NOPE}"
        [[apps]]
        id = "1"
        key = "k"
        secret = "s"
        [[apps]]
        id = "3"
    "#;
    let err = Config::from_toml(text, &env).unwrap_err();
    let all = err.problems.join("\n");
    for needle in [
        "NOPE is not set",
        "unknown top-level key 'bogus'",
        "[server]",
        "[[apps]] #3",
        "duplicate app id",
        "duplicate app key",
        "secret must not be empty",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn env_overrides_host_and_port() {
    let text = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
    let e = |n: &str| match n {
        "HERALD_HOST" => Some("0.0.0.0".to_string()),
        "HERALD_PORT" => Some("7777".to_string()),
        _ => None,
    };
    let c = Config::from_toml(text, &e).unwrap();
    assert_eq!((c.server.host.as_str(), c.server.port), ("0.0.0.0", 7777));
    let bad = |n: &str| (n == "HERALD_PORT").then(|| "x".to_string());
    assert!(Config::from_toml(text, &bad).unwrap_err().problems[0].contains("HERALD_PORT"));
}

#[test]
fn invalid_toml_and_no_apps() {
    assert!(Config::from_toml("[server", &env).unwrap_err().problems[0].starts_with("invalid TOML"));
    assert_eq!(
        Config::from_toml("", &env).unwrap_err().problems,
        vec!["no [[apps]] configured"]
    );
}

#[test]
fn development_default_is_valid_and_debug_hides_secret() {
    let c = Config::development();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(
        (c.apps[0].id.as_str(), c.apps[0].key.as_str()),
        ("app-id", "app-key")
    );
    assert_eq!((c.server.host.as_str(), c.server.port), ("127.0.0.1", 6001));
    assert!(!format!("{c:?}").contains("app-secret"));
}

#[test]
fn example_file_is_valid() {
    let text = include_str!("../../config.toml.example");
    let e = |n: &str| match n {
        "HERALD_APP_SECRET" => Some("s".to_string()),
        _ => None,
    };
    Config::from_toml(text, &e).unwrap();
}
