//! The Redis adapter: many herald nodes behave as one.
//!
//! - Every broadcast is delivered locally at once, then published on a per-channel pub/sub
//!   channel that only nodes with local subscribers listen to (sharded pub/sub on a cluster).
//! - Occupancy, subscription counts, presence members and signed-in users live in Redis hashes;
//!   the transitions that produce events are decided by Lua scripts, so exactly one node
//!   announces each one.
//! - Each node keeps its own share in per-node hashes, heartbeats, and reaps dead nodes' shares
//!   (`liveness`). When Redis is away, local delivery goes on; on its return the node rewrites
//!   its share from its own sockets.

mod link;
mod liveness;
mod membership;
mod pubsub;
mod queries;
mod replay;
mod resync;
mod scripts;
mod settle;
mod view;
mod webhook_queue;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, RwLock};

use super::{Adapter, AdapterError, BoxFuture, Claim, Join, LinkView, NodeSeen, SignIn};
use crate::broadcast::Broadcast;
use crate::config::RedisConfig;
use crate::hub::{ChannelStats, CountUpdate, Hub, JoinRefused, Joined, Left};
use crate::protocol::SocketId;
use link::Link;
use pubsub::{Out, SubCmd};
use settle::Settle;
use wire::{Names, Wire};

/// Shared by the adapter and its background tasks.
pub(crate) struct Inner {
    hub: Arc<Hub>,
    /// This node's id (also the first part of its socket ids).
    node: u32,
    names: Names,
    /// The connection; [`Link::Pending`] until the node first reaches Redis.
    link: std::sync::RwLock<Link>,
    /// Where every connection of this node sends pub/sub messages (kept for reconnects).
    push: mpsc::UnboundedSender<redis::PushInfo>,
    config: RedisConfig,
    /// Work for the publisher task (bounded: dropped and counted while Redis is away).
    out: mpsc::Sender<Out>,
    /// Requests for the subscription task.
    subs: mpsc::UnboundedSender<SubCmd>,
    /// Whether the last Redis call succeeded.
    healthy: AtomicBool,
    /// A call failed since the last resync: this node's share in Redis may be wrong.
    stale: AtomicBool,
    /// Broadcasts dropped because the publish queue was full.
    dropped: AtomicU64,
    /// Work the publisher holds back while Redis is away or the cluster settles.
    held: std::sync::atomic::AtomicUsize,
    /// Pipelines sent to Redis by the publisher, and the microseconds they took.
    publishes: AtomicU64,
    publish_micros: AtomicU64,
    /// Where the reaper records the webhooks of a dead node's departures.
    webhooks: crate::webhooks::WebhookSink,
    /// Orders this node's joins, leaves and sign-ins (read) against a resync of its share
    /// (write), so a resync sees each of them either wholly done or not started.
    order: RwLock<()>,
    /// Whether departures can be trusted yet, and the ones held back.
    settle: Settle,
    /// When this node last looked for webhook entries other nodes left idle.
    webhooks_claimed: std::sync::Mutex<Option<std::time::Instant>>,
    /// Where this node stands in each subscribed channel's log.
    cursors: replay::Cursors,
    /// Messages applied from channel logs after a dropped connection.
    replayed: AtomicU64,
    /// Drops of the connection after which messages could not all be replayed.
    replay_gaps: AtomicU64,
}

/// The adapter handle.
#[derive(Clone)]
pub struct RedisAdapter {
    inner: Arc<Inner>,
}

fn adapter_error(e: impl std::fmt::Display) -> AdapterError {
    AdapterError(e.to_string())
}

impl RedisAdapter {
    /// Connects to Redis and starts the background tasks (publisher, subscriptions, incoming
    /// messages, heartbeat and reaper). They stop when `shutdown` flips.
    ///
    /// When Redis cannot be reached, the node starts anyway (a compose file's startup order, a
    /// Redis restart at the wrong moment): it serves its own sockets, reports itself not ready,
    /// and keeps trying to join with backoff; once joined it records its share as after an
    /// outage.
    pub async fn start(
        hub: Arc<Hub>,
        node: u32,
        config: RedisConfig,
        shutdown: watch::Receiver<bool>,
        webhooks: crate::webhooks::WebhookSink,
    ) -> Result<RedisAdapter, AdapterError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::channel(config.publish_queue);
        let (subs_tx, subs_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            hub,
            node,
            names: Names::new(&config.prefix),
            link: std::sync::RwLock::new(Link::Pending),
            push: push_tx,
            config,
            out: out_tx,
            subs: subs_tx,
            healthy: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            held: std::sync::atomic::AtomicUsize::new(0),
            publishes: AtomicU64::new(0),
            publish_micros: AtomicU64::new(0),
            webhooks,
            order: RwLock::new(()),
            settle: Settle::default(),
            webhooks_claimed: std::sync::Mutex::new(None),
            cursors: replay::Cursors::default(),
            replayed: AtomicU64::new(0),
            replay_gaps: AtomicU64::new(0),
        });
        match inner.connect().await {
            Ok(()) => match liveness::heartbeat(&inner).await {
                Ok(_) => {
                    inner.healthy.store(true, Ordering::Release);
                    tracing::info!(node, "joined the cluster through Redis");
                }
                Err(e) => inner.not_joined(&e),
            },
            Err(e) => {
                inner.not_joined(&e);
                tokio::spawn(join(inner.clone(), shutdown.clone()));
            }
        }
        tokio::spawn(pubsub::publisher(inner.clone(), out_rx));
        tokio::spawn(pubsub::subscriptions(inner.clone(), subs_rx));
        tokio::spawn(pubsub::incoming(inner.clone(), push_rx));
        tokio::spawn(liveness::run(inner.clone(), shutdown));
        Ok(RedisAdapter { inner })
    }
}

