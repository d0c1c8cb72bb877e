//! Routing webhooks to receivers: what each receiver wants, one delivery worker per receiver
//! (rebuilt when its settings change), and, in Redis mode, the durable queue every node serves.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::body::Emitted;
use super::sender::{self, Entry, Job};
use super::Dispatcher;
use crate::adapter::Claim;
use crate::app::App;

/// Reads of the durable queue per pump at most, and the batch size that means "more waiting"
/// (the Redis adapter's batch).
const PUMP_ROUNDS: usize = 16;
const PUMP_FULL: usize = 256;

/// A receiver's delivery worker and the settings it was built with.
pub(super) struct Worker {
    config: crate::config::WebhookConfig,
    key: String,
    /// Compared only, never logged.
    secret: String,
    tx: mpsc::Sender<Job>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Dispatcher {
    /// The event as each receiver that wants it gets it: `(receiver index, event object)`.
    pub(super) fn wanted(&self, app: &App, event: &Emitted, count: usize) -> Vec<(usize, Value)> {
        let json = event.to_json(count);
        app.webhooks
            .iter()
            .enumerate()
            .filter(|(_, w)| w.wants(event.name(), event.channel()))
            .map(|(i, _)| (i, json.clone()))
            .collect()
    }

    /// Claims the transition (when there is one) and hands the event to its receivers: through
    /// the durable queue, written in the same step as the claim, or to this node's workers.
    pub(super) async fn dispatch(
        &mut self,
        app: &App,
        claim: Option<Claim<'_>>,
        wanted: Vec<(usize, Value)>,
    ) {
        if self.adapter.durable_webhooks() {
            let at = now_ms();
            let entries: Vec<String> = wanted
                .iter()
                .filter_map(|(i, event)| {
                    let url = &app.webhooks.get(*i)?.url;
                    Some(
                        json!({"app": app.id, "r": i, "url": url, "at": at, "event": event})
                            .to_string(),
                    )
                })
                .collect();
            match claim {
                Some(c) => {
                    let _ = self.adapter.claim_webhook(&app.id, c, &entries).await;
                }
                None if entries.is_empty() => {}
                None => {
                    if !self.adapter.queue_webhooks(&entries).await {
                        self.stats
                            .dropped
                            .fetch_add(entries.len() as u64, Ordering::Relaxed);
                        tracing::warn!(app = %app.id, "webhook events dropped: the store is away");
                    }
                }
            }
            return;
        }
        if let Some(c) = claim {
            if !self.adapter.claim_webhook(&app.id, c, &[]).await {
                return;
            }
        }
        for (i, event) in wanted {
            let job = Job { event, entry: None };
            if !self.send_to(app, i, job) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reads the durable queue and hands its entries to this node's workers. An entry whose app
    /// or receiver is gone is dropped; one that does not fit a worker's queue stays in the queue
    /// (and is taken over after a node timeout).
    pub(super) async fn pump(&mut self) {
        // A full batch means more may be waiting: read again, a bounded number of times.
        for _ in 0..PUMP_ROUNDS {
            let entries = self.adapter.take_webhooks().await;
            let full = entries.len() >= PUMP_FULL;
            self.hand_out(entries).await;
            if !full {
                break;
            }
        }
    }

    async fn hand_out(&mut self, entries: Vec<(String, String)>) {
        for (id, raw) in entries {
            let v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
            let app = v["app"].as_str().and_then(|a| self.apps.by_id(a));
            let url = v["url"].as_str().unwrap_or_default();
            // The receiver at the recorded position, or wherever that URL is now.
            let receiver = app.as_ref().and_then(|app| {
                let at = v["r"].as_u64().and_then(|r| usize::try_from(r).ok());
                at.filter(|i| app.webhooks.get(*i).is_some_and(|w| w.url == url))
                    .or_else(|| app.webhooks.iter().position(|w| w.url == url))
            });
            let (Some(app), Some(i)) = (app, receiver) else {
                self.adapter.ack_webhooks(std::slice::from_ref(&id)).await;
                continue;
            };
            let job = Job {
                event: v["event"].clone(),
                entry: Some(Entry {
                    id,
                    created_ms: v["at"].as_u64().unwrap_or_else(now_ms),
                }),
            };
            let _ = self.send_to(&app, i, job);
        }
    }

    /// Queues a job for receiver `i` of the app, (re)building its worker when the receiver's
    /// settings or the app's key or secret changed, so a reload takes effect for the next event;
    /// workers of receivers that no longer exist are dropped. False if its queue is full.
    fn send_to(&mut self, app: &App, i: usize, job: Job) -> bool {
        let Some(w) = app.webhooks.get(i) else {
            return false;
        };
        let slot = (app.id.clone(), i);
        self.targets
            .retain(|(id, n), _| id != &app.id || *n < app.webhooks.len());
        let current = self
            .targets
            .get(&slot)
            .is_some_and(|t| t.config == *w && t.key == app.key && t.secret == app.secret());
        if !current {
            let (tx, rx) = mpsc::channel(self.settings.queue.max(1));
            let target = sender::Target {
                config: w.clone(),
                key: app.key.clone(),
                secret: app.secret().to_string(),
                settings: self.settings.clone(),
                app: app.id.clone(),
                dashboard: self.dashboard.clone(),
                store: self
                    .adapter
                    .durable_webhooks()
                    .then(|| self.adapter.clone()),
            };
            let task = tokio::spawn(sender::run(
                target,
                self.client.clone(),
                self.stats.clone(),
                rx,
                self.stop.subscribe(),
            ));
            // A replaced worker finishes what it has queued, then stops.
            let worker = Worker {
                config: w.clone(),
                key: app.key.clone(),
                secret: app.secret().to_string(),
                tx,
                task,
            };
            self.targets.insert(slot.clone(), worker);
        }
        self.targets
            .get(&slot)
            .is_some_and(|worker| worker.tx.try_send(job).is_ok())
    }
}
