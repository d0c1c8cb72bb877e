//! The boundary between one node and the cluster: publishing broadcasts, (un)subscribing with
//! cluster-wide presence decisions, and channel queries. `local` serves a single node; the
//! Redis adapter implements the same trait for many nodes.

pub mod local;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::broadcast::Broadcast;
use crate::hub::{ChannelStats, JoinRefused, Joined, Left};
use crate::outbox::Outbox;
use crate::protocol::presence::Member;
use crate::protocol::SocketId;

/// A boxed future, so the trait can be used as `dyn Adapter`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An adapter failure (e.g. Redis unreachable); REST answers 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError(pub String);

impl std::fmt::Display for AdapterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "adapter unavailable: {}", self.0)
    }
}

/// A subscription request as the connection hands it over.
#[derive(Debug)]
pub struct Join<'a> {
    /// App id.
    pub app: &'a str,
    /// Channel name (already validated and authorized).
    pub channel: &'a str,
    /// The subscribing connection's outbox.
    pub conn: &'a Arc<Outbox>,
    /// Presence member, on presence channels.
    pub member: Option<&'a Member>,
    /// Presence member cap.
    pub max_members: usize,
    /// Queue `subscription_succeeded` (false for the implicit `#server-to-user-` join).
    pub announce: bool,
}

/// A signed-in connection as the adapter takes it.
#[derive(Debug)]
pub struct SignIn<'a> {
    /// App id.
    pub app: &'a str,
    /// User id.
    pub user: &'a str,
    /// The connection.
    pub conn: &'a Arc<Outbox>,
    /// User ids it watches.
    pub watchlist: &'a [String],
    /// Whether watchlist events are on for the app.
    pub watchlist_events: bool,
}

/// A webhook transition to announce at most once, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim<'a> {
    /// `channel_occupied`: not yet announced as occupied.
    Occupied(&'a str),
    /// `channel_vacated`: empty now and announced as occupied.
    Vacated(&'a str),
    /// `member_added`: user not yet announced in the channel.
    MemberAdded(&'a str, &'a str),
    /// `member_removed`: user gone now and announced.
    MemberRemoved(&'a str, &'a str),
    /// `cache_miss`: first miss since the cache was last filled.
    CacheMiss(&'a str),
}

/// This node's view of its cluster store, for the dashboard's cluster panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkView {
    /// Whether the last call to the store succeeded.
    pub up: bool,
    /// Broadcasts waiting in the publish queue.
    pub publish_queue: usize,
    /// Broadcasts for other nodes dropped so far (`herald_adapter_dropped_total`).
    pub dropped: u64,
}

/// A node the cluster store knows, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    /// Node id.
    pub node: u32,
    /// Since its last heartbeat, by the store's clock.
    pub heartbeat_age_ms: u64,
    /// Its connections over all apps, as of its last heartbeat.
    pub connections: u64,
    /// What it last shared with [`Adapter::share_view`], if that has not expired.
    pub view: Option<String>,
}

