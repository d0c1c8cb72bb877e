//! herald: a self-hosted, Pusher-protocol-compatible channel server.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the `Config` type: TOML, `${VAR}` interpolation, `HERALD_*` overrides, validation, the development app |
//! | [`protocol`] | frames in and out, channel kinds and name rules, error/close codes, presence data; pure, no I/O |
//! | [`auth`] | channel-auth, sign-in, REST request and webhook signatures; constant-time checks |
//! | [`app`] | the registry of apps by id and by key, with their limits |
//! | [`connection`] | one connection, whatever carries it: handshake checks, the loop over a [`connection::Transport`], outbox, liveness, its session state; the WebSocket transport |
//! | [`fallback`] | the HTTP transport of pusher-js (`xhr_streaming`, `xhr_polling`): sessions, framing, CORS |
//! | [`metrics`] | counters and gauges, rendered for Prometheus on their own listener |
//! | [`limit`] | a counter with an optional cap (connections per node and per app) |
//! | [`outbox`] | a connection's bounded frame queue and its slow-consumer eviction signal |
//! | [`dashboard`] | the built-in debug page: live event bus, counts, channels, test events, the last hour's charts, the cluster panel |
//! | [`hub`] | this node's channels → subscribers and presence members, fan-out |
//! | [`broadcast`] | the one message type of every delivery path and the one place it becomes a frame |
//! | [`adapter`] | the node/cluster boundary: publish, subscribe bookkeeping, channel queries (`local` now) |
//! | [`http`] | accepting connections, routing to the upgrade, the REST API and health checks |
//! | [`api`] | REST endpoints under `/apps/{id}/…`, their validation and errors |
//! | [`state`] | what every handler shares |
//! | [`tls`] | loading the certificate and key for `wss://` and HTTPS |
//! | [`store`] | apps from PostgreSQL or MySQL: row mapping, cache, single-flight lookups, refresh |
//! | [`webhooks`] | recording, cluster-exact claiming, batching, signing and retrying webhooks |
//!
//! [`Server`] starts all of it on a listener (port 0 in tests) and shuts it down cleanly.

pub mod adapter;
pub mod api;
pub mod app;
pub mod auth;
pub mod broadcast;
pub mod config;
pub mod connection;
pub mod dashboard;
pub mod fallback;
pub mod http;
pub mod hub;
pub mod limit;
pub mod metrics;
pub mod outbox;
pub mod protocol;
pub mod state;
pub mod store;
pub mod tls;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::adapter::local::LocalAdapter;
use crate::adapter::redis::RedisAdapter;
use crate::adapter::{Adapter, AdapterError};
use crate::app::{AppDirectory, AppStore, ReloadableApps};
use crate::config::{AdapterKind, Config};
use crate::http::DrainGuard;
use crate::hub::Hub;
use crate::protocol::codes::CloseReason;
use crate::state::State;
use crate::store::StoreApps;
use crate::webhooks::WebhookSink;

/// A running herald node.
pub struct Server {
    addr: SocketAddr,
    dashboard_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    /// The TLS certificate, replaced on reload.
    certificates: Option<Arc<tls::Certificates>>,
    apps: Arc<ReloadableApps>,
    metrics_addr: Option<SocketAddr>,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    draining: watch::Sender<bool>,
    accept: JoinHandle<()>,
    drained: tokio::sync::mpsc::Receiver<()>,
    guard: Option<DrainGuard>,
}

