//! The adapter's pub/sub tasks: publishing (batched, bounded), keeping this node subscribed to
//! exactly the channels it has local subscribers for, and applying what other nodes publish.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, oneshot};

use redis::cluster_routing::Slot;

use super::link::Link;
use super::replay::{self, Admit, Gap, StreamId};
use super::wire::Wire;
use super::Inner;

/// Work for the publisher.
#[derive(Debug)]
pub enum Out {
    /// PUBLISH / SPUBLISH.
    Publish {
        /// Pub/sub channel.
        channel: String,
        /// Encoded [`Wire`].
        payload: String,
    },
    /// Store a cache channel's last event (and forget its announced cache miss).
    Cache {
        /// Key.
        key: String,
        /// Announced-misses set and the channel to remove from it.
        miss: (String, String),
        /// JSON `{event, data}`.
        value: String,
        /// Expiry.
        ttl: Duration,
    },
}

/// Most items sent to Redis in one pipeline.
const BATCH: usize = 256;

/// How often held work checks whether it may go out.
const HELD_CHECK: Duration = Duration::from_millis(50);

/// Sends queued work in pipelines, in order. While Redis is unreachable (and until every node
/// had a node timeout to come back and resubscribe: the settle window), work is held, in
/// order and bounded by `publish_queue`, then sent before anything newer; what does not fit,
/// and a batch whose pipeline fails, is dropped, counted and logged. On a Redis Cluster a
/// pipeline may only touch one slot, so the batch is split by slot (order is kept within each
/// slot, hence within each channel).
pub async fn publisher(inner: Arc<Inner>, mut rx: mpsc::Receiver<Out>) {
    let mut held: VecDeque<Out> = VecDeque::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if held.is_empty() {
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
        } else {
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => if n == 0 { return },
                _ = tokio::time::sleep(HELD_CHECK) => {}
            }
        }
        let may_send = inner.reachable() && inner.settle.settled();
        if may_send && held.is_empty() {
            send(&inner, &mut batch).await;
            continue;
        }
        for item in batch.drain(..) {
            if held.len() < inner.config.publish_queue {
                held.push_back(item);
            } else {
                inner.lost(u64::from(item.is_broadcast()), "held while Redis was away");
            }
        }
        while may_send && !held.is_empty() {
            let n = held.len().min(BATCH);
            batch.extend(held.drain(..n));
            send(&inner, &mut batch).await;
        }
        inner
            .held
            .store(held.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl Inner {
    pub(super) fn enqueue(&self, item: Out) {
        if self.out.try_send(item).is_err() {
            self.lost(1, "Redis publish queue full");
        }
    }

    /// Counts broadcasts that will not reach the other nodes (`herald_adapter_dropped_total`);
    /// logs at warn when the total passes a power of two.
    pub(super) fn lost(&self, n: u64, why: &'static str) {
        if n == 0 {
            return;
        }
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        // A power of two was reached: the bit length grew.
        if before.leading_zeros() != after.leading_zeros() {
            tracing::warn!(
                dropped = after,
                reason = why,
                "broadcasts for other nodes dropped"
            );
        }
    }

    pub(super) fn publish_wire(&self, channel: String, w: &Wire) {
        self.enqueue(Out::Publish {
            channel,
            payload: w.encode(),
        });
    }
}

/// Sends one batch (emptying it); a failed pipeline's broadcasts are counted as dropped.
async fn send(inner: &Inner, batch: &mut Vec<Out>) {
    let mut link = inner.link();
    let mut pipes: Vec<(Option<Slot>, redis::Pipeline, u64)> = Vec::new();
    let cluster = matches!(link, Link::Cluster(_));
    for item in batch.drain(..) {
        let slot = cluster.then(|| Slot::for_key(item.routing_key()));
        let at = match pipes.iter().position(|(s, _, _)| *s == slot) {
            Some(at) => at,
            None => {
                pipes.push((slot, redis::pipe(), 0));
                pipes.len() - 1
            }
        };
        pipes[at].2 += u64::from(item.is_broadcast());
        item.add_to(&mut pipes[at].1, &link, inner.config.replay_ms);
    }
    let mut ok = true;
    let started = std::time::Instant::now();
    for (_, pipe, broadcasts) in &pipes {
        let mut sent = pipe.query_async::<()>(&mut link).await;
        if let Err(e) = &sent {
            // Redis forgot the log script (restarted, failed over): load it and send again;
            // nothing in a pipeline whose scripts were all refused took effect but idempotent
            // cache writes.
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                && replay::load(&mut link).await.is_ok()
            {
                sent = pipe.query_async::<()>(&mut link).await;
            }
        }
        if let Err(e) = sent {
            tracing::debug!(error = %e, "publish to Redis failed");
            inner.lost(*broadcasts, "publish to Redis failed");
            ok = false;
        }
    }
    inner
        .publishes
        .fetch_add(pipes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    inner
        .publish_micros
        .fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
    inner.mark(ok);
}

impl Out {
    /// Whether it carries a broadcast (what the dropped count counts).
    fn is_broadcast(&self) -> bool {
        matches!(self, Out::Publish { .. })
    }

    /// The key or channel that decides the cluster slot.
    fn routing_key(&self) -> &str {
        match self {
            Out::Publish { channel, .. } => channel,
            Out::Cache { key, .. } => key,
        }
    }

    fn add_to(self, pipe: &mut redis::Pipeline, link: &Link, replay_ms: u64) {
        match self {
            Out::Publish { channel, payload } if replay_ms > 0 => {
                pipe.add_command(replay::log_cmd(link, &channel, &payload, replay_ms))
                    .ignore();
            }
            Out::Publish { channel, payload } => {
                pipe.add_command(link.publish_cmd(&channel, &payload))
                    .ignore();
            }
            Out::Cache {
                key,
                miss,
                value,
                ttl,
            } => {
                // The cache key and the announced-misses set share the `{prefix}` hash tag.
                pipe.cmd("SREM").arg(miss.0).arg(miss.1).ignore();
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .ignore();
            }
        }
    }
}

/// Requests for the subscription task.
#[derive(Debug)]
pub enum SubCmd {
    /// One more local subscriber of this pub/sub channel; replies once subscribed.
    Acquire(String, oneshot::Sender<()>),
    /// One fewer.
    Release(String),
    /// Subscribe again to everything (after Redis came back).
    Resubscribe(oneshot::Sender<()>),
}

/// Owns the node's pub/sub subscriptions: one Redis subscription per channel with local
/// subscribers, changed in the order the requests arrive. While Redis is unreachable nothing
/// waits for it: the counts are kept and `Resubscribe` (after it returns) catches up.
pub async fn subscriptions(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<SubCmd>) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    // Released while Redis was away: unsubscribed when it is back.
    let mut orphans: HashSet<String> = HashSet::new();
    while let Some(cmd) = rx.recv().await {
        // Taken per command: the node may have joined (or reconnected) since.
        let mut link = inner.link();
        match cmd {
            SubCmd::Acquire(channel, done) => {
                orphans.remove(&channel);
                let n = counts.entry(channel.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    inner.cursors.track(&channel);
                }
                // Only Redis answering matters here, not whether this node's share awaits its
                // rewrite (stale): skipping the SUBSCRIBE then would lose what others publish
                // on the channel until the resync resubscribes.
                if *n == 1 && inner.healthy.load(std::sync::atomic::Ordering::Acquire) {
                    let r = listen(&inner, &mut link, &channel).await;
                    inner.mark(r.is_ok());
                }
                let _ = done.send(());
            }
            SubCmd::Release(channel) => {
                if let Some(n) = counts.get_mut(&channel) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&channel);
                        inner.cursors.forget(&channel);
                        if inner.reachable() {
                            let r = link.unsubscribe(&channel).await;
                            inner.mark(r.is_ok());
                        } else {
                            orphans.insert(channel);
                        }
                    }
                }
            }
            SubCmd::Resubscribe(done) => {
                let mut ok = link.subscribe(&inner.names.control()).await.is_ok();
                for channel in counts.keys() {
                    ok &= link.subscribe(channel).await.is_ok();
                }
                for channel in std::mem::take(&mut orphans) {
                    ok &= link.unsubscribe(&channel).await.is_ok();
                }
                inner.mark(ok);
                let _ = done.send(());
            }
        }
    }
}

