//! Reads of one app's state on this node: channel counts and lists, presence members, the
//! cache, and this node's share for a cluster store.

use super::*;

impl AppHub {
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
}
