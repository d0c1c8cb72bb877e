//! The boundary between one node and the cluster: publishing broadcasts, (un)subscribing with
//! cluster-wide presence decisions, and channel queries. `local` serves a single node; the
//! Redis adapter implements the same trait for many nodes.

pub mod local;

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
}

/// Cluster-facing operations. Every broadcast of the server goes through `publish`.
pub trait Adapter: Send + Sync + 'static {
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
}
