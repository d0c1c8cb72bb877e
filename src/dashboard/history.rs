//! This node's chart history: a task reads the counters at every sample boundary into the ring
//! (`series`) and shares the node's view with the cluster through the adapter.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::cluster::NodeView;
use super::series::{AppValues, Point, Reading, Ring, Totals};
use crate::state::State;

/// The ring and its sample interval.
#[derive(Debug)]
pub struct History {
    every_s: u64,
    ring: Mutex<Ring>,
    /// Where this node serves clients (set when sampling starts).
    address: std::sync::OnceLock<String>,
}

impl History {
    /// An empty history sampled every `every_s` seconds.
    pub fn new(every_s: u64) -> History {
        History {
            every_s: every_s.max(1),
            ring: Mutex::default(),
            address: std::sync::OnceLock::new(),
        }
    }

    /// Seconds per sample.
    pub fn every_s(&self) -> u64 {
        self.every_s
    }

    /// The points so far, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.lock().points()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The counters now, as `/metrics` shows them.
pub fn reading(state: &State) -> Reading {
    let m = &state.metrics;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let w = state.webhooks.stats();
    let [rest_2xx, rest_4xx, rest_5xx] = m.rest_by_class();
    let total = Totals {
        connections: state.connection_count() as u64,
        messages_in: get(&m.messages_in),
        messages_out: get(&m.messages_out),
        client_events: get(&m.broadcasts_client),
        api_messages: get(&m.broadcasts_rest),
        rest_2xx,
        rest_4xx,
        rest_5xx,
        webhooks_delivered: get(&w.delivered),
        webhooks_failed: get(&w.failures),
        webhooks_given_up: get(&w.given_up),
    };
    let mut apps = std::collections::BTreeMap::<String, AppValues>::new();
    for id in state.hub.app_ids() {
        apps.entry(id.clone()).or_default().connections =
            state.hub.app(&id).connection_count() as u64;
    }
    for (id, c) in m.apps() {
        let a = apps.entry(id).or_default();
        a.client_events = get(&c.client_events);
        a.api_messages = get(&c.api_messages);
    }
    for (id, [delivered, failed, given_up]) in w.by_app() {
        let a = apps.entry(id).or_default();
        a.webhooks_delivered = delivered;
        a.webhooks_failed = failed;
        a.webhooks_given_up = given_up;
    }
    Reading { total, apps }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This node's view as the dashboard and the other nodes see it.
pub fn node_view(state: &State) -> NodeView {
    NodeView {
        node: state.dashboard.node(),
        address: state.history.address.get().cloned().unwrap_or_default(),
        interval_seconds: state.history.every_s(),
        connections: state.connection_count() as u64,
        redis: state.adapter.link_view(),
        points: state.history.points(),
    }
}

/// Samples at every interval boundary (wall clock, so the nodes' points line up) until
/// shutdown; after each sample the node's view is shared for three intervals (at least a node
/// timeout), so it expires soon after the node stops.
pub async fn run(
    state: std::sync::Arc<State>,
    address: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = state.history.address.set(address);
    let every = state.history.every_s();
    let ttl = Duration::from_secs(every * 3)
        .max(Duration::from_millis(state.config.redis.node_timeout_ms));
    state.history.lock().record(
        super::series::interval_end(now_ms(), every),
        reading(&state),
    );
    loop {
        let now = now_ms();
        let end = super::series::interval_end(now, every);
        let wait = Duration::from_millis((end * 1000).saturating_sub(now));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::state::shutdown_started(&mut shutdown) => return,
        }
        state.history.lock().record(end, reading(&state));
        let view = node_view(&state);
        match serde_json::to_string(&view) {
            Ok(json) => state.adapter.share_view(&json, ttl).await,
            Err(e) => tracing::debug!(error = %e, "dashboard view not encoded"),
        }
    }
}
