//! Checks of a [`Config`]'s values (ranges, formats, duplicates, what goes together), each
//! problem under the table path and key it concerns. Keys the file gave with a wrong type are
//! already reported by the reader and skipped here.

use std::collections::HashMap;

use super::read::{app_path, webhook_path};
use super::reader::{Part, Report};
use super::types::{AdapterKind, Config, ServerConfig, StoreDriver, WEBHOOK_EVENTS};

/// Records every problem of `c`.
pub(super) fn check(c: &Config, report: &mut Report) {
    server(&c.server, report);
    if c.dashboard.enabled && c.dashboard.password.is_empty() {
        report.key(
            Part::Dashboard,
            "[dashboard]",
            "password",
            "must be set when the dashboard is enabled",
        );
    }
    if !(1..=3600).contains(&c.dashboard.sample_seconds) {
        report.key(
            Part::Dashboard,
            "[dashboard]",
            "sample_seconds",
            "must be between 1 and 3600",
        );
    }
    if c.adapter == AdapterKind::Redis {
        redis(c, report);
    }
    let global = c.limits.problems();
    for (key, message) in &global {
        report.key(Part::Limits, "[limits]", key, message);
    }
    apps(c, &global, report);
    if let Some(store) = &c.app_store {
        app_store(store, report);
    }
}

fn app_store(s: &super::types::AppStoreConfig, report: &mut Report) {
    let at = "[app_store]";
    let scheme = match s.driver {
        StoreDriver::Postgres => ["postgres://", "postgresql://"],
        StoreDriver::Mysql => ["mysql://", "mariadb://"],
    };
    if !report.is_unread(at, "url") && !scheme.iter().any(|p| s.url.starts_with(p)) {
        report.key(
            Part::AppStore,
            at,
            "url",
            format!("must start with {} for this driver", scheme[0]),
        );
    }
    if !crate::store::valid_table_name(&s.table) {
        report.key(
            Part::AppStore,
            at,
            "table",
            "must be a name of A-Z, a-z, 0-9, '_' (optionally schema.table)",
        );
    }
    if s.cache_ttl_seconds == 0 {
        report.key(
            Part::AppStore,
            at,
            "cache_ttl_seconds",
            "must be at least 1",
        );
    }
    if s.negative_ttl_seconds == 0 || s.negative_ttl_seconds > s.cache_ttl_seconds {
        report.key(
            Part::AppStore,
            at,
            "negative_ttl_seconds",
            "must be at least 1 and at most cache_ttl_seconds",
        );
    }
    for (key, v) in [
        ("timeout_ms", s.timeout_ms),
        ("pool_size", u64::from(s.pool_size)),
        ("lookups_per_second", u64::from(s.lookups_per_second)),
    ] {
        if v == 0 {
            report.key(Part::AppStore, at, key, "must be greater than 0");
        }
    }
}

fn server(s: &ServerConfig, report: &mut Report) {
    let at = "[server]";
    if s.host.is_empty() {
        report.key(Part::Server, at, "host", "must not be empty");
    }
    for (key, v) in [
        ("activity_timeout", s.activity_timeout),
        ("pong_timeout", s.pong_timeout),
        ("handshake_timeout", s.handshake_timeout),
        ("http_session_timeout", s.http_session_timeout),
        ("http_heartbeat", s.http_heartbeat),
    ] {
        if v == 0 {
            report.key(Part::Server, at, key, "must be at least 1 second");
        }
    }
    if s.outbox_capacity < 2 {
        report.key(Part::Server, at, "outbox_capacity", "must be at least 2");
    }
    let p = &s.path_prefix;
    if !p.is_empty() && (!p.starts_with('/') || p.ends_with('/')) {
        report.key(
            Part::Server,
            at,
            "path_prefix",
            "must start with '/' and not end with '/' (e.g. \"/ws\")",
        );
    }
    if let Some(tls) = &s.tls {
        if let Err(e) = crate::tls::acceptor(tls) {
            report.table(Part::Server, "[server.tls]", e);
        }
    }
}

