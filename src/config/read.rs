//! A config file's TOML into [`Config`], table by table and key by key. A key that cannot be
//! read keeps its default and its problem is recorded under the table it is in, so the whole
//! file is always read and every problem reported.

use std::collections::BTreeMap;

use toml::Value;

use super::limits::{Limits, LimitsOverride};
use super::reader::{Part, Reader, Report};
use super::types::{
    AdapterKind, AppConfig, AppStoreConfig, Config, DashboardConfig, MetricsConfig, RedisConfig,
    ServerConfig, StoreDriver, TlsConfig, WebhookConfig, WebhookSettings,
};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the whole file; `None` when it is not TOML at all (the problem is recorded).
pub(super) fn config(text: &str, env: Env, report: &mut Report) -> Option<Config> {
    let root: Value = match toml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            report.table(Part::File, "", format!("invalid TOML: {e}"));
            return None;
        }
    };
    let mut file = Reader::new(Part::File, "", root, env, report)?;
    let mut c = Config::default();
    if let Some(v) = file.take_raw("server") {
        c.server = server(v, env, report);
    }
    if let Some(v) = file.take_raw("limits") {
        if let Some(mut r) = Reader::new(Part::Limits, "[limits]", v, env, report) {
            c.limits = Limits::read(&mut r, report);
            r.finish(report);
        }
    }
    if let Some(adapter) = file.get::<String>("adapter", report) {
        match adapter.as_str() {
            "local" => c.adapter = AdapterKind::Local,
            "redis" => c.adapter = AdapterKind::Redis,
            _ => report.key(
                Part::Redis,
                "",
                "adapter",
                format!("must be \"local\" or \"redis\", not {adapter:?}"),
            ),
        }
    }
    if let Some(v) = file.take_raw("redis") {
        c.redis = redis(v, env, report);
    }
    if let Some(v) = file.take_raw("webhooks") {
        c.webhooks = webhook_settings(v, env, report);
    }
    if let Some(v) = file.take_raw("metrics") {
        c.metrics = metrics(v, env, report);
    }
    if let Some(v) = file.take_raw("dashboard") {
        c.dashboard = dashboard(v, env, report);
    }
    if let Some(v) = file.take_raw("app_store") {
        c.app_store = app_store(v, env, report);
    }
    match file.take_raw("apps") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                c.apps.push(app(i + 1, item, env, report));
            }
        }
        Some(_) => report.table(
            Part::Apps,
            "",
            "'apps' must be an array of tables ([[apps]])",
        ),
    }
    file.finish(report);
    Some(c)
}

fn server(v: Value, env: Env, report: &mut Report) -> ServerConfig {
    let mut s = ServerConfig::default();
    let Some(mut r) = Reader::new(Part::Server, "[server]", v, env, report) else {
        return s;
    };
    r.set("host", &mut s.host, report);
    r.set("port", &mut s.port, report);
    r.set("path_prefix", &mut s.path_prefix, report);
    r.set("activity_timeout", &mut s.activity_timeout, report);
    r.set("pong_timeout", &mut s.pong_timeout, report);
    r.set("handshake_timeout", &mut s.handshake_timeout, report);
    r.set("outbox_capacity", &mut s.outbox_capacity, report);
    r.set("max_connections", &mut s.max_connections, report);
    r.set("shutdown_timeout", &mut s.shutdown_timeout, report);
    r.set("drain_seconds", &mut s.drain_seconds, report);
    r.set("http_session_timeout", &mut s.http_session_timeout, report);
    r.set("http_heartbeat", &mut s.http_heartbeat, report);
    if let Some(v) = r.take_raw("tls") {
        if let Some(mut t) = Reader::new(Part::Server, "[server.tls]", v, env, report) {
            let cert = t.required::<String>("cert", report);
            let key = t.required::<String>("key", report);
            let port = t.get::<u16>("port", report);
            let mut watch_seconds = super::types::TLS_WATCH_SECONDS;
            t.set("watch_seconds", &mut watch_seconds, report);
            t.finish(report);
            // Without both files there is nothing to serve TLS with; the problems are recorded.
            if let (Some(cert), Some(key)) = (cert, key) {
                s.tls = Some(TlsConfig {
                    cert,
                    key,
                    port,
                    watch_seconds,
                });
            }
        }
    }
    r.finish(report);
    s
}

