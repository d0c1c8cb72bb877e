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
    /// Registers a signed-in socket and its watchlist. Returns whether the user came online
    /// (first socket) and, when `report` is set, queues the initial watchlist status.
    pub fn sign_in(
        &mut self,
        user: &str,
        conn: &Arc<Outbox>,
        watchlist: &[String],
        report: bool,
    ) -> bool {
        let entry = self.sockets.entry(user.to_string()).or_default();
        let came_online = entry.is_empty();
        entry.insert(conn.id, conn.clone());
        if report {
            for w in watchlist {
                self.watchers
                    .entry(w.clone())
                    .or_default()
                    .insert(conn.id, conn.clone());
            }
            let (online, offline): (Vec<&str>, Vec<&str>) = watchlist
                .iter()
                .map(String::as_str)
                .partition(|w| self.sockets.get(*w).is_some_and(|s| !s.is_empty()));
            if !watchlist.is_empty() {
                conn.push(outbound::watchlist_events(&online, &offline).into());
            }
        }
        if came_online {
            self.announce(user, "online");
        }
        came_online
    }

    /// Removes a signed-in socket. Returns whether the user went offline (last socket).
    pub fn sign_out(&mut self, user: &str, id: SocketId, watchlist: &[String]) -> bool {
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
        let went_offline = entry.is_empty();
        if went_offline {
            self.sockets.remove(user);
            self.announce(user, "offline");
        }
        went_offline
    }

    fn announce(&self, user: &str, status: &str) {
        let Some(watchers) = self.watchers.get(user) else {
            return;
        };
        let users = [user];
        let frame = if status == "online" {
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

    /// Whether the user has a signed-in socket here.
    pub fn is_online(&self, user: &str) -> bool {
        self.sockets.contains_key(user)
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
    fn online_offline_and_watchers() {
        let mut u = Users::default();
        let (w, mut wrx) = conn(1);
        let watch = vec!["a".to_string(), "b".to_string()];
        assert!(u.sign_in("w", &w, &watch, true));
        assert_eq!(
            wrx.try_recv().unwrap().as_str(),
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"offline\",\"user_ids\":[\"a\",\"b\"]}]}"}"#
        );
        let (a1, _) = conn(2);
        let (a2, _) = conn(3);
        assert!(u.sign_in("a", &a1, &[], true));
        assert_eq!(
            wrx.try_recv().unwrap().as_str(),
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"a\"]}]}"}"#
        );
        assert!(!u.sign_in("a", &a2, &[], true));
        assert!(wrx.try_recv().is_err());
        assert!(!u.sign_out("a", a1.id, &[]));
        assert!(wrx.try_recv().is_err());
        assert_eq!(u.terminate("a"), 1);
        assert_eq!(a2.closing(), Some(CloseReason::Terminated));
        assert!(u.sign_out("a", a2.id, &[]));
        assert!(wrx.try_recv().unwrap().as_str().contains("offline"));
        assert!(!u.is_online("a"));
        assert!(u.sign_out("w", w.id, &watch));
        assert!(u.watchers.is_empty() && u.sockets.is_empty());
    }
}
