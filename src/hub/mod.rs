//! This node's channels → subscribers, presence members and connection counts, per app.
//! State sits behind short sharded locks that are never held across an `.await`.

pub mod announced;
pub mod cache;
pub mod channel;
mod queries;
pub mod users;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, TryLockError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::broadcast::Broadcast;
use crate::limit::CappedCounter;
use crate::outbox::{Outbox, Outgoing};
use crate::protocol::channel::classify;
use crate::protocol::codes::CloseReason;
use crate::protocol::presence::Member;
use crate::protocol::{outbound, SocketId};
use announced::Announced;
use cache::Cache;
pub use channel::{Channel, JoinRefused, Joined, Left};
use users::Users;

const SHARDS: usize = 32;

/// Counts describing one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelStats {
    /// Subscribed sockets.
    pub subscription_count: usize,
    /// Distinct presence users.
    pub user_count: usize,
}

impl ChannelStats {
    /// Whether anyone is subscribed.
    pub fn occupied(&self) -> bool {
        self.subscription_count > 0
    }
}

/// Where the node is in its life, as its connections need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Serving.
    #[default]
    Running,
    /// Closing its sockets gradually (4100).
    Draining,
    /// Closing every socket now (4200).
    ShuttingDown,
}

/// What an app's connections wait for to close from outside: the node's phase and whether the
/// app must close (removed by a reload or from the store: 4001; disabled in the store: 4003).
/// One signal per app, so each connection waits on one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppSignal {
    /// The node's phase.
    pub phase: Phase,
    /// Why the app's sockets must close, if they must; new sockets close at once while set.
    pub closing: Option<CloseReason>,
}

/// All apps' state on this node.
#[derive(Debug, Default)]
pub struct Hub {
    apps: RwLock<HashMap<String, Arc<AppHub>>>,
    /// The node's phase, given to apps created later (changed under the `apps` write lock).
    phase: Mutex<Phase>,
}

impl Hub {
    /// The state of one app, created on first use.
    pub fn app(&self, id: &str) -> Arc<AppHub> {
        if let Some(a) = self
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
        {
            return a.clone();
        }
        let mut w = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        let phase = *lock(&self.phase);
        w.entry(id.to_string())
            .or_insert_with(|| Arc::new(AppHub::new(phase)))
            .clone()
    }

    /// Moves the node to `phase`: every app's connections are told (and apps created later
    /// start in it).
    pub fn set_phase(&self, phase: Phase) {
        let w = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        *lock(&self.phase) = phase;
        for app in w.values() {
            app.signal.send_modify(|s| s.phase = phase);
        }
    }

    /// Ids of the apps with state on this node.
    pub fn app_ids(&self) -> Vec<String> {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Drops expired cache entries of every app.
    pub fn sweep(&self) {
        let apps: Vec<Arc<AppHub>> = self
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for app in apps {
            app.sweep();
        }
    }
}

/// One shard of an app's channels, with the cache entries of the same channels, so that
/// subscribing, replaying and delivering a channel's events happen under one lock.
#[derive(Debug, Default)]
struct Shard {
    channels: HashMap<String, Channel>,
    cache: Cache,
}

/// A subscription as the hub takes it.
#[derive(Debug)]
pub struct JoinRequest<'a> {
    /// Channel name.
    pub channel: &'a str,
    /// The subscriber.
    pub conn: &'a Arc<Outbox>,
    /// Presence member, on presence channels.
    pub member: Option<&'a Member>,
    /// Presence member cap.
    pub max_members: usize,
    /// Queue `subscription_succeeded` (and a cache replay); false for implicit joins.
    pub announce: bool,
    /// The presence payload to send, when the cluster decided it (else this node's view).
    pub presence_data: Option<&'a str>,
    /// Where a cache channel's replay comes from.
    pub replay: Replay,
}

/// The source of a cache channel's replay on subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// This node's cache.
    Local,
    /// Fetched from the cluster: `(event, data)` or nothing cached.
    Given(Option<(String, String)>),
    /// Fetched from the cluster after the socket joined, and finished with [`AppHub::replay`]:
    /// a broadcast published while the fetch was under way then reaches the socket too.
    Deferred,
}

/// This node's share of an app's state, for rewriting it into a cluster store.
#[derive(Debug, Default)]
pub struct Share {
    /// Channel → subscribed sockets here.
    pub subs: Vec<(String, usize)>,
    /// (channel, user, sockets here, user_info).
    pub presence: Vec<(String, String, u32, Option<serde_json::Value>)>,
    /// Signed-in user → sockets here.
    pub users: Vec<(String, usize)>,
}

/// Whether a `subscription_count` update went out, or when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountUpdate {
    /// Sent (or nothing to send).
    Done,
    /// Throttled: call again after this delay.
    Later(Duration),
}