/// Cluster-facing operations. Every broadcast of the server goes through `publish`.
pub trait Adapter: Send + Sync + 'static {
    /// Cluster publishing figures for metrics: (pipelines sent, seconds spent, broadcasts
    /// dropped while the store was away). Zeros for the local adapter.
    fn publish_stats(&self) -> (u64, f64, u64) {
        (0, 0.0, 0)
    }

    /// Catching up after this node's store connection dropped: (messages replayed from the
    /// channel logs, drops after which some could not be). Zeros for the local adapter.
    fn replay_stats(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Whether the cluster store is reachable (readiness); the local adapter always is.
    fn healthy(&self) -> bool {
        true
    }

    /// This node's view of the cluster store; `None` for the local adapter (no store).
    fn link_view(&self) -> Option<LinkView> {
        None
    }

    /// Every node the cluster store knows (dead ones until they are reaped); `None` when this
    /// node is alone (the local adapter).
    fn members(&self) -> BoxFuture<'_, Result<Option<Vec<NodeSeen>>, AdapterError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Shares this node's dashboard view (JSON) with the other nodes for `ttl`.
    fn share_view<'a>(&'a self, _view: &'a str, _ttl: std::time::Duration) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Called once at shutdown, after this node's sockets closed: the departures held back
    /// while the cluster settles (after a store outage) are checked and announced, waiting out
    /// the settling window first (at most a node timeout), instead of leaving with the node.
    /// The local adapter holds none.
    fn settle_departures(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Delivers to local subscribers at once and to other nodes' subscribers.
    fn publish(&self, b: Broadcast);

    /// Subscribes a socket; `Joined` says whether this was the member's first socket
    /// in the whole cluster. The connection's `subscription_succeeded` is queued by this call.
    fn subscribe<'a>(&'a self, join: Join<'a>) -> BoxFuture<'a, Result<Joined, JoinRefused>>;

    /// Unsubscribes a socket; `Left` says whether the member's last socket left the cluster.
    fn unsubscribe<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
        id: SocketId,
        user_id: Option<&'a str>,
    ) -> BoxFuture<'a, Left>;

    /// Sends the channel's subscriber count to its subscribers (throttled for big channels);
    /// `count` is the cluster-wide count from `Joined`/`Left` when the adapter knows it.
    fn announce_count(&self, app: &str, channel: &str, count: Option<usize>);

    /// Registers a signed-in connection; queues the initial watchlist status and announces the
    /// user online to watchers if this is the user's first connection.
    fn sign_in<'a>(&'a self, s: SignIn<'a>) -> BoxFuture<'a, ()>;

    /// Forgets a signed-in connection; announces the user offline if it was the last.
    fn sign_out<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
        id: SocketId,
        watchlist: &'a [String],
    ) -> BoxFuture<'a, ()>;

    /// Closes every connection signed in as `user`, on every node, with 4009.
    fn terminate_user<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// The cached event data of a cache channel and its remaining seconds.
    fn cached<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, u64)>, AdapterError>>;

    /// Whether this node should send the webhook for a transition (recorded as announced).
    /// With a durable queue, `queued` (one entry per receiver) is written to it in the same
    /// atomic step when the claim succeeds.
    fn claim_webhook<'a>(
        &'a self,
        app: &'a str,
        claim: Claim<'a>,
        queued: &'a [String],
    ) -> BoxFuture<'a, bool>;

    /// Whether webhooks go through a durable queue that every node serves ([`Adapter::take_webhooks`]),
    /// so a node that dies mid-retry is taken over; else they live in this node's memory.
    fn durable_webhooks(&self) -> bool {
        false
    }

    /// Writes webhook entries that need no claim (client events, subscription counts) to the
    /// durable queue; false if the store is away (the caller counts them as dropped).
    fn queue_webhooks<'a>(&'a self, _entries: &'a [String]) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(false))
    }

    /// Webhook entries for this node to deliver: new ones, and ones another node left idle for
    /// longer than a node timeout (it died mid-retry). `(id, entry)`.
    fn take_webhooks(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(std::future::ready(Vec::new()))
    }

    /// Marks entries as still being worked on here (so no other node takes them over).
    fn touch_webhooks<'a>(&'a self, _ids: &'a [String]) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Removes delivered (or given up) entries from the queue.
    fn ack_webhooks<'a>(&'a self, _ids: &'a [String]) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Occupied channels with this prefix and their counts.
    fn channels<'a>(
        &'a self,
        app: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ChannelStats)>, AdapterError>>;

    /// Counts for one channel.
    fn channel<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelStats, AdapterError>>;

    /// Distinct presence user ids of a channel.
    fn users<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AdapterError>>;

    /// WebSocket connections of an app on every live node (for the dashboard; on Redis it lags
    /// by up to one heartbeat).
    fn connections<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<usize, AdapterError>>;
}
