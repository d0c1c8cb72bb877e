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

fn problems(text: &str) -> Vec<String> {
    Config::from_toml(text, &env).unwrap_err().problems
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
    assert_eq!(
        problems(text),
        [
            "[server]: unknown key 'prot'",
            "[[apps]] #1 secret: environment variable NOPE is not set",
            "[[apps]] #3: missing key 'key'",
            "[[apps]] #3: missing key 'secret'",
            "unknown top-level key 'bogus'",
            "[server] activity_timeout: must be at least 1 second",
            "[[apps]] #2 id: \"1\" is already used by [[apps]] #1",
            "[[apps]] #2 key: \"k\" is already used by [[apps]] #1",
        ]
    );
}

#[test]
fn a_type_error_does_not_hide_the_rest_of_its_table() {
    let text = r#"
        [server]
        port = "sixty"
        activity_timeout = 0
        colour = "blue"
        [limits]
        max_batch_events = -1
        max_event_name_len = 0
        [[apps]]
        id = "1"
        key = "k"
        secret = "s"
        enabled = "yes"
        max_connections = 0
    "#;
    assert_eq!(
        problems(text),
        [
            "[server] port: invalid type: string \"sixty\", expected u16",
            "[server]: unknown key 'colour'",
            "[limits] max_batch_events: invalid value: integer `-1`, expected usize",
            "[[apps]] #1 enabled: invalid type: string \"yes\", expected a boolean",
            "[server] activity_timeout: must be at least 1 second",
            "[limits] max_event_name_len: must be greater than 0",
        ]
    );
}

#[test]
fn nested_tables_are_reported_under_their_own_path() {
    let text = r#"
        [server.tls]
        cert = "/etc/herald/cert.pem"
        certificate = "/etc/herald/cert.pem"
        [[apps]]
        id = "1"
        key = "k"
        secret = "s"
        [apps.limits]
        max_message_bytes = 1
        max_presence_members = 0
        [[apps.webhooks]]
        url = "https://backend.example.com/hooks"
        [[apps.webhooks]]
        urll = "https://backend.example.com/hooks"
        events = ["channel_occupied", "nope"]
        [apps.webhooks.headers]
        "bad header" = "x"
        [[apps]]
        id = "2"
        key = "k2"
        secret = "s2"
        [[apps.webhooks]]
        url = "ftp://backend.example.com"
        batch_max = 0
    "#;
    assert_eq!(
        problems(text),
        [
            "[server.tls]: missing key 'key'",
            "[server.tls]: unknown key 'certificate'",
            "[[apps]] #1 [apps.limits] max_message_bytes: is node-wide: set it in [limits]",
            "[[apps]] #1 [[apps.webhooks]] #2: missing key 'url'",
            "[[apps]] #1 [[apps.webhooks]] #2: unknown key 'urll'",
            "[[apps]] #1 [[apps.webhooks]] #2 events: unknown event type \"nope\" (one of channel_occupied, channel_vacated, member_added, member_removed, client_event, cache_miss, subscription_count)",
            "[[apps]] #1 [[apps.webhooks]] #2 headers: invalid header \"bad header\"",
            "[[apps]] #1 [apps.limits] max_presence_members: must be greater than 0",
            "[[apps]] #2 [[apps.webhooks]] #1 url: must be an http:// or https:// URL",
            "[[apps]] #2 [[apps.webhooks]] #1 batch_max: must be greater than 0",
        ]
    );
}

#[test]
fn global_limit_problems_are_not_repeated_for_every_app() {
    let text = r#"
        [limits]
        max_batch_events = 0
        [[apps]]
        id = "1"
        key = "k"
        secret = "s"
        [apps.limits]
        client_events_per_second = 5
    "#;
    assert_eq!(
        problems(text),
        ["[limits] max_batch_events: must be greater than 0"]
    );
}

