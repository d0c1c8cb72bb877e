//! Which webhook transitions this node has announced (single-node adapter): channels announced
//! occupied, presence members announced added, cache misses announced since the last fill.

use std::collections::HashSet;

/// Announced state of one app.
#[derive(Debug, Default)]
pub struct Announced {
    occupied: HashSet<String>,
    members: HashSet<(String, String)>,
    misses: HashSet<String>,
}

impl Announced {
    /// Records `channel_occupied`; false if it is already announced.
    pub fn occupied(&mut self, channel: &str) -> bool {
        self.occupied.insert(channel.to_string())
    }

    /// Records `channel_vacated` when the channel is empty now; false otherwise or if it was
    /// never announced occupied.
    pub fn vacated(&mut self, channel: &str, empty_now: bool) -> bool {
        empty_now && self.occupied.remove(channel)
    }

    /// Records `member_added`; false if already announced.
    pub fn member_added(&mut self, channel: &str, user: &str) -> bool {
        self.members.insert((channel.to_string(), user.to_string()))
    }

    /// Records `member_removed` when the user is gone now.
    pub fn member_removed(&mut self, channel: &str, user: &str, gone_now: bool) -> bool {
        gone_now
            && self
                .members
                .remove(&(channel.to_string(), user.to_string()))
    }

    /// Records a cache miss; false if one was announced since the cache was last filled.
    pub fn cache_miss(&mut self, channel: &str) -> bool {
        self.misses.insert(channel.to_string())
    }

    /// The cache was filled: the next miss is a new episode.
    pub fn cache_filled(&mut self, channel: &str) {
        self.misses.remove(channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_within_grace_announces_nothing() {
        let mut a = Announced::default();
        assert!(a.occupied("c"));
        // left and came back: not re-announced, and the vacated check finds it occupied
        assert!(!a.occupied("c"));
        assert!(!a.vacated("c", false));
        assert!(a.vacated("c", true));
        assert!(!a.vacated("c", true));
        assert!(a.member_added("p", "u"));
        assert!(!a.member_added("p", "u"));
        assert!(!a.member_removed("p", "u", false));
        assert!(a.member_removed("p", "u", true));
        assert!(a.cache_miss("cache-x"));
        assert!(!a.cache_miss("cache-x"));
        a.cache_filled("cache-x");
        assert!(a.cache_miss("cache-x"));
    }
}
