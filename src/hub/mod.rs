//! This node's channels → subscribers, presence members and connection counts, per app.
//! State sits behind short sharded locks that are never held across an `.await`.

pub mod channel;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crate::broadcast::Broadcast;
use crate::limit::CappedCounter;
use crate::outbox::Outbox;
use crate::protocol::presence::Member;
use crate::protocol::{outbound, SocketId};
pub use channel::{Channel, JoinRefused, Joined, Left};

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
}

/// One app's channels and connection count on this node.
#[derive(Debug)]
pub struct AppHub {
    shards: Box<[Mutex<HashMap<String, Channel>>]>,
    connections: CappedCounter,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard lock cannot leave a channel half-updated in a way that
    // matters more than losing the node, so recover the data rather than poisoning every caller.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AppHub {
    fn new() -> AppHub {
        AppHub {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            connections: CappedCounter::default(),
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<HashMap<String, Channel>> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
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

    /// Subscribes `conn` and queues its `subscription_succeeded` while still holding the channel,
    /// so no channel event can overtake it.
    pub fn subscribe(
        &self,
        channel: &str,
        conn: &Arc<Outbox>,
        member: Option<&Member>,
        max_members: usize,
    ) -> Result<Joined, JoinRefused> {
        let mut shard = lock(self.shard(channel));
        let ch = shard.entry(channel.to_string()).or_default();
        let joined = ch.join(conn.clone(), member, max_members);
        match &joined {
            Ok(_) => {
                let data = if member.is_some() {
                    ch.presence_data()
                } else {
                    "{}".to_string()
                };
                conn.push(outbound::subscription_succeeded(channel, &data).into());
            }
            Err(_) if ch.is_empty() => {
                shard.remove(channel);
            }
            Err(_) => {}
        }
        joined
    }

    /// Unsubscribes a socket; drops the channel when it becomes empty.
    pub fn unsubscribe(&self, channel: &str, id: SocketId, user_id: Option<&str>) -> Left {
        let mut shard = lock(self.shard(channel));
        let Some(ch) = shard.get_mut(channel) else {
            return Left::default();
        };
        let left = ch.leave(id, user_id);
        if ch.is_empty() {
            shard.remove(channel);
        }
        left
    }

    /// Delivers a broadcast to this node's subscribers. The frame is built once, and the channel
    /// stays locked during fan-out so every subscriber sees the same order.
    pub fn deliver(&self, b: &Broadcast) {
        let shard = lock(self.shard(&b.channel));
        let Some(ch) = shard.get(&b.channel) else {
            return;
        };
        let frame = b.to_frame();
        for sub in ch.subscribers() {
            if Some(sub.id) != b.except {
                sub.push(frame.clone());
            }
        }
    }

    /// Counts for one channel (zeros when nobody is subscribed).
    pub fn channel_stats(&self, channel: &str) -> ChannelStats {
        let shard = lock(self.shard(channel));
        shard
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
            for (name, c) in shard.iter() {
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
        let shard = lock(self.shard(channel));
        shard
            .get(channel)
            .map(|c| c.user_ids().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(
        seq: u64,
    ) -> (
        Arc<Outbox>,
        tokio::sync::mpsc::Receiver<tokio_tungstenite::tungstenite::Utf8Bytes>,
    ) {
        let (o, rx) = Outbox::new(SocketId { node: 1, seq }, 16);
        (Arc::new(o), rx)
    }

    #[test]
    fn deliver_once_per_subscriber_except_sender() {
        let hub = Hub::default();
        let app = hub.app("1");
        let (a, mut ra) = conn(1);
        let (b, mut rb) = conn(2);
        app.subscribe("c", &a, None, 100).unwrap();
        app.subscribe("c", &b, None, 100).unwrap();
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
