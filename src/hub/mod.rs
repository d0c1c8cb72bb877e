//! This node's channels → subscribers, presence members and connection counts, per app.
//! State sits behind short sharded locks that are never held across an `.await`.

pub mod announced;
pub mod cache;
pub mod channel;
pub mod users;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::broadcast::Broadcast;
use crate::limit::CappedCounter;
use crate::outbox::Outbox;
use crate::protocol::channel::classify;
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

/// All apps' state on this node.
#[derive(Debug, Default)]
pub struct Hub {
    apps: RwLock<HashMap<String, Arc<AppHub>>>,
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
        w.entry(id.to_string())
            .or_insert_with(|| Arc::new(AppHub::new()))
            .clone()
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
    /// Flips to `true` when a reload removes the app: its sockets close with 4001.
    removed: tokio::sync::watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave a channel half-updated in a way that matters
    // more than losing the node, so recover the data rather than poisoning every caller.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AppHub {
    fn new() -> AppHub {
        AppHub {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            users: Mutex::new(Users::default()),
            announced: Mutex::new(Announced::default()),
            removed: tokio::sync::watch::Sender::new(false),
            connections: CappedCounter::default(),
        }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        lock(&self.shards[(h.finish() as usize) % SHARDS])
    }

    /// Marks the app removed (or back, after a later reload).
    pub fn set_removed(&self, removed: bool) {
        self.removed.send_replace(removed);
    }

    /// Resolves when the app has been removed by a reload.
    pub fn removed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.removed.subscribe()
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
        if j.announce {
            let data = match (j.member, j.presence_data) {
                (Some(_), Some(given)) => given.to_string(),
                (Some(_), None) => ch.presence_data(),
                (None, _) => "{}".to_string(),
            };
            j.conn
                .push(outbound::subscription_succeeded(j.channel, &data).into());
            if classify(j.channel).cache {
                let cached = match j.replay {
                    Replay::Local => cache
                        .get(j.channel, Instant::now())
                        .map(|c| (c.event.clone(), c.data.clone())),
                    Replay::Given(c) => c,
                };
                match cached {
                    Some((event, data)) => j
                        .conn
                        .push(outbound::channel_event(&event, j.channel, &data, None).into()),
                    None => {
                        j.conn.push(outbound::cache_miss(j.channel).into());
                        joined.cache_miss = true;
                    }
                }
            }
        }
        Ok(joined)
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
        let mut shard = self.shard(&b.channel);
        if let Some(ttl) = b.cache_ttl {
            shard
                .cache
                .put(&b.channel, &b.event, &b.data, ttl, Instant::now());
            lock(&self.announced).cache_filled(&b.channel);
        }
        let Some(ch) = shard.channels.get(&b.channel) else {
            return;
        };
        let frame = b.to_frame();
        for sub in ch.subscribers() {
            if Some(sub.id) != b.except {
                sub.push(frame.clone());
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

    /// Counts for one channel (zeros when nobody is subscribed).
    pub fn channel_stats(&self, channel: &str) -> ChannelStats {
        let shard = self.shard(channel);
        shard
            .channels
            .get(channel)
            .map(|c| ChannelStats {
                subscription_count: c.subscription_count(),
                user_count: c.user_count(),
            })
            .unwrap_or_default()
    }

    /// Every occupied channel whose name starts with `prefix`, with its counts.
    pub fn channels(&self, prefix: &str) -> Vec<(String, ChannelStats)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (name, c) in shard.channels.iter() {
                if name.starts_with(prefix) && !c.is_empty() {
                    let stats = ChannelStats {
                        subscription_count: c.subscription_count(),
                        user_count: c.user_count(),
                    };
                    out.push((name.clone(), stats));
                }
            }
        }
        out
    }

    /// Presence user ids of a channel, in join order.
    pub fn user_ids(&self, channel: &str) -> Vec<String> {
        let shard = self.shard(channel);
        shard
            .channels
            .get(channel)
            .map(|c| c.user_ids().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The cached event's data and remaining seconds, if any.
    pub fn cached(&self, channel: &str) -> Option<(String, u64)> {
        let mut shard = self.shard(channel);
        let now = Instant::now();
        shard
            .cache
            .get(channel, now)
            .map(|c| (c.data.clone(), c.ttl_secs(now)))
    }

    /// Drops expired cache entries.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            lock(shard).cache.sweep(now);
        }
    }

