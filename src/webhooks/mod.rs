//! Webhooks: recording the events, deciding (with the adapter, cluster-wide) which transitions
//! are announced, the grace period for vacated/removed, batching, signing and delivery with
//! retries. Everything runs in background tasks; the publish path only does a `try_send`.

pub mod body;
mod route;
mod sender;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::adapter::{Adapter, Claim};
use crate::app::{App, AppStore};
use crate::config::WebhookSettings;
pub use body::Emitted;

/// Delivery counters (exposed as metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Events dropped because a queue was full.
    pub dropped: AtomicU64,
    /// Delivery attempts.
    pub attempts: AtomicU64,
    /// Failed attempts.
    pub failures: AtomicU64,
    /// Requests delivered (2xx).
    pub delivered: AtomicU64,
    /// Events given up after the retry window.
    pub given_up: AtomicU64,
    /// The three above by app id: delivered, failed, given up.
    by_app: std::sync::Mutex<std::collections::BTreeMap<String, [u64; 3]>>,
}

/// What became of a webhook request, for [`Stats::record`].
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// Delivered (2xx).
    Delivered,
    /// An attempt failed.
    Failed,
    /// `n` events given up after the retry window.
    GivenUp(u64),
}

impl Stats {
    /// Counts an outcome in the totals and for the app.
    pub fn record(&self, app: &str, outcome: Outcome) {
        let (total, slot, n) = match outcome {
            Outcome::Delivered => (&self.delivered, 0, 1),
            Outcome::Failed => (&self.failures, 1, 1),
            Outcome::GivenUp(n) => (&self.given_up, 2, n),
        };
        total.fetch_add(n, Ordering::Relaxed);
        let mut by_app = self
            .by_app
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_app.entry(app.to_string()).or_default()[slot] += n;
    }

    /// Delivered, failed and given up, by app id.
    pub fn by_app(&self) -> Vec<(String, [u64; 3])> {
        self.by_app
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// Where connections and the adapter record webhook events. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WebhookSink {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
}

#[derive(Debug)]
enum Msg {
    /// A recorded event (app id, event).
    Event(String, Emitted),
    /// A throttled subscription count is due.
    FlushCount(String, String),
    /// A vacated/removed event whose grace period is over.
    Graced(String, Emitted),
    /// A transition Redis had lost and a resync recreated: recorded as announced, not sent.
    Restored(String, Emitted),
    /// Answered once everything queued before it was handled (at shutdown).
    Flush(oneshot::Sender<()>),
}

/// Events waiting for the dispatcher before new ones are dropped.
const DISPATCH_QUEUE: usize = 65_536;
/// Subscription counts of bigger channels are sent at most once per [`COUNT_EVERY`].
const COUNT_THROTTLE_ABOVE: usize = 100;
const COUNT_EVERY: Duration = Duration::from_secs(5);

impl WebhookSink {
    /// A sink and the receiving end for [`start`].
    pub fn new() -> (WebhookSink, WebhookSource) {
        let (tx, rx) = mpsc::channel(DISPATCH_QUEUE);
        let stats = Arc::new(Stats::default());
        (
            WebhookSink {
                tx: tx.clone(),
                stats: stats.clone(),
            },
            WebhookSource { rx, tx, stats },
        )
    }

    /// Records an event of an app, if any of its receivers wants that type or its pair.
    pub fn emit(&self, app: &App, event: Emitted) {
        if relevant(app, &event) {
            self.emit_for(&app.id, event);
        }
    }

    /// Records an event by app id (the dispatcher checks the app's receivers).
    pub fn emit_for(&self, app: &str, event: Emitted) {
        self.send(Msg::Event(app.to_string(), event));
    }

    /// Records a transition recreated by a resync as announced, without sending it.
    pub fn restored(&self, app: &str, event: Emitted) {
        self.send(Msg::Restored(app.to_string(), event));
    }

    /// Waits (at most `wait`) until the dispatcher handled everything recorded so far: at
    /// shutdown, after the last sockets closed, so their departures release what they claimed.
    pub async fn flush(&self, wait: Duration) {
        let (tx, rx) = oneshot::channel();
        let sent = tokio::time::timeout(wait, self.tx.send(Msg::Flush(tx)));
        if matches!(sent.await, Ok(Ok(()))) {
            let _ = tokio::time::timeout(wait, rx).await;
        }
    }

