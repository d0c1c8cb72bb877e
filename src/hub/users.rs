//! Signed-in users of one app on this node: user → sockets (for `terminate_connections` and
//! online status) and watched user → watchers (for watchlist events).

use std::collections::HashMap;
use std::sync::Arc;

use crate::outbox::Outbox;
use crate::protocol::codes::CloseReason;
use crate::protocol::{outbound, SocketId};

/// The users registry.
#[derive(Debug, Default)]
pub struct Users {
    sockets: HashMap<String, HashMap<SocketId, Arc<Outbox>>>,
    watchers: HashMap<String, HashMap<SocketId, Arc<Outbox>>>,
}

impl Users {
    /// Registers a signed-in socket and its watchlist. Returns whether this is the user's
    /// first socket on this node.
    pub fn register(&mut self, user: &str, conn: &Arc<Outbox>, watchlist: &[String]) -> bool {
        let entry = self.sockets.entry(user.to_string()).or_default();
        let first = entry.is_empty();
        entry.insert(conn.id, conn.clone());
        for w in watchlist {
            self.watchers
                .entry(w.clone())
                .or_default()
                .insert(conn.id, conn.clone());
        }
        first
    }

    /// Removes a signed-in socket. Returns whether it was the user's last socket on this node.
    pub fn unregister(&mut self, user: &str, id: SocketId, watchlist: &[String]) -> bool {
        for w in watchlist {
            if let Some(set) = self.watchers.get_mut(w) {
                set.remove(&id);
                if set.is_empty() {
                    self.watchers.remove(w);
                }
            }
        }
        let Some(entry) = self.sockets.get_mut(user) else {
            return false;
        };
        if entry.remove(&id).is_none() {
            return false;
        }
        let last = entry.is_empty();
        if last {
            self.sockets.remove(user);
        }
        last
    }

    /// Queues `pusher_internal:watchlist_events` for one user's status to every local watcher.
    pub fn announce(&self, user: &str, online: bool) {
        let Some(watchers) = self.watchers.get(user) else {
            return;
        };
        let users = [user];
        let frame = if online {
            outbound::watchlist_events(&users, &[])
        } else {
            outbound::watchlist_events(&[], &users)
        };
        let frame: tokio_tungstenite::tungstenite::Utf8Bytes = frame.into();
        for w in watchers.values() {
            w.push(frame.clone());
        }
    }

    /// Closes every socket signed in as `user` with 4009. Returns how many.
    pub fn terminate(&self, user: &str) -> usize {
        let Some(entry) = self.sockets.get(user) else {
            return 0;
        };
        for conn in entry.values() {
            conn.close(CloseReason::Terminated);
        }
        entry.len()
    }

    /// Signed-in users with their socket counts on this node.
    pub fn share(&self) -> Vec<(String, usize)> {
        self.sockets
            .iter()
            .map(|(u, s)| (u.clone(), s.len()))
            .collect()
    }

    /// Whether the user has a signed-in socket here.
    pub fn is_online(&self, user: &str) -> bool {
        self.sockets.contains_key(user)
    }

    /// Single-node sign-in: register, queue the initial watchlist status (when `report`), and
    /// announce the user online if this is its first socket.
    pub fn sign_in(&mut self, user: &str, conn: &Arc<Outbox>, watchlist: &[String], report: bool) {
        let first = self.register(user, conn, watchlist);
        if report && !watchlist.is_empty() {
            let (online, offline): (Vec<&str>, Vec<&str>) = watchlist
                .iter()
                .map(String::as_str)
                .partition(|w| self.is_online(w));
            conn.push(outbound::watchlist_events(&online, &offline).into());
        }
        if first {
            self.announce(user, true);
        }
    }

    /// Single-node sign-out: unregister and announce the user offline if it was the last socket.
    pub fn sign_out(&mut self, user: &str, id: SocketId, watchlist: &[String]) {
        if self.unregister(user, id, watchlist) {
            self.announce(user, false);
        }
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

    #[test]
    fn online_offline_and_watchers() {
        let mut u = Users::default();
        let (w, mut wrx) = conn(1);
        let watch = vec!["a".to_string(), "b".to_string()];
        u.sign_in("w", &w, &watch, true);
        assert_eq!(
            wrx.try_recv().unwrap().as_str(),
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"offline\",\"user_ids\":[\"a\",\"b\"]}]}"}"#
        );
        let (a1, _) = conn(2);
        let (a2, _) = conn(3);
        u.sign_in("a", &a1, &[], true);
        assert_eq!(
            wrx.try_recv().unwrap().as_str(),
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"a\"]}]}"}"#
        );
        u.sign_in("a", &a2, &[], true);
        assert!(wrx.try_recv().is_err());
        u.sign_out("a", a1.id, &[]);
        assert!(wrx.try_recv().is_err());
        assert_eq!(u.terminate("a"), 1);
        assert_eq!(a2.closing(), Some(CloseReason::Terminated));
        u.sign_out("a", a2.id, &[]);
        assert!(wrx.try_recv().unwrap().as_str().contains("offline"));
        assert!(!u.is_online("a"));
        u.sign_out("w", w.id, &watch);
        assert!(u.watchers.is_empty() && u.sockets.is_empty());
    }
}
