//! What `herald serve` says at start: every listener (main, TLS, metrics, dashboard) and, for
//! the development app, its credentials and which optional features are on.

use herald::config::{AppConfig, Config};
use herald::Server;

/// Every listener as (label, where), in the order printed.
fn listeners(server: &Server, config: &Config) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match server.tls_addr() {
        Some(tls) if tls != server.local_addr() => {
            out.push(("tls", format!("{tls} (wss:// and https://)")));
        }
        _ => {}
    }
    let metrics = match (config.metrics.enabled, server.metrics_addr()) {
        (false, _) => "off".to_string(),
        (true, Some(m)) => format!("http://{m}/metrics"),
        (true, None) => format!(
            "not served: {}:{} could not be bound (see the error above; --metrics-port moves it, --metrics-port off turns it off)",
            config.metrics.host, config.metrics.port
        ),
    };
    out.push(("metrics", metrics));
    if let Some(d) = server.dashboard_addr() {
        out.push(("dashboard", format!("http://{d}/")));
    }
    out
}

/// The main listener, with its scheme when it is TLS only.
fn main_listener(server: &Server) -> String {
    let addr = server.local_addr();
    if server.tls_addr() == Some(addr) {
        format!("{addr} (TLS only: wss:// and https://)")
    } else {
        addr.to_string()
    }
}

/// The optional features an app has on, for people trying things.
pub fn features(app: &AppConfig) -> String {
    let on: Vec<&str> = [
        (app.enable_client_messages, "client events"),
        (app.enable_subscription_count, "subscription counts"),
        (app.enable_watchlist_events, "watchlist events"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(", ")
    }
}

/// Prints the development app's banner on stdout (the only place its secret appears).
pub fn print_development(server: &Server, config: &Config) {
    println!(
        "herald listening on {} (development app)",
        main_listener(server)
    );
    if let Some(app) = config.apps.first() {
        println!("  app_id:    {}", app.id);
        println!("  key:       {}", app.key);
        println!("  secret:    {}", app.secret);
        println!("  features:  {}", features(app));
    }
    for (label, at) in listeners(server, config) {
        println!("  {:<10} {at}", format!("{label}:"));
    }
}

/// Logs every listener of a server started from a config file.
pub fn log(server: &Server, config: &Config) {
    tracing::info!(addr = %main_listener(server), apps = config.apps.len(), "herald listening");
    if let Some(store) = &config.app_store {
        // never the URL: it may carry a password
        tracing::info!(driver = ?store.driver, table = %store.table, cache_ttl_seconds = store.cache_ttl_seconds, "apps also from the app store");
    }
    for (label, at) in listeners(server, config) {
        tracing::info!("{label}: {at}");
    }
}