/// Subscription counts of channels with more than this many subscribers are throttled.
const COUNT_THROTTLE_ABOVE: usize = 100;
/// At most one throttled `subscription_count` per this interval.
const COUNT_THROTTLE: Duration = Duration::from_secs(5);

/// One app's channels, cache, users and connection count on this node.
#[derive(Debug)]
pub struct AppHub {
    shards: Box<[Mutex<Shard>]>,
    users: Mutex<Users>,
    announced: Mutex<Announced>,
    connections: CappedCounter,
    /// The node's phase and whether the app must close: its sockets close on either.
    signal: tokio::sync::watch::Sender<AppSignal>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave a channel half-updated in a way that matters
    // more than losing the node, so recover the data rather than poisoning every caller.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AppHub {
    fn new(phase: Phase) -> AppHub {
        AppHub {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            users: Mutex::new(Users::default()),
            announced: Mutex::new(Announced::default()),
            signal: tokio::sync::watch::Sender::new(AppSignal {
                phase,
                closing: None,
            }),
            connections: CappedCounter::default(),
        }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        lock(&self.shards[(h.finish() as usize) % SHARDS])
    }

    /// The channel's shard, and whether it had to be waited for (someone else held it).
    fn shard_or_wait(&self, channel: &str) -> (MutexGuard<'_, Shard>, bool) {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        let m = &self.shards[(h.finish() as usize) % SHARDS];
        match m.try_lock() {
            Ok(g) => (g, false),
            Err(TryLockError::Poisoned(p)) => (p.into_inner(), false),
            Err(TryLockError::WouldBlock) => (lock(m), true),
        }
    }

    /// Closes the app's sockets with this reason (`None`: the app is back).
    pub fn set_closing(&self, reason: Option<CloseReason>) {
        self.signal.send_if_modified(|s| {
            let changed = s.closing != reason;
            s.closing = reason;
            changed
        });
    }

    /// The node's phase and why the app must close, for its connections to wait on.
    pub fn signal(&self) -> tokio::sync::watch::Receiver<AppSignal> {
        self.signal.subscribe()
    }

    /// Counts a new connection unless that would exceed `max`.
    pub fn add_connection(&self, max: Option<usize>) -> bool {
        self.connections.try_acquire(max)
    }

    /// Forgets a connection counted by [`AppHub::add_connection`].
    pub fn remove_connection(&self) {
        self.connections.release();
    }

    /// Current connections of this app on this node.
    pub fn connection_count(&self) -> usize {
        self.connections.get()
    }

    /// Subscribes a socket. When announcing, its `subscription_succeeded` (then, on cache
    /// channels, the cached event or `pusher:cache_miss`) is queued while the channel is still
    /// locked, so no channel event can overtake it.
    pub fn subscribe(&self, j: JoinRequest<'_>) -> Result<Joined, JoinRefused> {
        let mut shard = self.shard(j.channel);
        let Shard { channels, cache } = &mut *shard;
        let ch = channels.entry(j.channel.to_string()).or_default();
        let mut joined = match ch.join(j.conn.clone(), j.member, j.max_members) {
            Ok(joined) => joined,
            Err(e) => {
                if ch.is_empty() {
                    channels.remove(j.channel);
                }
                return Err(e);
            }
        };
        joined.deliveries = ch.cached_events;
        if j.announce {
            let data = match (j.member, j.presence_data) {
                (Some(_), Some(given)) => given.to_string(),
                (Some(_), None) => ch.presence_data(),
                (None, _) => "{}".to_string(),
            };
            j.conn
                .push(outbound::subscription_succeeded(j.channel, &data).into());
            let cached = match j.replay {
                _ if !classify(j.channel).cache => None,
                Replay::Local => Some(
                    cache
                        .get(j.channel, Instant::now())
                        .map(|c| (c.event.clone(), c.data.clone())),
                ),
                Replay::Given(c) => Some(c),
                // Finished by `replay` once fetched.
                Replay::Deferred => None,
            };
            match cached {
                Some(Some((event, data))) => j
                    .conn
                    .push(outbound::channel_event(&event, j.channel, &data, None).into()),
                Some(None) => {
                    j.conn.push(outbound::cache_miss(j.channel).into());
                    joined.cache_miss = true;
                }
                None => {}
            }
        }
        Ok(joined)
    }

