//! What every connection and request handler shares: config, apps, adapter, hub, ids, shutdown.

use std::sync::Arc;

use tokio::sync::watch;

use crate::adapter::Adapter;
use crate::app::AppStore;
use crate::config::Config;
use crate::hub::Hub;
use crate::limit::CappedCounter;
use crate::protocol::socket_id::SocketIdGen;
use crate::webhooks::WebhookSink;

/// The lifecycle signals a server's tasks watch.
#[derive(Debug, Clone)]
pub struct Phases {
    /// Flips to `true` when the server stops.
    pub shutdown: watch::Receiver<bool>,
    /// Flips to `true` when the node starts draining.
    pub draining: watch::Receiver<bool>,
}

/// Shared server state, one per running `Server`.
pub struct State {
    /// The configuration the server was started with.
    pub config: Config,
    /// App lookup.
    pub apps: Arc<dyn AppStore>,
    /// This node's channels.
    pub hub: Arc<Hub>,
    /// Where broadcasts and channel queries go.
    pub adapter: Arc<dyn Adapter>,
    /// Where webhook events are recorded.
    pub webhooks: WebhookSink,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Live events for the dashboard.
    pub dashboard: crate::dashboard::DashboardBus,
    /// The dashboard charts' recent samples.
    pub history: crate::dashboard::history::History,
    /// Socket id source.
    pub ids: SocketIdGen,
    /// Flips to `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Flips to `true` when the node starts draining (not ready; sockets closed gradually).
    pub draining: watch::Receiver<bool>,
    /// HTTP-fallback sessions open on this node.
    pub sessions: Arc<crate::fallback::Sessions>,
    /// Connections (WebSockets and HTTP sessions) open on this node.
    connections: CappedCounter,
}

impl State {
    /// Assembles the state.
    pub fn new(
        node: u32,
        config: Config,
        apps: Arc<dyn AppStore>,
        hub: Arc<Hub>,
        adapter: Arc<dyn Adapter>,
        webhooks: WebhookSink,
        phases: Phases,
    ) -> State {
        let Phases { shutdown, draining } = phases;
        let ids = SocketIdGen::new(node, u64::from(rand::random::<u32>()));
        let history = crate::dashboard::history::History::new(config.dashboard.sample_seconds);
        State {
            config,
            apps,
            hub,
            adapter,
            webhooks,
            metrics: Arc::default(),
            dashboard: crate::dashboard::DashboardBus::new(node),
            history,
            ids,
            shutdown,
            draining,
            sessions: Arc::default(),
            connections: CappedCounter::default(),
        }
    }

    /// Whether shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Whether the node is draining or stopping (not ready for new work).
    pub fn draining(&self) -> bool {
        *self.draining.borrow() || self.shutting_down()
    }

    /// Readiness: not draining, and the adapter can reach the cluster. An unreachable app store
    /// does not make the node unready (its cached apps keep working); `/ready` says so in its
    /// body and `/metrics` in `herald_app_store_up`.
    pub fn ready(&self) -> bool {
        !self.draining() && self.adapter.healthy()
    }

    /// Whether the app store answers; `None` without one.
    pub fn store_up(&self) -> Option<bool> {
        self.apps.store().map(|s| s.is_up())
    }

    /// Counts a connection on this node unless the node is full.
    pub fn add_connection(&self) -> bool {
        let max = self.config.server.max_connections;
        self.connections.try_acquire((max > 0).then_some(max))
    }

    /// Forgets a connection counted by [`State::add_connection`].
    pub fn remove_connection(&self) {
        self.connections.release();
    }

    /// Open connections (WebSockets and HTTP-fallback sessions) on this node.
    pub fn connection_count(&self) -> usize {
        self.connections.get()
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

/// Resolves once shutdown has begun (or the server is gone).
pub async fn shutdown_started(rx: &mut watch::Receiver<bool>) {
    // The guard returned by `wait_for` is not `Send`; drop it here.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
