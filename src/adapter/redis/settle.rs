//! When this node may trust Redis's view of the cluster. After an outage, lost data or being
//! reaped while alive, every live node needs up to a node timeout to rewrite its share; until
//! then a departure seen here may only mean that another node has not rewritten its share yet.
//! So departures are held back and checked again once things settled, and no other node is
//! reaped (its heartbeat may simply not have come through yet).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A departure announced only if it is still true once the cluster settled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pending {
    /// `member_removed` of a presence member.
    Member {
        /// App id.
        app: String,
        /// Presence channel.
        channel: String,
        /// User id.
        user: String,
    },
    /// `channel_vacated` (its webhook; the claim checks the count again after the grace).
    Vacated {
        /// App id.
        app: String,
        /// Channel.
        channel: String,
    },
    /// A signed-in user going offline (watchlist).
    Offline {
        /// App id.
        app: String,
        /// User id.
        user: String,
    },
}

#[derive(Debug, Default)]
struct State {
    /// Not settled before this moment.
    until: Option<Instant>,
    pending: HashSet<Pending>,
    /// Arrivals decided here alone while Redis was unreachable (announced to this node's
    /// sockets only), as SYNC field arrays: `[app, channel, user]` members, `[app, user]` users.
    arrived: HashSet<Vec<String>>,
}

/// The settling window and the departures held back during it.
#[derive(Debug, Default)]
pub struct Settle {
    state: Mutex<State>,
}

impl Settle {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts (or extends) a window of `d` from now during which nothing is settled.
    pub fn unsettle(&self, d: Duration) {
        let end = Instant::now() + d;
        let mut s = self.state();
        if s.until.map_or(true, |u| u < end) {
            s.until = Some(end);
        }
    }

    /// Whether the window is over.
    pub fn settled(&self) -> bool {
        self.state().until.map_or(true, |u| Instant::now() >= u)
    }

    /// How long until the window is over (`None`: it is).
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.state().until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// How many departures are held.
    pub fn held(&self) -> usize {
        self.state().pending.len()
    }

    /// Holds a departure back until the window is over.
    pub fn hold(&self, p: Pending) {
        self.state().pending.insert(p);
    }

    /// Records an arrival decided here alone (Redis unreachable): the other nodes hear of it at
    /// the next resync.
    pub fn arrived_alone(&self, field: &[&str]) {
        let field = field.iter().map(|s| s.to_string()).collect();
        self.state().arrived.insert(field);
    }

    /// The arrivals decided here alone since the last call.
    pub fn take_arrived(&self) -> HashSet<Vec<String>> {
        std::mem::take(&mut self.state().arrived)
    }

    /// The held departures, once the window is over (none before).
    pub fn take_due(&self) -> Vec<Pending> {
        let mut s = self.state();
        if s.until.is_some_and(|u| Instant::now() < u) {
            return Vec::new();
        }
        s.pending.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn departures_wait_for_the_window() {
        let s = Settle::default();
        assert!(s.settled());
        s.unsettle(Duration::from_secs(2));
        s.unsettle(Duration::from_secs(1)); // never shortens
        assert!(!s.settled());
        let p = Pending::Offline {
            app: "1".into(),
            user: "u".into(),
        };
        s.hold(p.clone());
        s.hold(p.clone());
        assert_eq!(s.held(), 1);
        assert!(s.take_due().is_empty());
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(!s.settled());
        assert_eq!(s.remaining(), Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(s.settled());
        assert_eq!(s.remaining(), None);
        assert_eq!(s.take_due(), vec![p]);
        assert!(s.take_due().is_empty());
        assert_eq!(s.held(), 0);
    }
}
