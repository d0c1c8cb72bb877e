//! The `Config` type: TOML file, `${VAR}` interpolation, `HERALD_*` overrides, validation that
//! reports every problem at once, and the built-in development app.

mod interpolate;
pub mod types;

pub use types::{
    AdapterKind, AppConfig, Config, DashboardConfig, Limits, LimitsOverride, MetricsConfig,
    RedisConfig, ServerConfig, WebhookConfig, WebhookSettings, WEBHOOK_EVENTS,
};

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Value;

/// Everything wrong with a config, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} problem(s) in the configuration:",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads, interpolates, applies `HERALD_HOST`/`HERALD_PORT` and validates a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!("cannot read {}: {e}", path.display())],
        })?;
        Config::from_toml(&text, &process_env)
    }

    /// Parses config text with the given environment lookup (tests pass a map).
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut root: Value = match toml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![format!("invalid TOML: {}", e.message())],
                })
            }
        };
        interpolate_values(&mut root, env, &mut problems);
        let Value::Table(mut table) = root else {
            return Err(ConfigError {
                problems: vec!["config must be a TOML table".into()],
            });
        };

        let server: ServerConfig = section(table.remove("server"), "[server]", &mut problems);
        let limits: Limits = section(table.remove("limits"), "[limits]", &mut problems);
        let adapter: AdapterKind = match table.remove("adapter") {
            None => AdapterKind::Local,
            Some(v) => v.try_into().unwrap_or_else(|_| {
                problems.push("adapter must be \"local\" or \"redis\"".into());
                AdapterKind::Local
            }),
        };
        let redis: RedisConfig = section(table.remove("redis"), "[redis]", &mut problems);
        let webhooks: WebhookSettings =
            section(table.remove("webhooks"), "[webhooks]", &mut problems);
        let metrics: MetricsConfig = section(table.remove("metrics"), "[metrics]", &mut problems);
        let dashboard: DashboardConfig =
            section(table.remove("dashboard"), "[dashboard]", &mut problems);
        let mut apps = Vec::new();
        match table.remove("apps") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    match item.try_into::<AppConfig>() {
                        Ok(app) => apps.push(app),
                        Err(e) => problems.push(format!("[[apps]] #{}: {}", i + 1, e.message())),
                    }
                }
            }
            Some(_) => problems.push("'apps' must be an array of tables ([[apps]])".into()),
        }
        for key in table.keys() {
            problems.push(format!("unknown top-level key '{key}'"));
        }
        let mut config = Config {
            server,
            adapter,
            redis,
            webhooks,
            metrics,
            dashboard,
            limits,
            apps,
        };
        config.apply_env(env, &mut problems);
        config.validate_into(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The development default: one app with well-known credentials on 127.0.0.1:6001.
    pub fn development() -> Config {
        Config {
            server: ServerConfig::default(),
            adapter: AdapterKind::Local,
            redis: RedisConfig::default(),
            webhooks: WebhookSettings::default(),
            metrics: MetricsConfig::default(),
            dashboard: DashboardConfig::default(),
            limits: Limits::default(),
            apps: vec![AppConfig {
                id: "app-id".into(),
                key: "app-key".into(),
                secret: "app-secret".into(),
                enabled: true,
                enable_client_messages: true,
                max_connections: None,
                enable_subscription_count: false,
                enable_watchlist_events: false,
                signin_timeout: None,
                max_requests_per_second: None,
                webhooks: Vec::new(),
                limits: LimitsOverride::default(),
            }],
        }
    }

    /// Applies `HERALD_HOST` / `HERALD_PORT`.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<String>) {
        if let Some(host) = env("HERALD_HOST").filter(|h| !h.is_empty()) {
            self.server.host = host;
        }
        if let Some(port) = env("HERALD_PORT").filter(|p| !p.is_empty()) {
            match port.parse() {
                Ok(p) => self.server.port = p,
                Err(_) => problems.push(format!("HERALD_PORT={port:?} is not a port number")),
            }
        }
    }

    /// Checks the whole config; `Err` lists every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.validate_into(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    fn validate_into(&self, problems: &mut Vec<String>) {
        self.server.validate_into(problems);
        if self.dashboard.enabled && self.dashboard.password.is_empty() {
            problems.push("[dashboard] password must be set when the dashboard is enabled".into());
        }
        if self.adapter == AdapterKind::Redis {
            self.redis.validate_into(problems);
        }
        self.limits.validate_into("[limits]", problems);
        if self.apps.is_empty() {
            problems.push("no [[apps]] configured".into());
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = format!("[[apps]] #{} (id {:?})", i + 1, app.id);
            if app.id.is_empty()
                || !app
                    .id
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            {
                problems.push(format!(
                    "{at}: id must be non-empty and use only A-Z, a-z, 0-9, '-', '_'"
                ));
            }
            if app.key.is_empty()
                || app
                    .key
                    .contains(|c: char| c == '/' || c == '?' || c == ':' || c.is_whitespace())
            {
                problems.push(format!(
                    "{at}: key must be non-empty without '/', '?', ':' or spaces"
                ));
            }
            if app.secret.is_empty() {
                problems.push(format!("{at}: secret must not be empty"));
            }
            if !ids.insert(app.id.as_str()) {
                problems.push(format!("{at}: duplicate app id"));
            }
            if !keys.insert(app.key.as_str()) {
                problems.push(format!("{at}: duplicate app key"));
            }
            for (j, w) in app.webhooks.iter().enumerate() {
                let wat = format!("{at} webhook #{}", j + 1);
                let scheme_ok = w.url.starts_with("http://") || w.url.starts_with("https://");
                if !scheme_ok || w.url.parse::<hyper::Uri>().is_err() {
                    problems.push(format!("{wat}: url must be an http:// or https:// URL"));
                }
                for e in &w.events {
                    if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                        problems.push(format!(
                            "{wat}: unknown event type {e:?} (one of {})",
                            WEBHOOK_EVENTS.join(", ")
                        ));
                    }
                }
                if w.batch_max == 0 {
                    problems.push(format!("{wat}: batch_max must be greater than 0"));
                }
                for (k, v) in &w.headers {
                    let valid = k.parse::<hyper::header::HeaderName>().is_ok()
                        && hyper::header::HeaderValue::from_str(v).is_ok();
                    if !valid {
                        problems.push(format!("{wat}: invalid header {k:?}"));
                    }
                }
            }
            if app.max_requests_per_second == Some(0) {
                problems.push(format!("{at}: max_requests_per_second must be at least 1"));
            }
            if app.signin_timeout == Some(0) {
                problems.push(format!("{at}: signin_timeout must be at least 1 second"));
            }
            self.limits
                .merged(&app.limits)
                .validate_into(&format!("{at} limits"), problems);
        }
    }
}

fn section<T: DeserializeOwned + Default>(
    value: Option<Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> T {
    match value {
        None => T::default(),
        Some(v) => v.try_into().unwrap_or_else(|e: toml::de::Error| {
            problems.push(format!("{name}: {}", e.message()));
            T::default()
        }),
    }
}

fn interpolate_values(
    v: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) {
    match v {
        Value::String(s) => *s = interpolate::interpolate(s, env, problems),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| interpolate_values(i, env, problems)),
        Value::Table(t) => t
            .iter_mut()
            .for_each(|(_, i)| interpolate_values(i, env, problems)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