    /// This node's share of the app's state.
    pub fn share(&self) -> Share {
        let mut share = Share::default();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (name, ch) in shard.channels.iter() {
                share.subs.push((name.clone(), ch.subscription_count()));
                for (user, n, info) in ch.members() {
                    share
                        .presence
                        .push((name.clone(), user.to_string(), n, info.cloned()));
                }
            }
        }
        share.users = self.users().share();
        share
    }

    /// The info of a presence member on this node, if it is one here.
    pub fn member_info(&self, channel: &str, user: &str) -> Option<Option<serde_json::Value>> {
        let shard = self.shard(channel);
        let ch = shard.channels.get(channel)?;
        let found = ch
            .members()
            .find(|(u, _, _)| *u == user)
            .map(|(_, _, info)| info.cloned());
        found
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
mod tests {
    use super::*;

    /// Reads what the hub queued for a connection.
    struct Rx(Arc<Outbox>);

    impl Rx {
        fn try_recv(&mut self) -> Result<tokio_tungstenite::tungstenite::Utf8Bytes, ()> {
            self.0.pop().ok_or(())
        }
    }

    fn conn(seq: u64) -> (Arc<Outbox>, Rx) {
        let o = Arc::new(Outbox::new(SocketId { node: 1, seq }, 16));
        (o.clone(), Rx(o))
    }

    fn join<'a>(channel: &'a str, conn: &'a Arc<Outbox>) -> JoinRequest<'a> {
        JoinRequest {
            channel,
            conn,
            member: None,
            max_members: 100,
            announce: true,
            presence_data: None,
            replay: Replay::Local,
        }
    }

    #[test]
    fn cache_channels_replay_or_miss() {
        let hub = Hub::default();
        let app = hub.app("1");
        let (a, mut ra) = conn(1);
        assert!(app.subscribe(join("cache-x", &a)).unwrap().cache_miss);
        ra.try_recv().unwrap();
        assert_eq!(
            ra.try_recv().unwrap().as_str(),
            r#"{"event":"pusher:cache_miss","channel":"cache-x"}"#
        );
        let b = Broadcast {
            app: "1".into(),
            channel: "cache-x".into(),
            event: "e".into(),
            data: "d".into(),
            except: None,
            user_id: None,
            cache_ttl: Some(Duration::from_secs(60)),
        };
        app.deliver(&b);
        assert_eq!(
            ra.try_recv().unwrap().as_str(),
            r#"{"event":"e","channel":"cache-x","data":"d"}"#
        );
        let (c, mut rc) = conn(2);
        assert!(!app.subscribe(join("cache-x", &c)).unwrap().cache_miss);
        rc.try_recv().unwrap();
        assert_eq!(
            rc.try_recv().unwrap().as_str(),
            r#"{"event":"e","channel":"cache-x","data":"d"}"#
        );
        assert_eq!(
            app.cached("cache-x").map(|(d, ttl)| (d, ttl <= 60)),
            Some(("d".to_string(), true))
        );
    }

    #[test]
    fn subscription_count_throttles_large_channels() {
        let hub = Hub::default();
        let app = hub.app("1");
        let mut rxs = Vec::new();
        for i in 0..101 {
            let (c, rx) = conn(i);
            app.subscribe(join("big", &c)).unwrap();
            rxs.push((c, rx));
        }
        assert_eq!(app.announce_count("big", None), CountUpdate::Done);
        assert!(
            matches!(app.announce_count("big", None), CountUpdate::Later(d) if d <= COUNT_THROTTLE)
        );
        assert_eq!(
            app.announce_count("big", None),
            CountUpdate::Done,
            "one pending retry at a time"
        );
        let (_, rx) = &mut rxs[0];
        rx.try_recv().unwrap();
        assert_eq!(
            rx.try_recv().unwrap().as_str(),
            r#"{"event":"pusher_internal:subscription_count","channel":"big","data":"{\"subscription_count\":101}"}"#
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn deliver_once_per_subscriber_except_sender() {
        let hub = Hub::default();
        let app = hub.app("1");
        let (a, mut ra) = conn(1);
        let (b, mut rb) = conn(2);
        app.subscribe(join("c", &a)).unwrap();
        app.subscribe(join("c", &b)).unwrap();
        assert_eq!(
            ra.try_recv().unwrap().as_str(),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#
        );
        rb.try_recv().unwrap();
        let b1 = Broadcast {
            app: "1".into(),
            channel: "c".into(),
            event: "e".into(),
            data: "d".into(),
            except: Some(a.id),
            user_id: None,
            cache_ttl: None,
        };
        app.deliver(&b1);
        assert!(ra.try_recv().is_err());
        assert_eq!(
            rb.try_recv().unwrap().as_str(),
            r#"{"event":"e","channel":"c","data":"d"}"#
        );
        assert_eq!(app.channel_stats("c").subscription_count, 2);
        assert_eq!(app.channels("").len(), 1);
        assert!(app.channels("x").is_empty());
        app.unsubscribe("c", a.id, None);
        assert!(app.unsubscribe("c", b.id, None).vacated);
        assert_eq!(app.channel_stats("c"), ChannelStats::default());
        assert!(app.channels("").is_empty());
    }
}
