//! Counters and gauges for Prometheus, rendered in the text exposition format on a separate
//! listener. Counters are plain atomics bumped on the hot paths; gauges are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::state::State;

/// Upper bounds (seconds) of the REST latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// One app's counters (the `herald_app_*` series; the dashboard charts them per app).
#[derive(Debug, Default)]
pub struct AppCounters {
    /// Client events published.
    pub client_events: AtomicU64,
    /// Broadcasts published by the REST API (one per channel).
    pub api_messages: AtomicU64,
}

/// Every counter herald keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    /// WebSocket connections accepted (after the handshake checks).
    pub connections_opened: AtomicU64,
    /// Closed connections by close code (0: closed by the client; 1006: vanished).
    closed: Mutex<BTreeMap<u16, u64>>,
    /// Text frames received from clients.
    pub messages_in: AtomicU64,
    /// Bytes of those frames.
    pub bytes_in: AtomicU64,
    /// Frames written to clients.
    pub messages_out: AtomicU64,
    /// Of those, frames the fan-out wrote straight to the socket (no task woken).
    pub messages_out_direct: AtomicU64,
    /// Bytes of those frames.
    pub bytes_out: AtomicU64,
    /// Broadcasts published by the REST API.
    pub broadcasts_rest: AtomicU64,
    /// Broadcasts published by client events.
    pub broadcasts_client: AtomicU64,
    /// Connections closed because their outbox was full.
    pub evictions: AtomicU64,
    /// REST requests by (endpoint, status).
    rest: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// REST latency by endpoint.
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Per-app counters, by app id (only apps that authenticated: bounded by the app table).
    apps: RwLock<BTreeMap<String, Arc<AppCounters>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// The counters of one app (created on first use).
    pub fn app(&self, id: &str) -> Arc<AppCounters> {
        let found = self
            .apps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        found.unwrap_or_else(|| {
            self.apps
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(id.to_string())
                .or_default()
                .clone()
        })
    }

    /// Every app's counters, by app id.
    pub fn apps(&self) -> Vec<(String, Arc<AppCounters>)> {
        self.apps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// REST requests so far by status class: 2xx, 4xx, 5xx.
    pub fn rest_by_class(&self) -> [u64; 3] {
        let mut out = [0; 3];
        for ((_, status), n) in lock(&self.rest).iter() {
            match status / 100 {
                2 => out[0] += n,
                4 => out[1] += n,
                5 => out[2] += n,
                _ => {}
            }
        }
        out
    }

    /// Records a closed connection.
    pub fn closed(&self, code: u16) {
        *lock(&self.closed).entry(code).or_default() += 1;
    }

    /// Records a REST request.
    pub fn rest(&self, endpoint: &'static str, status: u16, took: Duration) {
        *lock(&self.rest).entry((endpoint, status)).or_default() += 1;
        let secs = took.as_secs_f64();
        let mut l = lock(&self.latency);
        let h = l.entry(endpoint).or_default();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text exposition of everything, with gauges read from `state`.
    pub fn render(&self, state: &State) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP herald_connections Open connections on this node (WebSockets and HTTP-fallback sessions).\n# TYPE herald_connections gauge");
        let _ = writeln!(out, "herald_connections {}", state.connection_count());
        let _ = writeln!(out, "# HELP herald_http_sessions Open HTTP-fallback sessions (xhr_streaming, xhr_polling) on this node, included in herald_connections.\n# TYPE herald_http_sessions gauge");
        let _ = writeln!(out, "herald_http_sessions {}", state.sessions.len());
        let mut channels = 0usize;
        let mut members = 0usize;
        let _ = writeln!(out, "# HELP herald_app_connections Open WebSocket connections by app.\n# TYPE herald_app_connections gauge");
        let mut ids = state.hub.app_ids();
        ids.sort();
        for id in &ids {
            let app = state.hub.app(id);
            let _ = writeln!(
                out,
                "herald_app_connections{{app=\"{id}\"}} {}",
                app.connection_count()
            );
            for (_, s) in app.channels("") {
                channels += 1;
                members += s.user_count;
            }
        }
        let _ = writeln!(out, "# HELP herald_channels Occupied channels on this node.\n# TYPE herald_channels gauge\nherald_channels {channels}");
        let _ = writeln!(out, "# HELP herald_presence_members Presence members on this node (per channel).\n# TYPE herald_presence_members gauge\nherald_presence_members {members}");
        counter(
            &mut out,
            "herald_connections_opened_total",
            "WebSocket connections accepted.",
            get(&self.connections_opened),
        );
        let _ = writeln!(out, "# HELP herald_connections_closed_total Connections closed, by close code (0: by the client; 1006: the client vanished without a close frame).\n# TYPE herald_connections_closed_total counter");
        for (code, n) in lock(&self.closed).iter() {
            let _ = writeln!(
                out,
                "herald_connections_closed_total{{code=\"{code}\"}} {n}"
            );
        }
        counter(
            &mut out,
            "herald_messages_in_total",
            "Text frames received from clients.",
            get(&self.messages_in),
        );
        counter(
            &mut out,
            "herald_bytes_in_total",
            "Bytes of text frames received.",
            get(&self.bytes_in),
        );
        counter(
            &mut out,
            "herald_messages_out_total",
            "Frames written to clients.",
            get(&self.messages_out),
        );
        counter(
            &mut out,
            "herald_messages_out_direct_total",
            "Of the frames written, those the fan-out wrote straight to the socket.",
            get(&self.messages_out_direct),
        );
        counter(
            &mut out,
            "herald_bytes_out_total",
            "Bytes of frames written.",
            get(&self.bytes_out),
        );
        let _ = writeln!(out, "# HELP herald_broadcasts_total Broadcasts published, by source.\n# TYPE herald_broadcasts_total counter");
        let _ = writeln!(
            out,
            "herald_broadcasts_total{{source=\"rest\"}} {}",
            get(&self.broadcasts_rest)
        );
        let _ = writeln!(
            out,
            "herald_broadcasts_total{{source=\"client_event\"}} {}",
            get(&self.broadcasts_client)
        );
        counter(
            &mut out,
            "herald_outbox_evictions_total",
            "Connections closed because they could not keep up.",
            get(&self.evictions),
        );
        let _ = writeln!(out, "# HELP herald_app_broadcasts_total Broadcasts published, by app and source.\n# TYPE herald_app_broadcasts_total counter");
        for (id, a) in self.apps() {
            let _ = writeln!(
                out,
                "herald_app_broadcasts_total{{app=\"{id}\",source=\"rest\"}} {}\nherald_app_broadcasts_total{{app=\"{id}\",source=\"client_event\"}} {}",
                get(&a.api_messages),
                get(&a.client_events)
            );
        }
        let _ = writeln!(out, "# HELP herald_rest_requests_total REST requests by endpoint and status.\n# TYPE herald_rest_requests_total counter");
        for ((ep, status), n) in lock(&self.rest).iter() {
            let _ = writeln!(
                out,
                "herald_rest_requests_total{{endpoint=\"{ep}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP herald_rest_request_seconds REST request latency.\n# TYPE herald_rest_request_seconds histogram");
        for (ep, h) in lock(&self.latency).iter() {
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "herald_rest_request_seconds_bucket{{endpoint=\"{ep}\",le=\"{le}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "herald_rest_request_seconds_bucket{{endpoint=\"{ep}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "herald_rest_request_seconds_sum{{endpoint=\"{ep}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "herald_rest_request_seconds_count{{endpoint=\"{ep}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(out, "# HELP herald_adapter_up Whether the adapter reaches its cluster store (1 for the local adapter).\n# TYPE herald_adapter_up gauge");
        let _ = writeln!(
            out,
            "herald_adapter_up {}",
            u8::from(state.adapter.healthy())
        );
        let (pipelines, secs, dropped) = state.adapter.publish_stats();
        counter(
            &mut out,
            "herald_adapter_publish_pipelines_total",
            "Pipelines of broadcasts sent to Redis.",
            pipelines,
        );
        let _ = writeln!(out, "# HELP herald_adapter_publish_seconds_total Time spent sending them (divide by the pipelines for the mean latency).\n# TYPE herald_adapter_publish_seconds_total counter\nherald_adapter_publish_seconds_total {secs}");
        counter(
            &mut out,
            "herald_adapter_dropped_total",
            "Broadcasts for other nodes dropped while Redis was away.",
            dropped,
        );
        let (replayed, gaps) = state.adapter.replay_stats();
        counter(
            &mut out,
            "herald_adapter_replayed_total",
            "Messages from other nodes read from the channel logs after this node's Redis connection dropped.",
            replayed,
        );
        counter(
            &mut out,
            "herald_adapter_replay_gaps_total",
            "Drops of this node's Redis connection after which some messages from other nodes could not be replayed (longer than replay_ms, or the log off).",
            gaps,
        );
        let _ = writeln!(out, "# HELP herald_webhook_queue Webhook events waiting for the dispatcher.\n# TYPE herald_webhook_queue gauge\nherald_webhook_queue {}", state.webhooks.queued());
        let w = state.webhooks.stats();
        counter(
            &mut out,
            "herald_webhook_attempts_total",
            "Webhook delivery attempts.",
            get(&w.attempts),
        );
        counter(
            &mut out,
            "herald_webhook_failures_total",
            "Failed webhook delivery attempts.",
            get(&w.failures),
        );
        counter(
            &mut out,
            "herald_webhook_delivered_total",
            "Webhook requests delivered (2xx).",
            get(&w.delivered),
        );
        counter(
            &mut out,
            "herald_webhook_given_up_total",
            "Webhook events dropped after the retry window.",
            get(&w.given_up),
        );
        counter(
            &mut out,
            "herald_webhook_dropped_total",
            "Webhook events dropped because a queue was full.",
            get(&w.dropped),
        );
        let _ = writeln!(out, "# HELP herald_app_webhooks_total Webhook requests delivered, failed attempts and events given up, by app.\n# TYPE herald_app_webhooks_total counter");
        for (id, [delivered, failed, given_up]) in w.by_app() {
            for (outcome, n) in [
                ("delivered", delivered),
                ("failed", failed),
                ("given_up", given_up),
            ] {
                let _ = writeln!(
                    out,
                    "herald_app_webhooks_total{{app=\"{id}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        if let Some(store) = state.apps.store() {
            store_metrics(&mut out, store);
        }
        out
    }
}

/// The app store's gauges and counters.
fn store_metrics(out: &mut String, store: &crate::store::StoreApps) {
    let st = &store.stats;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let _ = writeln!(out, "# HELP herald_app_store_up Whether the app store database answered the last query.\n# TYPE herald_app_store_up gauge\nherald_app_store_up {}", u8::from(store.is_up()));
    let _ = writeln!(out, "# HELP herald_app_store_cached_apps Apps from the store cached on this node.\n# TYPE herald_app_store_cached_apps gauge\nherald_app_store_cached_apps {}", store.cached_count());
    for (name, help, v) in [
        (
            "herald_app_store_queries_total",
            "Queries sent to the app store (lookups, refreshes, probes).",
            get(&st.queries),
        ),
        (
            "herald_app_store_errors_total",
            "App store queries that failed or timed out.",
            get(&st.errors),
        ),
        (
            "herald_app_store_cache_hits_total",
            "Lookups answered from the cache.",
            get(&st.hits),
        ),
        (
            "herald_app_store_negative_hits_total",
            "Lookups answered unknown from the negative cache.",
            get(&st.negative_hits),
        ),
        (
            "herald_app_store_over_budget_total",
            "Uncached lookups refused because the node's lookups_per_second were spent.",
            get(&st.over_budget),
        ),
        (
            "herald_app_store_bad_rows_total",
            "Rows refused as bad (the reason is logged).",
            get(&st.bad_rows),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
}