#[test]
fn a_command_checks_only_the_parts_it_uses() {
    let text = r#"
        [server]
        port = 7000
        [dashboard]
        enabled = true
        password = "${HERALD_DASHBOARD_PASSWORD:?set the dashboard password}"
        [metrics]
        port = "x"
        [[apps]]
        id = "1"
        key = "k"
        secret = "s"
    "#;
    let all = Config::from_toml(text, &env).unwrap_err().problems;
    assert_eq!(
        all,
        [
            "[metrics] port: invalid type: string \"x\", expected u16",
            "[dashboard] password: environment variable HERALD_DASHBOARD_PASSWORD is not set: set the dashboard password",
        ]
    );
    let c = Config::from_toml_for(text, &env, &[Part::Server, Part::Apps]).unwrap();
    assert_eq!((c.server.port, c.apps[0].id.as_str()), (7000, "1"));
    let broken_app = text.replace("secret = \"s\"", "");
    assert_eq!(
        Config::from_toml_for(&broken_app, &env, &[Part::Server, Part::Apps])
            .unwrap_err()
            .problems,
        ["[[apps]] #1: missing key 'secret'"]
    );
    assert!(Config::from_toml_for(&broken_app, &env, &[Part::Server]).is_ok());
}

#[test]
fn metrics_port_from_the_environment() {
    let text = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
    let port = |v: &'static str| move |n: &str| (n == "HERALD_METRICS_PORT").then(|| v.to_string());
    let c = Config::from_toml(text, &port("9700")).unwrap();
    assert_eq!((c.metrics.enabled, c.metrics.port), (true, 9700));
    let c = Config::from_toml(text, &port("off")).unwrap();
    assert!(!c.metrics.enabled);
    assert_eq!(
        Config::from_toml(text, &port("nine")).unwrap_err().problems,
        ["HERALD_METRICS_PORT: \"nine\" is neither a port number nor \"off\""]
    );
    let dev = Config::development_with_env(&port("off"), Part::ALL).unwrap();
    assert!(!dev.metrics.enabled);
    // a command that does not serve metrics is not refused for a bad HERALD_METRICS_PORT
    assert!(Config::development_with_env(&port("nine"), Part::ALL).is_err());
    assert!(Config::development_with_env(&port("nine"), &[Part::Server, Part::Apps]).is_ok());
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
    assert_eq!(
        Config::from_toml(text, &bad).unwrap_err().problems,
        ["HERALD_PORT=\"x\" is not a port number"]
    );
}

#[test]
fn invalid_toml_and_no_apps() {
    let not_toml = Config::from_toml("[server", &env).unwrap_err().problems;
    assert_eq!(not_toml.len(), 1);
    assert!(not_toml[0].starts_with("invalid TOML"), "{not_toml:?}");
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
    // the development app exists to try things: every optional feature is on
    let app = &c.apps[0];
    assert!(
        app.enable_client_messages && app.enable_subscription_count && app.enable_watchlist_events
    );
}