/// Connects with backoff until it succeeds (or shutdown); the heartbeat then finds Redis
/// reachable and rewrites this node's share.
async fn join(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut wait = Duration::from_millis(200);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::state::shutdown_started(&mut shutdown) => return,
        }
        match inner.connect().await {
            Ok(()) => {
                tracing::info!(node = inner.node, "joined the cluster through Redis");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "Redis still unreachable"),
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

impl Inner {
    fn link(&self) -> Link {
        self.link
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Opens the connection and subscribes to the control channel; on success it becomes the
    /// node's link.
    async fn connect(&self) -> redis::RedisResult<()> {
        let mut link = Link::connect(&self.config, self.push.clone()).await?;
        let control = self.names.control();
        self.cursors.track(&control);
        pubsub::listen(self, &mut link, &control).await?;
        *self
            .link
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = link;
        Ok(())
    }

    /// Logs (once) that the node runs without the cluster for now, and makes it rewrite its
    /// share once Redis answers.
    fn not_joined(&self, e: &redis::RedisError) {
        tracing::warn!(
            node = self.node,
            error = %e,
            "Redis unreachable at start: serving this node's sockets, /ready answers 503, joining when it answers"
        );
        self.healthy.store(false, Ordering::Release);
        self.stale.store(true, Ordering::Release);
    }

    /// Records the outcome of a Redis call; logs once per change.
    fn mark(&self, ok: bool) {
        if !ok {
            self.stale.store(true, Ordering::Release);
        }
        let was = self.healthy.swap(ok, Ordering::AcqRel);
        if was && !ok {
            tracing::warn!(node = self.node, "Redis unreachable: local delivery continues, cluster state will be rewritten when it returns");
        }
    }

    /// Whether Redis answered the last call. While it does not, joins and leaves are decided
    /// here without waiting for timeouts (the heartbeat finds out when it is back, and the
    /// resync then records them).
    /// Also false while the node is stale (a call failed and its share is not rewritten yet):
    /// until the resync, decisions stay local and the resync records them all at once.
    fn reachable(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.stale.load(Ordering::Acquire)
    }

    /// Redis no longer knows this node: rewrite its share at the next heartbeat and hold back
    /// departures until every node had time to rewrite its own.
    fn mark_lost(&self) {
        self.stale.store(true, Ordering::Release);
        self.settle
            .unsettle(Duration::from_millis(self.config.node_timeout_ms));
    }

    /// Local delivery plus publication to the other nodes.
    fn publish(&self, b: Broadcast) {
        self.hub.app(&b.app).deliver(&b);
        self.publish_remote(b);
    }

    /// Publication to the other nodes only (this node's subscribers already have it).
    fn publish_remote(&self, b: Broadcast) {
        // The TTL travels with the broadcast: receivers count it as a cached event (for
        // deferred replays) without storing it.
        if let Some(ttl) = b.cache_ttl {
            let value = serde_json::json!({"event": b.event, "data": b.data}).to_string();
            self.enqueue(Out::Cache {
                key: self.names.cache(&b.app, &b.channel),
                miss: (self.names.announced(&b.app, "miss"), b.channel.clone()),
                value,
                ttl,
            });
        }
        let channel = self.names.channel(&b.app, &b.channel);
        self.publish_wire(
            channel,
            &Wire::Broadcast {
                origin: self.node,
                b,
            },
        );
    }

    /// Applies a subscription-count update locally, retrying later when throttled.
    fn local_count(self: &Arc<Self>, app: &str, channel: &str, count: Option<usize>) {
        if let CountUpdate::Later(wait) = self.hub.app(app).announce_count(channel, count) {
            let inner = self.clone();
            let (app, channel) = (app.to_string(), channel.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let n = inner
                    .channel_stats(&app, &channel)
                    .await
                    .ok()
                    .map(|s| s.subscription_count);
                let _ = inner.hub.app(&app).announce_count(&channel, n.or(count));
            });
        }
    }

    async fn acquire(&self, app: &str, channel: &str) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .subs
            .send(SubCmd::Acquire(self.names.channel(app, channel), tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    fn release(&self, app: &str, channel: &str) {
        let _ = self
            .subs
            .send(SubCmd::Release(self.names.channel(app, channel)));
    }

    /// Announces a user's status here and on every other node.
    fn watch(&self, app: &str, user: &str, online: bool) {
        self.hub.app(app).users().announce(user, online);
        self.watch_remote(app, user, online);
    }

    /// Announces a user's status on the other nodes only.
    fn watch_remote(&self, app: &str, user: &str, online: bool) {
        let w = Wire::Watch {
            origin: self.node,
            app: app.to_string(),
            user: user.to_string(),
            online,
        };
        self.publish_wire(self.names.control(), &w);
    }
}

impl Adapter for RedisAdapter {
    fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    fn publish_stats(&self) -> (u64, f64, u64) {
        let i = &self.inner;
        let micros = i.publish_micros.load(Ordering::Relaxed);
        (
            i.publishes.load(Ordering::Relaxed),
            micros as f64 / 1e6,
            i.dropped.load(Ordering::Relaxed),
        )
    }

    fn replay_stats(&self) -> (u64, u64) {
        (
            self.inner.replayed.load(Ordering::Relaxed),
            self.inner.replay_gaps.load(Ordering::Relaxed),
        )
    }

    fn link_view(&self) -> Option<LinkView> {
        Some(self.inner.link_view())
    }

    fn members(&self) -> BoxFuture<'_, Result<Option<Vec<NodeSeen>>, AdapterError>> {
        Box::pin(async move { self.inner.members().await.map(Some) })
    }

    fn share_view<'a>(&'a self, view: &'a str, ttl: Duration) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.share_view(view, ttl))
    }

    fn publish(&self, b: Broadcast) {
        self.inner.publish(b);
    }

    fn subscribe<'a>(&'a self, j: Join<'a>) -> BoxFuture<'a, Result<Joined, JoinRefused>> {
        Box::pin(self.inner.subscribe(j))
    }

    fn unsubscribe<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
        id: SocketId,
        user_id: Option<&'a str>,
    ) -> BoxFuture<'a, Left> {
        Box::pin(self.inner.unsubscribe(app, channel, id, user_id))
    }

    fn announce_count(&self, app: &str, channel: &str, count: Option<usize>) {
        self.inner.local_count(app, channel, count);
        if let Some(count) = count {
            let w = Wire::Count {
                origin: self.inner.node,
                app: app.to_string(),
                channel: channel.to_string(),
                count,
            };
            self.inner
                .publish_wire(self.inner.names.channel(app, channel), &w);
        }
    }

    fn sign_in<'a>(&'a self, s: SignIn<'a>) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.sign_in(s))
    }

    fn sign_out<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
        id: SocketId,
        watchlist: &'a [String],
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.sign_out(app, user, id, watchlist))
    }

    fn terminate_user<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async move {
            self.inner.hub.app(app).users().terminate(user);
            let w = Wire::Terminate {
                app: app.to_string(),
                user: user.to_string(),
            };
            let mut link = self.inner.link();
            let cmd = link.publish_cmd(&self.inner.names.control(), &w.encode());
            cmd.query_async::<()>(&mut link)
                .await
                .map_err(adapter_error)
        })
    }

    fn cached<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, u64)>, AdapterError>> {
        Box::pin(self.inner.cached(app, channel))
    }

    fn claim_webhook<'a>(
        &'a self,
        app: &'a str,
        claim: Claim<'a>,
        queued: &'a [String],
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.inner.claim(app, claim, queued))
    }

    fn durable_webhooks(&self) -> bool {
        true
    }

    fn settle_departures(&self) -> BoxFuture<'_, ()> {
        Box::pin(liveness::announce_held(&self.inner))
    }

    fn queue_webhooks<'a>(&'a self, entries: &'a [String]) -> BoxFuture<'a, bool> {
        Box::pin(self.inner.queue_webhooks(entries))
    }

    fn take_webhooks(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(self.inner.take_webhooks())
    }

    fn touch_webhooks<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.touch_webhooks(ids))
    }

    fn ack_webhooks<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.ack_webhooks(ids))
    }

    fn channels<'a>(
        &'a self,
        app: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ChannelStats)>, AdapterError>> {
        Box::pin(self.inner.channels(app, prefix))
    }

    fn channel<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelStats, AdapterError>> {
        Box::pin(self.inner.channel_stats(app, channel))
    }

    fn users<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AdapterError>> {
        Box::pin(self.inner.users(app, channel))
    }

    fn connections<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<usize, AdapterError>> {
        Box::pin(self.inner.connections(app))
    }
}

/// How long a node waits between reaper passes, relative to the heartbeat.
pub(crate) fn reap_every(config: &RedisConfig) -> Duration {
    Duration::from_millis(config.heartbeat_ms)
}