    fn send(&self, msg: Msg) {
        if self.tx.try_send(msg).is_err() {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(dropped = n + 1, "webhook queue full: events dropped");
            }
        }
    }

    /// Delivery counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Events waiting for the dispatcher.
    pub fn queued(&self) -> usize {
        DISPATCH_QUEUE - self.tx.capacity()
    }
}

/// The receiving end, consumed by [`start`].
pub struct WebhookSource {
    rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
}

/// Starts the dispatcher (and, lazily, one worker per receiver).
pub fn start(
    source: WebhookSource,
    apps: Arc<dyn AppStore>,
    adapter: Arc<dyn Adapter>,
    settings: WebhookSettings,
    shutdown: watch::Receiver<bool>,
    dashboard: crate::dashboard::DashboardBus,
) {
    let d = Dispatcher {
        dashboard,
        apps,
        adapter,
        settings,
        shutdown,
        stats: source.stats,
        loopback: source.tx,
        client: sender::client(),
        targets: HashMap::new(),
        counts: HashMap::new(),
        stop: watch::channel(false).0,
        graces: 0,
        flush: None,
    };
    tokio::spawn(d.run(source.rx));
}

/// Per channel: when the last subscription_count went out and whether a flush is scheduled.
#[derive(Debug, Default)]
struct CountState {
    last: Option<Instant>,
    scheduled: bool,
}

struct Dispatcher {
    dashboard: crate::dashboard::DashboardBus,
    apps: Arc<dyn AppStore>,
    adapter: Arc<dyn Adapter>,
    settings: WebhookSettings,
    shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
    loopback: mpsc::Sender<Msg>,
    client: sender::HttpClient,
    /// (app id, receiver index) → its worker.
    targets: HashMap<(String, usize), route::Worker>,
    counts: HashMap<(String, String), CountState>,
    /// Stops the workers' retries once the dispatcher is done (they outlive the server's
    /// shutdown signal, so the departures of the last closing sockets still go out).
    stop: watch::Sender<bool>,
    /// Vacated/removed events waiting out their grace period.
    graces: usize,
    /// The server's flush at shutdown, answered once no grace period is pending.
    flush: Option<oneshot::Sender<()>>,
}