/// Subscribes to a pub/sub channel, first noting where its log ends (with the log on): a
/// catch-up after a dropped connection starts there.
pub(super) async fn listen(
    inner: &Inner,
    link: &mut Link,
    channel: &str,
) -> redis::RedisResult<()> {
    if inner.config.replay_ms == 0 {
        return link.subscribe(channel).await;
    }
    // Both go out on the multiplexed connection at once, the log's end first.
    let mut other = link.clone();
    let (tail, subscribed) =
        tokio::join!(replay::tail(&mut other, channel), link.subscribe(channel));
    if let Ok(floor) = tail {
        inner.cursors.floor(channel, floor);
    }
    subscribed
}

/// How often channels that may have missed messages read their logs.
const SWEEP: Duration = Duration::from_millis(250);

/// Applies messages from other nodes to this node's hub; after the connection dropped, reads
/// what it missed from the channels' logs first.
pub async fn incoming(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<PushInfo>) {
    loop {
        let push = if inner.cursors.any_gap() {
            tokio::select! {
                push = rx.recv() => push,
                _ = tokio::time::sleep(SWEEP) => {
                    replay::sweep(&inner).await;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(push) = push else { return };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {}
            PushKind::Disconnection => {
                inner.disconnected();
                continue;
            }
            _ => continue,
        }
        let text = |i: usize| {
            push.data
                .get(i)
                .and_then(|v| redis::from_redis_value::<Vec<u8>>(v.clone()).ok())
        };
        let (Some(channel), Some(payload)) = (text(0), text(1)) else {
            continue;
        };
        if let Some(id) = StreamId::of_message(&payload) {
            let channel = String::from_utf8_lossy(&channel);
            match inner.cursors.admit(&channel, id) {
                Admit::Apply => {}
                Admit::Duplicate => continue,
                Admit::CatchUp(from, since) => {
                    let gap = Gap {
                        from,
                        until: Some(id),
                        since,
                        first: true,
                    };
                    if let Err(e) = replay::catch_up(&inner, &channel, gap).await {
                        tracing::debug!(error = %e, "reading the channel log failed");
                        inner.replay_gap(&channel, "the channel log could not be read");
                    }
                }
            }
        }
        apply(&inner, &payload);
    }
}

/// Applies one message from another node (from pub/sub or from a channel's log).
pub(super) fn apply(inner: &Arc<Inner>, payload: &[u8]) {
    let Some(wire) = Wire::decode(payload) else {
        tracing::warn!("undecodable message on Redis pub/sub ignored");
        return;
    };
    if wire.origin() == Some(inner.node) {
        return;
    }
    match wire {
        // A departure decided while this node was cut off (it was reaped although alive)
        // is not shown to this node's clients while the user still has a socket here.
        Wire::Member { b } if departed_but_here(inner, &b) => {}
        Wire::Member { b } => inner.hub.app(&b.app).deliver(&b),
        // The cache lives in Redis; no copy is kept here.
        Wire::Broadcast { b, .. } => inner.hub.app(&b.app).deliver_from_cluster(&b),
        Wire::Count {
            app,
            channel,
            count,
            ..
        } => inner.local_count(&app, &channel, Some(count)),
        Wire::Terminate { app, user } => {
            inner.hub.app(&app).users().terminate(&user);
        }
        Wire::Watch {
            app, user, online, ..
        } => inner.hub.app(&app).users().announce(&user, online),
    }
}

/// Whether a member event says a user left a channel in which it still has a socket here.
fn departed_but_here(inner: &Inner, b: &crate::broadcast::Broadcast) -> bool {
    if b.event != "pusher_internal:member_removed" {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Departed {
        user_id: String,
    }
    serde_json::from_str::<Departed>(&b.data).is_ok_and(|d| {
        inner
            .hub
            .app(&b.app)
            .member_info(&b.channel, &d.user_id)
            .is_some()
    })
}