#[test]
fn example_file_is_valid() {
    let text = include_str!("../../config.toml.example");
    let e = |n: &str| match n {
        "HERALD_APP_SECRET" => Some("s".to_string()),
        _ => None,
    };
    let c = Config::from_toml(text, &e).unwrap();
    // run as is, it must not send signed requests to a stranger's host
    assert!(c.apps.iter().all(|a| a.webhooks.is_empty()));
    // every commented-out receiver key is a real one: uncommented, the file is still valid
    let uncommented = text
        .lines()
        .skip_while(|l| !l.starts_with("# [[apps.webhooks]]"))
        .take_while(|l| l.starts_with('#'))
        .filter(|l| !l.starts_with("# #"))
        .map(|l| l.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n");
    let with_receiver = text.replacen("[webhooks]", &format!("{uncommented}\n\n[webhooks]"), 1);
    let e2 = |n: &str| match n {
        "HERALD_APP_SECRET" | "HERALD_WEBHOOK_TOKEN" => Some("s".to_string()),
        _ => None,
    };
    let c = Config::from_toml(&with_receiver, &e2).unwrap();
    assert_eq!(c.apps[0].webhooks.len(), 1);
    assert_eq!(c.apps[0].webhooks[0].headers["Authorization"], "Bearer s");
}

#[test]
fn the_readme_toml_snippets_use_real_keys() {
    let readme = include_str!("../../README.md");
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 4, "{blocks:?}");
    let e = |n: &str| match n {
        "HERALD_APP_SECRET"
        | "HERALD_WEBHOOK_TOKEN"
        | "HERALD_DASHBOARD_PASSWORD"
        | "DB_PASSWORD" => Some("s".to_string()),
        _ => None,
    };
    let app = "\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
    for block in blocks {
        // a fragment is checked as part of a file with one app
        let text = if block.contains("[[apps]]") {
            block.to_string()
        } else {
            format!("{block}{app}")
        };
        match Config::from_toml(&text, &e) {
            Ok(_) => {}
            // the TLS example names files this machine does not have; nothing else may be wrong
            Err(err) => {
                assert_eq!(err.problems.len(), 1, "{block}\n{err}");
                assert!(
                    err.problems[0]
                        .starts_with("[server.tls]: cannot read certificate /etc/herald/tls/"),
                    "{block}\n{err}"
                );
            }
        }
    }
}

#[test]
fn dashboard_sample_seconds_range() {
    let app = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
    for bad in [0, 3601] {
        let text = format!("[dashboard]\nsample_seconds = {bad}\n{app}");
        assert_eq!(
            problems(&text),
            ["[dashboard] sample_seconds: must be between 1 and 3600"]
        );
    }
    let text = format!("[dashboard]\nsample_seconds = 1\n{app}");
    let c = Config::from_toml(&text, &env).unwrap();
    assert_eq!(c.dashboard.sample_seconds, 1);
    assert_eq!(DashboardConfig::default().sample_seconds, 10);
}

#[test]
fn app_store_section_with_or_without_static_apps() {
    let env = |n: &str| (n == "DB_PASSWORD").then(|| "pw".to_string());
    let text = r#"
        [app_store]
        driver = "mysql"
        url = "mysql://herald:${DB_PASSWORD}@127.0.0.1/herald"
        cache_ttl_seconds = 10
        negative_ttl_seconds = 2
    "#;
    // no [[apps]] needed with a store
    let c = Config::from_toml(text, &env).unwrap();
    let s = c.app_store.unwrap();
    assert_eq!(s.driver, StoreDriver::Mysql);
    assert_eq!(s.url, "mysql://herald:pw@127.0.0.1/herald");
    assert_eq!(
        (
            s.table.as_str(),
            s.cache_ttl_seconds,
            s.negative_ttl_seconds
        ),
        ("apps", 10, 2)
    );
    assert!(!format!("{s:?}").contains("pw"), "the URL is redacted");
    let both = format!("{text}\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n");
    let c = Config::from_toml(&both, &env).unwrap();
    assert_eq!((c.apps.len(), c.app_store.is_some()), (1, true));
    let bad = r#"
        [app_store]
        driver = "sqlite"
        url = "file:apps.db"
        table = "apps; drop"
        negative_ttl_seconds = 60
        pool_size = 0
        colour = 1
    "#;
    assert_eq!(
        Config::from_toml(bad, &env).unwrap_err().problems,
        vec![
            "[app_store] driver: must be \"postgres\" or \"mysql\", not \"sqlite\"",
            "[app_store]: unknown key 'colour'",
            "[app_store] url: must start with postgres:// for this driver",
            "[app_store] table: must be a name of A-Z, a-z, 0-9, '_' (optionally schema.table)",
            "[app_store] negative_ttl_seconds: must be at least 1 and at most cache_ttl_seconds",
            "[app_store] pool_size: must be greater than 0",
        ]
    );
}