impl Server {
    /// Validates the config, binds `host:port` and starts serving.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        config.validate().map_err(StartError::Config)?;
        let bind = format!("{}:{}", config.server.host, config.server.port);
        let listener = TcpListener::bind(&bind)
            .await
            .map_err(|e| StartError::Bind(bind, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(config.server.host.clone(), e))?;
        // Idempotent: the TLS provider for rediss:// and https:// webhooks.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (draining, draining_rx) = watch::channel(false);
        let hub = Arc::new(Hub::default());
        let reloadable = Arc::new(ReloadableApps::from_config(&config));
        let store = match &config.app_store {
            Some(c) => Some(Arc::new(
                StoreApps::new(c, config.limits, hub.clone(), reloadable.clone())
                    .map_err(StartError::Store)?,
            )),
            None => None,
        };
        if let Some(store) = &store {
            tokio::spawn(store.clone().run(shutdown_rx.clone()));
        }
        let apps: Arc<dyn AppStore> = Arc::new(AppDirectory::new(reloadable.clone(), store));
        let (webhooks, webhook_source) = WebhookSink::new();
        let node = rand::random::<u32>();
        let adapter: Arc<dyn Adapter> = match config.adapter {
            AdapterKind::Local => Arc::new(LocalAdapter::new(hub.clone())),
            AdapterKind::Redis => Arc::new(
                RedisAdapter::start(
                    hub.clone(),
                    node,
                    config.redis.clone(),
                    shutdown_rx.clone(),
                    webhooks.clone(),
                )
                .await
                .map_err(StartError::Adapter)?,
            ),
        };
        let state = Arc::new(State::new(
            node,
            config,
            apps,
            hub.clone(),
            adapter,
            webhooks,
            state::Phases {
                shutdown: shutdown_rx.clone(),
                draining: draining_rx,
            },
        ));
        webhooks::start(
            webhook_source,
            state.apps.clone(),
            state.adapter.clone(),
            state.config.webhooks.clone(),
            shutdown_rx.clone(),
            state.dashboard.clone(),
        );
        tokio::spawn(sweep_caches(hub.clone(), shutdown_rx.clone()));
        tokio::spawn(dashboard::history::run(
            state.clone(),
            addr.to_string(),
            shutdown_rx.clone(),
        ));
        let dashboard_addr = if state.config.dashboard.enabled {
            let d = &state.config.dashboard;
            let bind = format!("{}:{}", d.host, d.port);
            let l = TcpListener::bind(&bind)
                .await
                .map_err(|e| StartError::Bind(bind, e))?;
            let a = l.local_addr().ok();
            tokio::spawn(dashboard::server::serve(
                l,
                state.clone(),
                shutdown_rx.clone(),
            ));
            a
        } else {
            None
        };
        let metrics_addr = if state.config.metrics.enabled {
            let m = &state.config.metrics;
            let bind = format!("{}:{}", m.host, m.port);
            // The metrics port is an operator aid: failing to bind it is reported, not fatal.
            match TcpListener::bind(&bind).await {
                Ok(l) => {
                    let a = l.local_addr().ok();
                    tokio::spawn(http::metrics_loop(l, state.clone(), shutdown_rx.clone()));
                    a
                }
                Err(e) => {
                    tracing::error!(%bind, error = %e, "cannot serve /metrics");
                    None
                }
            }
        } else {
            None
        };
        let (guard, drained) = DrainGuard::new();
        let (tls, certificates) = match &state.config.server.tls {
            Some(t) => {
                let (acceptor, certs) = tls::acceptor(t).map_err(StartError::Tls)?;
                tokio::spawn(tls::watch(certs.clone(), shutdown_rx.clone()));
                (Some(acceptor), Some(certs))
            }
            None => (None, None),
        };
        // With a separate TLS port the main port stays plain; without one it is TLS only.
        let (main_tls, tls_listener) =
            match (&tls, state.config.server.tls.as_ref().and_then(|t| t.port)) {
                (Some(acceptor), Some(port)) => {
                    let bind = format!("{}:{port}", state.config.server.host);
                    let l = TcpListener::bind(&bind)
                        .await
                        .map_err(|e| StartError::Bind(bind, e))?;
                    (None, Some((l, acceptor.clone())))
                }
                (tls, _) => (tls.clone(), None),
            };
        let tls_addr = match &tls_listener {
            Some((l, _)) => l.local_addr().ok(),
            None if main_tls.is_some() => Some(addr),
            None => None,
        };
        if let Some((l, acceptor)) = tls_listener {
            tokio::spawn(http::accept_loop(
                l,
                Some(acceptor),
                state.clone(),
                shutdown_rx.clone(),
                guard.clone(),
            ));
        }
        let accept = tokio::spawn(http::accept_loop(
            listener,
            main_tls,
            state.clone(),
            shutdown_rx,
            guard.clone(),
        ));
        Ok(Server {
            addr,
            dashboard_addr,
            tls_addr,
            certificates,
            apps: reloadable,
            metrics_addr,
            state,
            shutdown,
            draining,
            accept,
            drained,
            guard: Some(guard),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `wss://` and HTTPS are served, if TLS is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Where the dashboard is served, if it is enabled.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.dashboard_addr
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Shared state, for inspection in tests.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// A handle that applies new configurations to this server (SIGHUP reload).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            apps: self.apps.clone(),
            state: self.state.clone(),
            certificates: self.certificates.clone(),
        }
    }

    /// See [`Reloader::reload`].
    pub fn reload(&self, config: &Config) -> Vec<String> {
        self.reloader().reload(config)
    }

    /// Drains the node: readiness turns false, new WebSocket connections are refused with 4100,
    /// and open sockets are closed with 4100 at random moments spread over `drain_seconds`
    /// (clients back off and reconnect elsewhere, a few at a time). REST and health keep being
    /// served meanwhile. Then shuts down.
    pub async fn drain(self) {
        let _ = self.draining.send(true);
        self.state.hub.set_phase(hub::Phase::Draining);
        let window = Duration::from_secs(self.state.config.server.drain_seconds);
        let state = self.state.clone();
        let emptied = async move {
            while state.connection_count() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        // A second of slack for the last closing handshakes.
        let _ = tokio::time::timeout(window + Duration::from_secs(1), emptied).await;
        self.shutdown().await;
    }

    /// Stops accepting, closes every WebSocket with 4200 and waits (bounded by
    /// `shutdown_timeout`) for connections to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.state.hub.set_phase(hub::Phase::ShuttingDown);
        let _ = (&mut self.accept).await;
        self.guard.take();
        let wait = Duration::from_secs(self.state.config.server.shutdown_timeout);
        if tokio::time::timeout(wait, self.drained.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.state.connection_count(),
                "shutdown timeout reached with connections still open"
            );
        }
        // Departures held back while the cluster settles go out before the node does.
        self.state.adapter.settle_departures().await;
        // The closed sockets' departures wait out their grace period (a client reconnecting to
        // another node cancels them), then go out and release their webhook records.
        let grace = Duration::from_millis(self.state.config.webhooks.grace_ms);
        self.state
            .webhooks
            .flush(grace + Duration::from_secs(3))
            .await;
    }
}