fn app_store(v: Value, env: Env, report: &mut Report) -> Option<AppStoreConfig> {
    let mut c = AppStoreConfig::default();
    let mut r = Reader::new(Part::AppStore, "[app_store]", v, env, report)?;
    if let Some(driver) = r.required::<String>("driver", report) {
        match driver.as_str() {
            "postgres" | "postgresql" => c.driver = StoreDriver::Postgres,
            "mysql" | "mariadb" => c.driver = StoreDriver::Mysql,
            _ => report.key(
                Part::AppStore,
                "[app_store]",
                "driver",
                format!("must be \"postgres\" or \"mysql\", not {driver:?}"),
            ),
        }
    }
    c.url = r.required("url", report).unwrap_or_default();
    r.set("table", &mut c.table, report);
    r.set("cache_ttl_seconds", &mut c.cache_ttl_seconds, report);
    r.set("negative_ttl_seconds", &mut c.negative_ttl_seconds, report);
    r.set("timeout_ms", &mut c.timeout_ms, report);
    r.set("pool_size", &mut c.pool_size, report);
    r.set("lookups_per_second", &mut c.lookups_per_second, report);
    r.finish(report);
    Some(c)
}

fn redis(v: Value, env: Env, report: &mut Report) -> RedisConfig {
    let mut c = RedisConfig::default();
    let Some(mut r) = Reader::new(Part::Redis, "[redis]", v, env, report) else {
        return c;
    };
    r.set("url", &mut c.url, report);
    r.set("cluster", &mut c.cluster, report);
    r.set("sentinel", &mut c.sentinel, report);
    r.set("sentinel_master", &mut c.sentinel_master, report);
    r.set("prefix", &mut c.prefix, report);
    r.set("heartbeat_ms", &mut c.heartbeat_ms, report);
    r.set("node_timeout_ms", &mut c.node_timeout_ms, report);
    r.set("publish_queue", &mut c.publish_queue, report);
    r.set("replay_ms", &mut c.replay_ms, report);
    r.finish(report);
    c
}

fn webhook_settings(v: Value, env: Env, report: &mut Report) -> WebhookSettings {
    let mut w = WebhookSettings::default();
    let Some(mut r) = Reader::new(Part::Webhooks, "[webhooks]", v, env, report) else {
        return w;
    };
    r.set("grace_ms", &mut w.grace_ms, report);
    r.set("retry_window_secs", &mut w.retry_window_secs, report);
    r.set("queue", &mut w.queue, report);
    r.set("timeout_ms", &mut w.timeout_ms, report);
    r.finish(report);
    w
}

fn metrics(v: Value, env: Env, report: &mut Report) -> MetricsConfig {
    let mut m = MetricsConfig::default();
    let Some(mut r) = Reader::new(Part::Metrics, "[metrics]", v, env, report) else {
        return m;
    };
    r.set("enabled", &mut m.enabled, report);
    r.set("host", &mut m.host, report);
    r.set("port", &mut m.port, report);
    r.finish(report);
    m
}

fn dashboard(v: Value, env: Env, report: &mut Report) -> DashboardConfig {
    let mut d = DashboardConfig::default();
    let Some(mut r) = Reader::new(Part::Dashboard, "[dashboard]", v, env, report) else {
        return d;
    };
    r.set("enabled", &mut d.enabled, report);
    r.set("host", &mut d.host, report);
    r.set("port", &mut d.port, report);
    r.set("user", &mut d.user, report);
    r.set("password", &mut d.password, report);
    r.set("sample_seconds", &mut d.sample_seconds, report);
    r.finish(report);
    d
}

