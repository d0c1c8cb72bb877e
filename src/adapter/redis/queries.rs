//! Reads of the cluster-wide state (channel lists and counts, presence users, connections, the
//! cache) and webhook claims, each one round trip to Redis.

use redis::AsyncCommands;
use redis::Value as RValue;
use serde_json::Value;

use super::{adapter_error, scripts, Inner};
use crate::adapter::{AdapterError, Claim};
use crate::hub::ChannelStats;

impl Inner {
    pub(super) async fn channel_stats(
        &self,
        app: &str,
        channel: &str,
    ) -> Result<ChannelStats, AdapterError> {
        let mut link = self.link();
        let (subs, users): (Option<usize>, usize) = redis::pipe()
            .hget(self.names.subs(app), channel)
            .hlen(self.names.presence(app, channel))
            .query_async(&mut link)
            .await
            .map_err(adapter_error)?;
        Ok(ChannelStats {
            subscription_count: subs.unwrap_or(0),
            user_count: users,
        })
    }

    /// A cache channel's last event (name, data) for a new subscriber.
    pub(super) async fn cached_event(&self, app: &str, channel: &str) -> Option<(String, String)> {
        if !self.reachable() {
            return None;
        }
        let mut link = self.link();
        let raw: Option<String> = link.get(self.names.cache(app, channel)).await.ok()?;
        let v: Value = serde_json::from_str(&raw?).ok()?;
        Some((
            v["event"].as_str()?.to_string(),
            v["data"].as_str()?.to_string(),
        ))
    }

    /// A cache channel's data and remaining seconds (REST).
    pub(super) async fn cached(
        &self,
        app: &str,
        channel: &str,
    ) -> Result<Option<(String, u64)>, AdapterError> {
        let mut link = self.link();
        let key = self.names.cache(app, channel);
        let (raw, pttl): (Option<String>, i64) = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut link)
            .await
            .map_err(adapter_error)?;
        let Some(v) = raw.and_then(|r| serde_json::from_str::<Value>(&r).ok()) else {
            return Ok(None);
        };
        let data = v["data"].as_str().unwrap_or_default().to_string();
        let ttl = u64::try_from(pttl).map(|ms| ms.div_ceil(1000)).unwrap_or(0);
        Ok(Some((data, ttl)))
    }

    /// Whether this node should send the webhook of a transition (recorded as announced); the
    /// `queued` entries go to the webhook stream in the same step when it should.
    pub(super) async fn claim(&self, app: &str, claim: Claim<'_>, queued: &[String]) -> bool {
        let n = &self.names;
        let (kind, item, keys) = match claim {
            Claim::Occupied(c) => ("occupied", c, vec![n.announced(app, "occ")]),
            Claim::Vacated(c) => ("vacated", c, vec![n.announced(app, "occ"), n.subs(app)]),
            Claim::MemberAdded(c, u) => ("added", u, vec![n.announced(app, &format!("mem:{c}"))]),
            Claim::MemberRemoved(c, u) => (
                "removed",
                u,
                vec![n.announced(app, &format!("mem:{c}")), n.presence(app, c)],
            ),
            Claim::CacheMiss(c) => ("miss", c, vec![n.announced(app, "miss")]),
        };
        let mut script = scripts::CLAIM.prepare_invoke();
        for k in keys {
            script.key(k);
        }
        script.arg(kind).arg(item);
        if !queued.is_empty() {
            script.key(n.webhooks());
            for e in queued {
                script.arg(e);
            }
        }
        let mut link = self.link();
        match script.invoke_async::<i64>(&mut link).await {
            Ok(r) => r == 1,
            Err(e) => {
                tracing::debug!(error = %e, "webhook claim failed");
                self.mark(false);
                false
            }
        }
    }

    pub(super) async fn channels(
        &self,
        app: &str,
        prefix: &str,
    ) -> Result<Vec<(String, ChannelStats)>, AdapterError> {
        let mut link = self.link();
        let pres_prefix = format!("{}:pres:{app}:", self.names.tag());
        let flat: Vec<RValue> = scripts::CHANNELS
            .key(self.names.subs(app))
            .arg(prefix)
            .arg(pres_prefix)
            .invoke_async(&mut link)
            .await
            .map_err(adapter_error)?;
        let mut out = Vec::with_capacity(flat.len() / 3);
        for c in flat.chunks(3) {
            if let [name, subs, users] = c {
                let name: String = redis::from_redis_value(name.clone()).map_err(adapter_error)?;
                let subscription_count: usize =
                    redis::from_redis_value(subs.clone()).map_err(adapter_error)?;
                let user_count: usize =
                    redis::from_redis_value(users.clone()).map_err(adapter_error)?;
                out.push((
                    name,
                    ChannelStats {
                        subscription_count,
                        user_count,
                    },
                ));
            }
        }
        Ok(out)
    }

    pub(super) async fn users(
        &self,
        app: &str,
        channel: &str,
    ) -> Result<Vec<String>, AdapterError> {
        let mut link = self.link();
        link.hkeys(self.names.presence(app, channel))
            .await
            .map_err(adapter_error)
    }

    pub(super) async fn connections(&self, app: &str) -> Result<usize, AdapterError> {
        let mut link = self.link();
        scripts::CONNECTIONS
            .key(self.names.nodes())
            .arg(self.config.node_timeout_ms)
            .arg(self.names.tag())
            .arg(app)
            .invoke_async(&mut link)
            .await
            .map_err(adapter_error)
    }
}
