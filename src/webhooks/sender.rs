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
use super::Stats;
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
    mut rx: mpsc::Receiver<Value>,
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
        let payload = body::body(now_ms(), &batch);
        let events = batch.len();
        batch.clear();
        if !deliver(
            &target,
            &client,
            &stats,
            payload,
            &mut failures,
            &mut shutdown,
        )
        .await
        {
            stats.given_up.fetch_add(events as u64, Ordering::Relaxed);
        }
    }
}

/// Sends one body until a 2xx or the retry window closes; returns whether it was delivered.
async fn deliver(
    target: &Target,
    client: &HttpClient,
    stats: &Stats,
    payload: String,
    failures: &mut FailureLog,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let receiver = failure_log::redacted(&target.config.url);
    let signature = body::signature(&target.secret, &payload);
    let payload = Bytes::from(payload);
    let started = Instant::now();
    let window = Duration::from_secs(target.settings.retry_window_secs);
    let timeout = Duration::from_millis(target.settings.timeout_ms);
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let outcome = match request(target, &payload, &signature) {
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
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                target.dashboard.emit(&target.app, "webhook_sent", |e| {
                    e.detail = Some(receiver.clone())
                });
                return true;
            }
            Err(why) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
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
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = crate::state::shutdown_started(shutdown) => return false,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn request(target: &Target, payload: &Bytes, signature: &str) -> Option<Request<Full<Bytes>>> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(&target.config.url)
        .header(CONTENT_TYPE, "application/json")
        .header("X-Pusher-Key", &target.key)
        .header("X-Pusher-Signature", signature)
        .body(Full::new(payload.clone()))
        .ok()?;
    for (k, v) in &target.config.headers {
        let (Ok(k), Ok(v)) = (k.parse::<HeaderName>(), HeaderValue::from_str(v)) else {
            continue;
        };
        req.headers_mut().insert(k, v);
    }
    Some(req)
}