/// The path of the `n`th `[[apps]]` entry in messages.
pub(super) fn app_path(n: usize) -> String {
    format!("[[apps]] #{n}")
}

/// The path of an app's `m`th `[[apps.webhooks]]` entry in messages.
pub(super) fn webhook_path(n: usize, m: usize) -> String {
    format!("[[apps]] #{n} [[apps.webhooks]] #{m}")
}

/// Reads the `n`th `[[apps]]` entry. An entry that is not a table, or lacks a key, still
/// yields an app (with empty credentials, marked unread) so the entries after it keep their
/// numbers and "no [[apps]] configured" is not reported for a file that has some.
fn app(n: usize, v: Value, env: Env, report: &mut Report) -> AppConfig {
    let path = app_path(n);
    let mut a = AppConfig {
        id: String::new(),
        key: String::new(),
        secret: String::new(),
        enabled: true,
        enable_client_messages: false,
        max_connections: None,
        max_requests_per_second: None,
        enable_subscription_count: false,
        enable_watchlist_events: false,
        signin_timeout: None,
        limits: LimitsOverride::default(),
        webhooks: Vec::new(),
    };
    let Some(mut r) = Reader::new(Part::Apps, path.clone(), v, env, report) else {
        for key in ["id", "key", "secret"] {
            report.mark_unread(&path, key);
        }
        return a;
    };
    a.id = r.required("id", report).unwrap_or_default();
    a.key = r.required("key", report).unwrap_or_default();
    a.secret = r.required("secret", report).unwrap_or_default();
    r.set("enabled", &mut a.enabled, report);
    r.set(
        "enable_client_messages",
        &mut a.enable_client_messages,
        report,
    );
    a.max_connections = r.get("max_connections", report);
    a.max_requests_per_second = r.get("max_requests_per_second", report);
    r.set(
        "enable_subscription_count",
        &mut a.enable_subscription_count,
        report,
    );
    r.set(
        "enable_watchlist_events",
        &mut a.enable_watchlist_events,
        report,
    );
    a.signin_timeout = r.get("signin_timeout", report);
    if let Some(v) = r.take_raw("limits") {
        let lpath = format!("{path} [apps.limits]");
        if let Some(mut l) = Reader::new(Part::Apps, lpath, v, env, report) {
            a.limits = LimitsOverride::read(&mut l, report);
            l.finish(report);
        }
    }
    match r.take_raw("webhooks") {
        None => {}
        Some(Value::Array(items)) => {
            for (j, item) in items.into_iter().enumerate() {
                if let Some(w) = webhook(n, j + 1, item, env, report) {
                    // kept even without a usable url, so its other keys are checked too
                    a.webhooks.push(w);
                }
            }
        }
        Some(_) => report.key(
            Part::Apps,
            &path,
            "webhooks",
            "must be an array of tables ([[apps.webhooks]])",
        ),
    }
    r.finish(report);
    a
}

fn webhook(n: usize, m: usize, v: Value, env: Env, report: &mut Report) -> Option<WebhookConfig> {
    let mut r = Reader::new(Part::Apps, webhook_path(n, m), v, env, report)?;
    let url = r.required::<String>("url", report);
    let mut w = WebhookConfig {
        url: String::new(),
        events: Vec::new(),
        channel_prefix: String::new(),
        headers: BTreeMap::new(),
        batch_ms: 0,
        batch_max: 100,
    };
    r.set("events", &mut w.events, report);
    r.set("channel_prefix", &mut w.channel_prefix, report);
    r.set("headers", &mut w.headers, report);
    r.set("batch_ms", &mut w.batch_ms, report);
    r.set("batch_max", &mut w.batch_max, report);
    r.finish(report);
    // Without a url the receiver is unusable, but the problem is recorded, so the config is
    // refused; an empty url is not reported a second time (it is marked unread).
    w.url = url.unwrap_or_default();
    Some(w)
}
