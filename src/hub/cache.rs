//! The last event of each cache channel, with its expiry.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// One cached event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// Event name.
    pub event: String,
    /// Event data string.
    pub data: String,
    expires: Instant,
}

impl Cached {
    /// Seconds left before expiry (rounded up).
    pub fn ttl_secs(&self, now: Instant) -> u64 {
        let left = self.expires.saturating_duration_since(now);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }
}

/// Cache entries of one hub shard.
#[derive(Debug, Default)]
pub struct Cache {
    entries: HashMap<String, Cached>,
}

impl Cache {
    /// Stores the channel's latest event.
    pub fn put(&mut self, channel: &str, event: &str, data: &str, ttl: Duration, now: Instant) {
        let c = Cached {
            event: event.to_string(),
            data: data.to_string(),
            expires: now + ttl,
        };
        self.entries.insert(channel.to_string(), c);
    }

    /// The live entry of a channel; an expired one is dropped.
    pub fn get(&mut self, channel: &str, now: Instant) -> Option<&Cached> {
        if self.entries.get(channel).is_some_and(|c| c.expires <= now) {
            self.entries.remove(channel);
        }
        self.entries.get(channel)
    }

    /// Drops every expired entry.
    pub fn sweep(&mut self, now: Instant) {
        self.entries.retain(|_, c| c.expires > now);
    }

    /// Number of entries (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let now = Instant::now();
        let mut c = Cache::default();
        c.put("cache-a", "e", "d", Duration::from_secs(10), now);
        c.put("cache-b", "e", "d", Duration::from_secs(1), now);
        assert_eq!(c.get("cache-a", now).map(|c| c.ttl_secs(now)), Some(10));
        assert_eq!(
            c.get("cache-a", now + Duration::from_millis(9500))
                .map(|c| c.ttl_secs(now + Duration::from_millis(9500))),
            Some(1)
        );
        c.sweep(now + Duration::from_secs(2));
        assert_eq!(c.len(), 1);
        assert!(c.get("cache-a", now + Duration::from_secs(10)).is_none());
        assert!(c.is_empty());
    }
}