/// How long the dispatcher keeps handling departures after shutdown started, at most.
const AFTER_SHUTDOWN: Duration = Duration::from_secs(30);
/// How often the durable queue is read (Redis mode).
const PUMP_EVERY: Duration = Duration::from_millis(100);
/// How long the workers get to send what is queued once the dispatcher is done.
const WORKERS_DRAIN: Duration = Duration::from_secs(2);

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut shutdown = self.shutdown.clone();
        let mut stop_by: Option<Instant> = None;
        let durable = self.adapter.durable_webhooks();
        let mut pump = tokio::time::interval(PUMP_EVERY);
        pump.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => return self.finish().await },
                _ = pump.tick(), if durable => {
                    self.pump().await;
                    continue;
                }
                // The sockets closing now still emit departures: keep handling them, grace
                // periods included, until the server flushes.
                _ = crate::state::shutdown_started(&mut shutdown), if stop_by.is_none() => {
                    stop_by = Some(Instant::now() + AFTER_SHUTDOWN);
                    continue;
                }
                _ = tokio::time::sleep_until(stop_by.unwrap_or_else(Instant::now)), if stop_by.is_some() => {
                    return self.finish().await;
                }
            };
            match msg {
                Msg::Flush(done) => self.flush = Some(done),
                Msg::Restored(app, event) => self.restored(app, event).await,
                Msg::Event(app, event) => self.handle(app, event).await,
                Msg::Graced(app, event) => {
                    self.graces = self.graces.saturating_sub(1);
                    self.graced(app, event).await;
                }
                Msg::FlushCount(app, channel) => {
                    if let Some(s) = self.counts.get_mut(&(app.clone(), channel.clone())) {
                        s.scheduled = false;
                        s.last = None;
                    }
                    self.handle(app, Emitted::SubscriptionCount(channel)).await;
                }
            }
            if self.flush.is_some() && self.graces == 0 {
                return self.finish().await;
            }
        }
    }

    async fn handle(&mut self, app_id: String, event: Emitted) {
        let Some(app) = self.apps.by_id(&app_id) else {
            return;
        };
        if !relevant(&app, &event) || channel_is_internal(event.channel()) {
            return;
        }
        let claim = match &event {
            Emitted::Occupied(c) => Some(Claim::Occupied(c)),
            Emitted::MemberAdded(c, u) => Some(Claim::MemberAdded(c, u)),
            Emitted::CacheMiss(c) => Some(Claim::CacheMiss(c)),
            Emitted::Vacated(_) | Emitted::MemberRemoved(..) => {
                self.after_grace(app_id, event);
                return;
            }
            Emitted::ClientEvent { .. } | Emitted::SubscriptionCount(_) => None,
        };
        let mut count = 0;
        if let Emitted::SubscriptionCount(channel) = &event {
            match self.count_due(&app_id, channel).await {
                Some(n) => count = n,
                None => return,
            }
        }
        let wanted = self.wanted(&app, &event, count);
        self.dispatch(&app, claim, wanted).await;
    }

    /// Records a recreated occupancy or membership as announced, sending nothing.
    async fn restored(&mut self, app_id: String, event: Emitted) {
        let Some(app) = self.apps.by_id(&app_id) else {
            return;
        };
        if !relevant(&app, &event) || channel_is_internal(event.channel()) {
            return;
        }
        let claim = match &event {
            Emitted::Occupied(c) => Claim::Occupied(c),
            Emitted::MemberAdded(c, u) => Claim::MemberAdded(c, u),
            _ => return,
        };
        let _ = self.adapter.claim_webhook(&app_id, claim, &[]).await;
    }

    /// At shutdown, once nothing waits out a grace period: lets the workers send what they
    /// have queued (bounded), stops their retries, and answers the server's flush.
    async fn finish(mut self) {
        let tasks: Vec<_> = self.targets.drain().map(|(_, w)| w.task).collect();
        let _ = tokio::time::timeout(WORKERS_DRAIN, futures_util::future::join_all(tasks)).await;
        let _ = self.stop.send(true);
        if let Some(done) = self.flush.take() {
            let _ = done.send(());
        }
    }

    /// Vacated and removed wait for the grace period, then come back as [`Msg::Graced`].
    fn after_grace(&mut self, app_id: String, event: Emitted) {
        self.graces += 1;
        let tx = self.loopback.clone();
        let grace = Duration::from_millis(self.settings.grace_ms);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tx.send(Msg::Graced(app_id, event)).await;
        });
    }

    /// Sent only if still true and not yet announced: a re-join within the grace period
    /// cancels both webhooks.
    async fn graced(&mut self, app_id: String, event: Emitted) {
        let Some(app) = self.apps.by_id(&app_id) else {
            return;
        };
        let claim = match &event {
            Emitted::Vacated(c) => Claim::Vacated(c),
            Emitted::MemberRemoved(c, u) => Claim::MemberRemoved(c, u),
            _ => return,
        };
        let wanted = self.wanted(&app, &event, 0);
        self.dispatch(&app, Some(claim), wanted).await;
    }

    /// Throttles subscription counts of big channels; returns the count to send now.
    async fn count_due(&mut self, app: &str, channel: &str) -> Option<usize> {
        let n = self
            .adapter
            .channel(app, channel)
            .await
            .ok()?
            .subscription_count;
        let state = self
            .counts
            .entry((app.to_string(), channel.to_string()))
            .or_default();
        let now = Instant::now();
        if n > COUNT_THROTTLE_ABOVE {
            if let Some(last) = state.last.filter(|l| now.duration_since(*l) < COUNT_EVERY) {
                if !state.scheduled {
                    state.scheduled = true;
                    let tx = self.loopback.clone();
                    let (a, c) = (app.to_string(), channel.to_string());
                    let wait = COUNT_EVERY - now.duration_since(last);
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let _ = tx.send(Msg::FlushCount(a, c)).await;
                    });
                }
                return None;
            }
            state.last = Some(now);
        } else {
            self.counts.remove(&(app.to_string(), channel.to_string()));
        }
        Some(n)
    }
}

/// Whether any receiver of the app wants the event or the transition paired with it.
fn relevant(app: &App, event: &Emitted) -> bool {
    event.paired_names().iter().any(|n| app.wants_webhook(n))
}

/// `#server-to-user-` channels produce no webhooks.
fn channel_is_internal(channel: &str) -> bool {
    channel.starts_with(crate::protocol::channel::SERVER_TO_USER_PREFIX)
}
