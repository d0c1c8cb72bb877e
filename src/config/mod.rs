//! The `Config` type: TOML file, `${VAR}` interpolation, `HERALD_*` overrides, validation that
//! reports every problem at once under its table path, and the built-in development app.

mod interpolate;
mod limits;
mod read;
mod reader;
pub mod types;
mod validate;

pub use limits::{Limits, LimitsOverride};
pub use reader::Part;
pub use types::{
    AdapterKind, AppConfig, AppStoreConfig, Config, DashboardConfig, MetricsConfig, RedisConfig,
    ServerConfig, StoreDriver, TlsConfig, WebhookConfig, WebhookSettings, WEBHOOK_EVENTS,
};
pub use validate::app_problems;

use std::path::Path;

use reader::Report;

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

impl Part {
    /// Every part: what `herald serve` and `herald check-config` check.
    pub const ALL: &'static [Part] = &[
        Part::File,
        Part::Server,
        Part::Limits,
        Part::Redis,
        Part::Webhooks,
        Part::Metrics,
        Part::Dashboard,
        Part::Apps,
        Part::AppStore,
    ];
}

impl Config {
    /// Reads, interpolates, applies the `HERALD_*` overrides and validates a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Config::from_file_for(path, Part::ALL)
    }

    /// Like [`Config::from_file`], but only problems of the given parts count: a command that
    /// needs `[server]` and `[[apps]]` is not refused for a missing dashboard password.
    pub fn from_file_for(path: &Path, parts: &[Part]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!("cannot read {}: {e}", path.display())],
        })?;
        Config::from_toml_for(&text, &process_env, parts)
    }

    /// Parses config text with the given environment lookup (tests pass a map).
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::from_toml_for(text, env, Part::ALL)
    }

    /// [`Config::from_toml`] counting only the problems of `parts`.
    pub fn from_toml_for(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        parts: &[Part],
    ) -> Result<Config, ConfigError> {
        let mut report = Report::default();
        let config = read::config(text, env, &mut report).map(|mut c| {
            c.apply_env(env, &mut report);
            validate::check(&c, &mut report);
            c
        });
        let problems = report.problems_of(parts);
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            Some(_) => Err(ConfigError { problems }),
            // Not TOML: nothing else could be read, so this is reported whatever the parts.
            None => Err(ConfigError {
                problems: report.problems_of(&[Part::File]),
            }),
        }
    }

    /// The development app with the `HERALD_*` overrides of `env` applied, checked (only the
    /// problems of `parts` count, as for [`Config::from_toml_for`]).
    pub fn development_with_env(
        env: &dyn Fn(&str) -> Option<String>,
        parts: &[Part],
    ) -> Result<Config, ConfigError> {
        let mut c = Config::development();
        let mut report = Report::default();
        c.apply_env(env, &mut report);
        validate::check(&c, &mut report);
        let problems = report.problems_of(parts);
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The development default: one app with well-known credentials on 127.0.0.1:6001 and every
    /// optional feature on (client events, subscription counts, watchlist events), since it
    /// exists to try things.
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
                enable_subscription_count: true,
                enable_watchlist_events: true,
                signin_timeout: None,
                max_requests_per_second: None,
                webhooks: Vec::new(),
                limits: LimitsOverride::default(),
            }],
            app_store: None,
        }
    }

    /// Applies `HERALD_HOST`, `HERALD_PORT` and `HERALD_METRICS_PORT` (a port, or `off`).
    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>, report: &mut Report) {
        if let Some(host) = env("HERALD_HOST").filter(|h| !h.is_empty()) {
            self.server.host = host;
        }
        if let Some(port) = env("HERALD_PORT").filter(|p| !p.is_empty()) {
            match port.parse() {
                Ok(p) => self.server.port = p,
                Err(_) => report.table(
                    Part::Server,
                    "",
                    format!("HERALD_PORT={port:?} is not a port number"),
                ),
            }
        }
        if let Some(v) = env("HERALD_METRICS_PORT").filter(|p| !p.is_empty()) {
            match parse_metrics_port(&v) {
                Ok(port) => self.metrics.set_port(port),
                Err(e) => report.table(Part::Metrics, "", format!("HERALD_METRICS_PORT: {e}")),
            }
        }
    }

    /// Checks the whole config; `Err` lists every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut report = Report::default();
        validate::check(self, &mut report);
        let problems = report.problems_of(Part::ALL);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// Parses a metrics port setting (`--metrics-port`, `HERALD_METRICS_PORT`): a port number, or
/// `off` (`None`) for no metrics listener.
pub fn parse_metrics_port(value: &str) -> Result<Option<u16>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value
        .parse::<u16>()
        .map(Some)
        .map_err(|_| format!("{value:?} is neither a port number nor \"off\""))
}

impl MetricsConfig {
    /// Serves metrics on `port`, or not at all with `None`.
    pub fn set_port(&mut self, port: Option<u16>) {
        match port {
            Some(p) => {
                self.enabled = true;
                self.port = p;
            }
            None => self.enabled = false,
        }
    }
}

#[cfg(test)]
mod tests;
