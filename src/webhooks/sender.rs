//! One receiver's delivery worker: batching, signing, sending, and retrying with exponential
//! backoff and jitter until the retry window closes. Deliveries to one receiver keep their order.

mod failure_log;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::body;
use super::{Outcome, Stats};
use crate::config::{WebhookConfig, WebhookSettings};
use failure_log::FailureLog;

/// The HTTP(S) client shared by every receiver.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the client (webpki roots; plain http allowed).
pub fn client() -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

/// What a worker needs.
pub struct Target {
    /// The receiver.
    pub config: WebhookConfig,
    /// App key for `X-Pusher-Key`.
    pub key: String,
    /// App secret for the signature. Never logged.
    pub secret: String,
    /// Delivery settings.
    pub settings: WebhookSettings,
    /// App id, for the dashboard's log.
    pub app: String,
    /// The dashboard's event bus.
    pub dashboard: crate::dashboard::DashboardBus,
    /// The durable queue the jobs' entries come from (Redis mode): touched while retrying,
    /// acknowledged once delivered or given up.
    pub store: Option<Arc<dyn crate::adapter::Adapter>>,
}

/// One event for a receiver, with its durable queue entry when there is one.
#[derive(Debug)]
pub struct Job {
    /// The event object.
    pub event: Value,
    /// Its entry in the durable queue.
    pub entry: Option<Entry>,
}

/// A durable queue entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stable id (the stream entry's), sent as `X-Herald-Webhook-Id`.
    pub id: String,
    /// When the transition happened (ms): the retry window runs from here, on any node.
    pub created_ms: u64,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs until the dispatcher drops the queue (after it is drained) or tells it to stop.
pub async fn run(
    target: Target,
    client: HttpClient,
    stats: Arc<Stats>,
    mut rx: mpsc::Receiver<Job>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = target.config.batch_max.max(1);
    let window = Duration::from_millis(target.config.batch_ms);
    let mut batch = Vec::with_capacity(max.min(64));
    let mut failures = FailureLog::default();
    loop {
        let first = tokio::select! {
            biased;
            v = rx.recv() => match v { Some(v) => v, None => return },
            _ = crate::state::shutdown_started(&mut shutdown) => return,
        };
        batch.push(first);
        if !window.is_zero() {
            let deadline = Instant::now() + window;
            while batch.len() < max {
                tokio::select! {
                    v = rx.recv() => match v { Some(v) => batch.push(v), None => break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let events: Vec<Value> = batch.iter().map(|j: &Job| j.event.clone()).collect();
        let ids: Vec<String> = batch
            .iter()
            .filter_map(|j| j.entry.as_ref().map(|e| e.id.clone()))
            .collect();
        let since = batch
            .iter()
            .filter_map(|j| j.entry.as_ref().map(|e| e.created_ms))
            .min();
        batch.clear();
        let payload = body::body(now_ms(), &events);
        let sending = Sending {
            payload,
            ids: &ids,
            since,
        };
        if !deliver(
            &target,
            &client,
            &stats,
            sending,
            &mut failures,
            &mut shutdown,
        )
        .await
        {
            stats.record(&target.app, Outcome::GivenUp(events.len() as u64));
        }
        if let Some(store) = &target.store {
            store.ack_webhooks(&ids).await;
        }
    }
}

/// One request body and what it carries.
struct Sending<'a> {
    payload: String,
    /// Durable entries in it.
    ids: &'a [String],
    /// The oldest entry's transition time (ms), when durable.
    since: Option<u64>,
}

/// Sends one body until a 2xx or the retry window closes; returns whether it was delivered.
async fn deliver(
    target: &Target,
    client: &HttpClient,
    stats: &Stats,
    sending: Sending<'_>,
    failures: &mut FailureLog,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let receiver = failure_log::redacted(&target.config.url);
    let signature = body::signature(&target.secret, &sending.payload);
    let payload = Bytes::from(sending.payload);
    let ids = sending.ids.join(",");
    // The window runs from the transition, also when another node started the retries.
    let age = Duration::from_millis(sending.since.map_or(0, |t| now_ms().saturating_sub(t)));
    let started = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    let window = Duration::from_secs(target.settings.retry_window_secs);
    let timeout = Duration::from_millis(target.settings.timeout_ms);
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let outcome = match request(target, &payload, &signature, &ids) {
            Some(req) => match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(res)) => {
                    let status = res.status();
                    // Drain the body so the connection can be reused.
                    let _ = res.into_body().collect().await;
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("HTTP {status}"))
                    }
                }
                Ok(Err(e)) => Err(failure_log::with_causes(&e)),
                Err(_) => Err("timed out".to_string()),
            },
            None => Err("invalid request".to_string()),
        };
        match outcome {
            Ok(()) => {
                stats.record(&target.app, Outcome::Delivered);
                target.dashboard.emit(&target.app, "webhook_sent", |e| {
                    e.detail = Some(receiver.clone())
                });
                return true;
            }
            Err(why) => {
                stats.record(&target.app, Outcome::Failed);
                target.dashboard.emit(&target.app, "webhook_failed", |e| {
                    e.detail = Some(format!("{receiver}: {why}"))
                });
                let jitter = 0.5 + rand::random::<f64>();
                let wait = backoff.mul_f64(jitter);
                if started.elapsed() + wait > window {
                    tracing::warn!(app = %target.app, receiver = %receiver, attempts = attempt, reason = %why, "webhook dropped after the retry window");
                    return false;
                }
                // Never the secret, signature, headers or the URL's credentials and query.
                match failures.record(Instant::now()) {
                    Some(held_back) => {
                        tracing::warn!(app = %target.app, receiver = %receiver, attempt, reason = %why, held_back, "webhook delivery failed; retrying (at most one line per receiver per minute)")
                    }
                    None => {
                        tracing::debug!(app = %target.app, receiver = %receiver, attempt, reason = %why, "webhook delivery failed; retrying")
                    }
                }
                // Still ours: no other node takes these entries over meanwhile.
                if let Some(store) = &target.store {
                    store.touch_webhooks(sending.ids).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = crate::state::shutdown_started(shutdown) => return false,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn request(
    target: &Target,
    payload: &Bytes,
    signature: &str,
    ids: &str,
) -> Option<Request<Full<Bytes>>> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(&target.config.url)
        .header(CONTENT_TYPE, "application/json")
        .header("X-Pusher-Key", &target.key)
        .header("X-Pusher-Signature", signature)
        .body(Full::new(payload.clone()))
        .ok()?;
    if !ids.is_empty() {
        // Stable across retries and nodes: a receiver drops what it already has.
        if let Ok(v) = HeaderValue::from_str(ids) {
            req.headers_mut().insert("X-Herald-Webhook-Id", v);
        }
    }
    for (k, v) in &target.config.headers {
        let (Ok(k), Ok(v)) = (k.parse::<HeaderName>(), HeaderValue::from_str(v)) else {
            continue;
        };
        req.headers_mut().insert(k, v);
    }
    Some(req)
}