fn redis(c: &Config, report: &mut Report) {
    let (r, at) = (&c.redis, "[redis]");
    if r.prefix.is_empty() || r.prefix.contains(['{', '}', ':']) {
        report.key(
            Part::Redis,
            at,
            "prefix",
            "must be non-empty without '{', '}' or ':'",
        );
    }
    if r.url.is_empty() && r.cluster.is_empty() {
        report.table(Part::Redis, at, "needs url or cluster");
    }
    if !(r.url.is_empty() || r.url.starts_with("redis://") || r.url.starts_with("rediss://")) {
        report.key(
            Part::Redis,
            at,
            "url",
            "must start with redis:// or rediss://",
        );
    }
    if r.cluster
        .iter()
        .any(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
    {
        report.key(
            Part::Redis,
            at,
            "cluster",
            "URLs must start with redis:// or rediss://",
        );
    }
    if r.sentinel
        .iter()
        .any(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
    {
        report.key(
            Part::Redis,
            at,
            "sentinel",
            "URLs must start with redis:// or rediss://",
        );
    }
    if !r.sentinel.is_empty() && !r.cluster.is_empty() {
        report.table(Part::Redis, at, "sentinel and cluster cannot both be set");
    }
    if !r.sentinel.is_empty() && r.sentinel_master.is_empty() {
        report.key(Part::Redis, at, "sentinel_master", "must not be empty");
    }
    if r.heartbeat_ms == 0 || r.node_timeout_ms <= 2 * r.heartbeat_ms {
        report.key(
            Part::Redis,
            at,
            "node_timeout_ms",
            format!(
                "must exceed twice heartbeat_ms ({}), which must be > 0",
                r.heartbeat_ms
            ),
        );
    }
    if r.publish_queue == 0 {
        report.key(Part::Redis, at, "publish_queue", "must be greater than 0");
    }
}

fn apps(c: &Config, global_limits: &[(&'static str, String)], report: &mut Report) {
    if c.apps.is_empty() && c.app_store.is_none() {
        report.table(Part::Apps, "", "no [[apps]] configured");
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (i, app) in c.apps.iter().enumerate() {
        let n = i + 1;
        let at = app_path(n);
        credentials(app, &at, report);
        if !report.is_unread(&at, "id") && !app.id.is_empty() {
            if let Some(first) = ids.insert(&app.id, n) {
                report.key(
                    Part::Apps,
                    &at,
                    "id",
                    format!("{:?} is already used by {}", app.id, app_path(first)),
                );
                ids.insert(&app.id, first);
            }
        }
        if !report.is_unread(&at, "key") && !app.key.is_empty() {
            if let Some(first) = keys.insert(&app.key, n) {
                report.key(
                    Part::Apps,
                    &at,
                    "key",
                    format!("{:?} is already used by {}", app.key, app_path(first)),
                );
                keys.insert(&app.key, first);
            }
        }
        settings(c, n, &at, app, global_limits, report);
    }
}

/// An app's id, key and secret.
fn credentials(app: &super::types::AppConfig, at: &str, report: &mut Report) {
    let valid_id = !app.id.is_empty()
        && app
            .id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !valid_id {
        report.key(
            Part::Apps,
            at,
            "id",
            "must be non-empty and use only A-Z, a-z, 0-9, '-', '_'",
        );
    }
    let bad_key = |c: char| c == '/' || c == '?' || c == ':' || c.is_whitespace();
    if app.key.is_empty() || app.key.contains(bad_key) {
        report.key(
            Part::Apps,
            at,
            "key",
            "must be non-empty without '/', '?', ':' or spaces",
        );
    }
    if app.secret.is_empty() {
        report.key(Part::Apps, at, "secret", "must not be empty");
    }
}

/// An app's settings, webhooks and limit overrides.
fn settings(
    c: &Config,
    n: usize,
    at: &str,
    app: &super::types::AppConfig,
    global_limits: &[(&'static str, String)],
    report: &mut Report,
) {
    if app.max_requests_per_second == Some(0) {
        report.key(
            Part::Apps,
            at,
            "max_requests_per_second",
            "must be at least 1",
        );
    }
    if app.signin_timeout == Some(0) {
        report.key(
            Part::Apps,
            at,
            "signin_timeout",
            "must be at least 1 second",
        );
    }
    for (j, w) in app.webhooks.iter().enumerate() {
        webhook(n, j + 1, w, report);
    }
    // Only what this app's overrides make wrong: the global problems are reported once.
    let lat = format!("{at} [apps.limits]");
    for (key, message) in c.limits.merged(&app.limits).problems() {
        if !global_limits
            .iter()
            .any(|(k, m)| *k == key && *m == message)
        {
            report.key(Part::Apps, &lat, key, message);
        }
    }
}

/// What is wrong with one app read from outside the file (a database row), as messages: the
/// same checks as `[[apps]]` entries get.
pub fn app_problems(app: &super::types::AppConfig, limits: &super::Limits) -> Vec<String> {
    let mut report = Report::default();
    let c = Config {
        limits: *limits,
        ..Config::default()
    };
    credentials(app, "app", &mut report);
    settings(&c, 1, "app", app, &[], &mut report);
    report.problems_of(&[Part::Apps])
}

fn webhook(n: usize, m: usize, w: &super::types::WebhookConfig, report: &mut Report) {
    let at = webhook_path(n, m);
    let scheme_ok = w.url.starts_with("http://") || w.url.starts_with("https://");
    if !scheme_ok || w.url.parse::<hyper::Uri>().is_err() {
        report.key(Part::Apps, &at, "url", "must be an http:// or https:// URL");
    }
    for e in &w.events {
        if !WEBHOOK_EVENTS.contains(&e.as_str()) {
            report.key(
                Part::Apps,
                &at,
                "events",
                format!(
                    "unknown event type {e:?} (one of {})",
                    WEBHOOK_EVENTS.join(", ")
                ),
            );
        }
    }
    if w.batch_max == 0 {
        report.key(Part::Apps, &at, "batch_max", "must be greater than 0");
    }
    for (k, v) in &w.headers {
        let valid = k.parse::<hyper::header::HeaderName>().is_ok()
            && hyper::header::HeaderValue::from_str(v).is_ok();
        if !valid {
            report.key(Part::Apps, &at, "headers", format!("invalid header {k:?}"));
        }
    }
}