    /// Finishes a [`Replay::Deferred`] join with the cached event fetched after it. If a
    /// broadcast reached the channel since (`deliveries` in [`Joined`]), the socket already has
    /// something at least as new and nothing is replayed; else the cached event (remembered, so
    /// its own broadcast arriving late is not delivered twice) or `pusher:cache_miss`. Returns
    /// whether a cache miss was sent.
    pub fn replay(
        &self,
        channel: &str,
        conn: &Arc<Outbox>,
        deliveries: u64,
        cached: Option<(String, String)>,
    ) -> bool {
        let mut shard = self.shard(channel);
        let Some(ch) = shard.channels.get_mut(channel) else {
            return false;
        };
        if ch.cached_events != deliveries || !ch.has(conn.id) {
            return false;
        }
        match cached {
            Some((event, data)) => {
                let frame: Utf8Bytes = outbound::channel_event(&event, channel, &data, None).into();
                conn.push(frame.clone());
                ch.remember_replay(conn.id, frame);
                false
            }
            None => {
                conn.push(outbound::cache_miss(channel).into());
                true
            }
        }
    }

    /// Unsubscribes a socket; drops the channel when it becomes empty.
    pub fn unsubscribe(&self, channel: &str, id: SocketId, user_id: Option<&str>) -> Left {
        let mut shard = self.shard(channel);
        let Some(ch) = shard.channels.get_mut(channel) else {
            return Left::default();
        };
        let left = ch.leave(id, user_id);
        if ch.is_empty() {
            shard.channels.remove(channel);
        }
        left
    }

    /// Delivers a broadcast to this node's subscribers (and stores it for cache channels).
    /// The frame is built once, and the channel stays locked during fan-out so every
    /// subscriber sees the same order.
    pub fn deliver(&self, b: &Broadcast) {
        self.fan_out(b, true);
    }

    /// Delivers a broadcast another node published. Its cache entry lives in the cluster store,
    /// so nothing is stored here; a cached event still counts for deferred replays.
    pub fn deliver_from_cluster(&self, b: &Broadcast) {
        self.fan_out(b, false);
    }

    fn fan_out(&self, b: &Broadcast, store: bool) {
        let (mut shard, contended) = self.shard_or_wait(&b.channel);
        if let (Some(ttl), true) = (b.cache_ttl, store) {
            shard
                .cache
                .put(&b.channel, &b.event, &b.data, ttl, Instant::now());
            lock(&self.announced).cache_filled(&b.channel);
        }
        let Some(ch) = shard.channels.get_mut(&b.channel) else {
            return;
        };
        let frame = Outgoing::new(b.to_frame());
        let direct = ch.direct(contended);
        // Only an event that fills the cache can make a deferred replay stale or duplicate.
        if b.cache_ttl.is_none() || ch.replayed.is_empty() {
            ch.cached_events += u64::from(b.cache_ttl.is_some());
            for sub in ch.subscribers() {
                if Some(sub.id) != b.except {
                    sub.offer(&frame, direct);
                }
            }
        } else {
            ch.cached_events += 1;
            let replayed = std::mem::take(&mut ch.replayed);
            for sub in ch.subscribers() {
                let duplicate = replayed
                    .iter()
                    .any(|(id, f)| *id == sub.id && f == frame.text());
                if Some(sub.id) != b.except && !duplicate {
                    sub.offer(&frame, direct);
                }
            }
        }
    }

    /// Sends the channel's current subscriber count to all its subscribers, at most once per
    /// [`COUNT_THROTTLE`] for channels above [`COUNT_THROTTLE_ABOVE`] subscribers.
    /// `count` is the cluster-wide count when another node decided it; else this node's.
    pub fn announce_count(&self, channel: &str, count: Option<usize>) -> CountUpdate {
        let mut shard = self.shard(channel);
        let Some(ch) = shard.channels.get_mut(channel) else {
            return CountUpdate::Done;
        };
        let count = count.unwrap_or_else(|| ch.subscription_count());
        let now = Instant::now();
        if count > COUNT_THROTTLE_ABOVE {
            if let Some(wait) = ch
                .count_sent_at
                .map(|t| COUNT_THROTTLE.saturating_sub(now - t))
                .filter(|w| !w.is_zero())
            {
                if ch.count_pending {
                    return CountUpdate::Done;
                }
                ch.count_pending = true;
                return CountUpdate::Later(wait);
            }
        }
        ch.count_sent_at = Some(now);
        ch.count_pending = false;
        let frame: Utf8Bytes = outbound::subscription_count(channel, count).into();
        for sub in ch.subscribers() {
            sub.push(frame.clone());
        }
        CountUpdate::Done
    }

    /// Webhook transitions announced by this node (single-node adapter). Never take a shard
    /// lock while holding it.
    pub fn announced(&self) -> MutexGuard<'_, Announced> {
        lock(&self.announced)
    }

    /// Whether a presence channel has this user now.
    pub fn has_member(&self, channel: &str, user: &str) -> bool {
        let shard = self.shard(channel);
        let found = shard
            .channels
            .get(channel)
            .is_some_and(|c| c.members().any(|(u, _, _)| u == user));
        found
    }

    /// The signed-in users registry (short critical sections only).
    pub fn users(&self) -> MutexGuard<'_, Users> {
        lock(&self.users)
    }
}

#[cfg(test)]
mod tests;
