//! One channel's subscribers and presence members, and the transitions they go through.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::outbox::Outbox;
use crate::protocol::presence::{self, Member};
use crate::protocol::SocketId;

/// A presence member with the number of this node's sockets that carry it.
#[derive(Debug)]
struct PresenceEntry {
    info: Option<Value>,
    sockets: u32,
}

/// A channel on this node.
#[derive(Debug, Default)]
pub struct Channel {
    subscribers: HashMap<SocketId, Arc<Outbox>>,
    /// Presence members by user id, in join order of their first socket.
    members: HashMap<String, PresenceEntry>,
    member_order: Vec<String>,
    /// When the last `subscription_count` went out (for throttling).
    pub(super) count_sent_at: Option<tokio::time::Instant>,
    /// A throttled `subscription_count` is scheduled.
    pub(super) count_pending: bool,
    /// Cache-filling events delivered so far: a deferred cache replay checks that none came in
    /// between.
    pub(super) cached_events: u64,
    /// Sockets given a replayed cached event whose own broadcast may still be on its way: the
    /// next cache-filling delivery is skipped for them if it is that very frame.
    pub(super) replayed: Vec<(SocketId, tokio_tungstenite::tungstenite::Utf8Bytes)>,
    /// When a broadcast last had to wait for another one (see [`Channel::direct`]).
    contended_at: Option<std::time::Instant>,
}

/// How long after broadcasts last waited for each other a channel is still in a burst.
const BURST_HOLD: std::time::Duration = std::time::Duration::from_millis(100);

/// Remembered replays are pruned of sockets that left once there are this many.
const REPLAYED_PRUNE_AT: usize = 64;

/// What a subscription changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Joined {
    /// The channel went from 0 to 1 subscriber.
    pub occupied: bool,
    /// This was the user's first socket in the presence channel.
    pub member_added: bool,
    /// A cache channel with nothing cached was subscribed to (`pusher:cache_miss` sent).
    pub cache_miss: bool,
    /// The cluster-wide subscription count after the join, when a cluster store decided it.
    pub count: Option<usize>,
    /// Broadcasts the channel had delivered when the socket joined (for a deferred replay).
    pub deliveries: u64,
    /// `member_added` already went out with the cluster's decision (in decision order, to every
    /// node): the connection must not broadcast it again.
    pub member_announced: bool,
}

/// What an unsubscription changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Left {
    /// The socket was subscribed.
    pub was_subscribed: bool,
    /// The channel is now empty.
    pub vacated: bool,
    /// The user's last socket left the presence channel.
    pub member_removed: Option<String>,
    /// The cluster-wide subscription count after the leave, when a cluster store decided it.
    pub count: Option<usize>,
    /// `member_removed` already went out with the cluster's decision.
    pub member_announced: bool,
}

/// Why a subscription was refused by the channel itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefused {
    /// The presence channel has `max_members` distinct users and this user is not one of them.
    PresenceFull,
}

impl Channel {
    /// Remembers a replayed frame for its socket (see `replayed`), keeping the list bounded by
    /// the channel's subscribers.
    pub(super) fn remember_replay(
        &mut self,
        id: SocketId,
        frame: tokio_tungstenite::tungstenite::Utf8Bytes,
    ) {
        if self.replayed.len() >= REPLAYED_PRUNE_AT {
            let subscribers = &self.subscribers;
            self.replayed.retain(|(s, _)| subscribers.contains_key(s));
        }
        self.replayed.push((id, frame));
    }

    /// Whether this broadcast may be written straight to its subscribers' sockets (one system
    /// call each, no task woken): yes unless the channel is in a burst, that is, a broadcast
    /// had to wait for another one (`contended`: its shard was locked) within [`BURST_HOLD`].
    /// A burst is queued instead, so each connection's task writes many frames with one
    /// system call.
    pub(super) fn direct(&mut self, contended: bool) -> bool {
        if contended {
            self.contended_at = Some(std::time::Instant::now());
            return false;
        }
        self.contended_at
            .map_or(true, |t| t.elapsed() >= BURST_HOLD)
    }

    /// Number of subscribed sockets.
    pub fn subscription_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Number of distinct presence users.
    pub fn user_count(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is subscribed.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Presence user ids in join order.
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.member_order.iter().map(String::as_str)
    }

    /// The presence `subscription_succeeded` data for the current members.
    pub fn presence_data(&self) -> String {
        presence::subscription_data(self.member_order.iter().map(|id| {
            (
                id.as_str(),
                self.members.get(id).and_then(|e| e.info.as_ref()),
            )
        }))
    }