/// Applies new configurations to a running server; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    apps: Arc<ReloadableApps>,
    state: Arc<State>,
    certificates: Option<Arc<tls::Certificates>>,
}

impl Reloader {
    /// Applies a new configuration's apps without dropping connections: added apps accept
    /// connections at once, changed keys, secrets, limits and settings apply to the next message,
    /// and sockets of removed apps are closed with 4001. Other sections need a restart; the
    /// returned notes say which changed.
    pub fn reload(&self, config: &Config) -> Vec<String> {
        // The certificate files are read again (a renewal), from the paths in use.
        if let Some(certs) = &self.certificates {
            match certs.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload refused: the previous certificate stays")
                }
            }
        }
        let gone = self.apps.replace(config);
        for app in &config.apps {
            self.state.hub.app(&app.id).set_closing(None);
        }
        for id in &gone {
            self.state
                .hub
                .app(id)
                .set_closing(Some(CloseReason::AppNotFound));
        }
        let old = &self.state.config;
        let mut notes: Vec<String> = gone
            .iter()
            .map(|id| format!("app {id} removed: its sockets are closed with 4001"))
            .collect();
        if old.server != config.server
            || old.adapter != config.adapter
            || old.redis != config.redis
            || old.metrics != config.metrics
        {
            notes.push(
                "[server], adapter, [redis] and [metrics] changes take effect after a restart"
                    .into(),
            );
        }
        if old.webhooks != config.webhooks {
            notes.push("[webhooks] delivery settings take effect after a restart (receivers per app apply now)".into());
        }
        notes
    }
}

/// Drops expired cache-channel entries once a minute until shutdown.
async fn sweep_caches(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => hub.sweep(),
            _ = state::shutdown_started(&mut shutdown) => return,
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid.
    Config(config::ConfigError),
    /// The address could not be bound.
    Bind(String, std::io::Error),
    /// The adapter (Redis) could not be reached.
    Adapter(AdapterError),
    /// The TLS certificate or key could not be loaded.
    Tls(String),
    /// The app store's URL cannot be used.
    Store(store::DbError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Adapter(e) => write!(f, "cannot join the cluster: {e}"),
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::Store(e) => write!(f, "[app_store]: {e}"),
        }
    }
}

impl std::error::Error for StartError {}