    /// Adds a socket (and its presence member). The caller has checked it is not yet subscribed.
    pub fn join(
        &mut self,
        conn: Arc<Outbox>,
        member: Option<&Member>,
        max_members: usize,
    ) -> Result<Joined, JoinRefused> {
        let mut joined = Joined {
            occupied: self.subscribers.is_empty(),
            ..Joined::default()
        };
        if let Some(m) = member {
            match self.members.get_mut(&m.user_id) {
                Some(entry) => entry.sockets += 1,
                None => {
                    if self.members.len() >= max_members {
                        return Err(JoinRefused::PresenceFull);
                    }
                    self.members.insert(
                        m.user_id.clone(),
                        PresenceEntry {
                            info: m.user_info.clone(),
                            sockets: 1,
                        },
                    );
                    self.member_order.push(m.user_id.clone());
                    joined.member_added = true;
                }
            }
        }
        self.subscribers.insert(conn.id, conn);
        Ok(joined)
    }

    /// Removes a socket (and its share of a presence member).
    pub fn leave(&mut self, id: SocketId, user_id: Option<&str>) -> Left {
        if self.subscribers.remove(&id).is_none() {
            return Left::default();
        }
        let mut left = Left {
            was_subscribed: true,
            vacated: self.subscribers.is_empty(),
            ..Left::default()
        };
        if let Some(uid) = user_id {
            if let Some(entry) = self.members.get_mut(uid) {
                entry.sockets -= 1;
                if entry.sockets == 0 {
                    self.members.remove(uid);
                    self.member_order.retain(|u| u != uid);
                    left.member_removed = Some(uid.to_string());
                }
            }
        }
        left
    }

    /// Presence members with this node's socket count and their info, in join order.
    pub fn members(&self) -> impl Iterator<Item = (&str, u32, Option<&Value>)> {
        self.member_order.iter().filter_map(|id| {
            self.members
                .get(id)
                .map(|e| (id.as_str(), e.sockets, e.info.as_ref()))
        })
    }

    /// Every subscriber, for fan-out.
    pub fn subscribers(&self) -> impl Iterator<Item = &Arc<Outbox>> {
        self.subscribers.values()
    }

    /// Whether this socket is subscribed.
    pub fn has(&self, id: SocketId) -> bool {
        self.subscribers.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(seq: u64) -> Arc<Outbox> {
        Arc::new(Outbox::new(SocketId { node: 1, seq }, 8))
    }

    fn member(id: &str) -> Member {
        Member {
            user_id: id.into(),
            user_info: Some(json!({"n": id})),
        }
    }

    #[test]
    fn presence_counts_users_not_sockets() {
        let mut ch = Channel::default();
        let (a1, a2, b) = (conn(1), conn(2), conn(3));
        assert_eq!(
            ch.join(a1.clone(), Some(&member("a")), 100),
            Ok(Joined {
                occupied: true,
                member_added: true,
                cache_miss: false,
                count: None,
                deliveries: 0,
                member_announced: false,
            })
        );
        assert_eq!(
            ch.join(a2.clone(), Some(&member("a")), 100),
            Ok(Joined {
                occupied: false,
                member_added: false,
                cache_miss: false,
                count: None,
                deliveries: 0,
                member_announced: false,
            })
        );
        assert_eq!(
            ch.join(b.clone(), Some(&member("b")), 100),
            Ok(Joined {
                occupied: false,
                member_added: true,
                cache_miss: false,
                count: None,
                deliveries: 0,
                member_announced: false,
            })
        );
        assert_eq!((ch.subscription_count(), ch.user_count()), (3, 2));
        assert_eq!(
            ch.presence_data(),
            r#"{"presence":{"count":2,"hash":{"a":{"n":"a"},"b":{"n":"b"}},"ids":["a","b"]}}"#
        );
        assert_eq!(ch.leave(a1.id, Some("a")).member_removed, None);
        assert_eq!(ch.leave(a2.id, Some("a")).member_removed, Some("a".into()));
        let last = ch.leave(b.id, Some("b"));
        assert!(last.vacated && last.was_subscribed);
        assert_eq!(ch.leave(b.id, Some("b")), Left::default());
        assert!(ch.is_empty());
    }

    #[test]
    fn member_limit_admits_existing_users() {
        let mut ch = Channel::default();
        ch.join(conn(1), Some(&member("a")), 1).unwrap();
        assert_eq!(
            ch.join(conn(2), Some(&member("b")), 1),
            Err(JoinRefused::PresenceFull)
        );
        assert!(ch.join(conn(3), Some(&member("a")), 1).is_ok());
        assert_eq!(ch.subscription_count(), 2);
    }
}
