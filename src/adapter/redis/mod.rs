//! The Redis adapter: many herald nodes behave as one.
//!
//! - Every broadcast is delivered locally at once, then published on a per-channel pub/sub
//!   channel that only nodes with local subscribers listen to (sharded pub/sub on a cluster).
//! - Occupancy, subscription counts, presence members and signed-in users live in Redis hashes;
//!   the transitions that produce events are decided by Lua scripts, so exactly one node
//!   announces each one.
//! - Each node keeps its own share in per-node hashes, heartbeats, and reaps dead nodes' shares
//!   (`liveness`). When Redis is away, local delivery goes on; on its return the node rewrites
//!   its share from its own sockets.

mod link;
mod liveness;
mod pubsub;
mod scripts;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::Value as RValue;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::{Adapter, AdapterError, BoxFuture, Claim, Join, SignIn};
use crate::broadcast::Broadcast;
use crate::config::RedisConfig;
use crate::hub::{ChannelStats, CountUpdate, Hub, JoinRefused, JoinRequest, Joined, Left, Replay};
use crate::protocol::channel::classify;
use crate::protocol::outbound;
use crate::protocol::presence;
use crate::protocol::SocketId;
use link::Link;
use pubsub::{Out, SubCmd};
use wire::{field, Names, Wire};

/// Shared by the adapter and its background tasks.
pub(crate) struct Inner {
    hub: Arc<Hub>,
    /// This node's id (also the first part of its socket ids).
    node: u32,
    names: Names,
    link: Link,
    config: RedisConfig,
    /// Work for the publisher task (bounded: dropped and counted while Redis is away).
    out: mpsc::Sender<Out>,
    /// Requests for the subscription task.
    subs: mpsc::UnboundedSender<SubCmd>,
    /// Whether the last Redis call succeeded.
    healthy: AtomicBool,
    /// A call failed since the last resync: this node's share in Redis may be wrong.
    stale: AtomicBool,
    /// Broadcasts dropped because the publish queue was full.
    dropped: AtomicU64,
    /// Pipelines sent to Redis by the publisher, and the microseconds they took.
    publishes: AtomicU64,
    publish_micros: AtomicU64,
    /// Where the reaper records the webhooks of a dead node's departures.
    webhooks: crate::webhooks::WebhookSink,
}

/// The adapter handle.
#[derive(Clone)]
pub struct RedisAdapter {
    inner: Arc<Inner>,
}

fn adapter_error(e: impl std::fmt::Display) -> AdapterError {
    AdapterError(e.to_string())
}

impl RedisAdapter {
    /// Connects to Redis and starts the background tasks (publisher, subscriptions, incoming
    /// messages, heartbeat and reaper). They stop when `shutdown` flips.
    pub async fn start(
        hub: Arc<Hub>,
        node: u32,
        config: RedisConfig,
        shutdown: watch::Receiver<bool>,
        webhooks: crate::webhooks::WebhookSink,
    ) -> Result<RedisAdapter, AdapterError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let link = Link::connect(&config, push_tx)
            .await
            .map_err(adapter_error)?;
        let (out_tx, out_rx) = mpsc::channel(config.publish_queue);
        let (subs_tx, subs_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            hub,
            node,
            names: Names::new(&config.prefix),
            link,
            config,
            out: out_tx,
            subs: subs_tx,
            healthy: AtomicBool::new(true),
            stale: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            publish_micros: AtomicU64::new(0),
            webhooks,
        });
        let mut ctl = inner.link.clone();
        ctl.subscribe(&inner.names.control())
            .await
            .map_err(adapter_error)?;
        liveness::heartbeat(&inner).await.map_err(adapter_error)?;
        tokio::spawn(pubsub::publisher(inner.clone(), out_rx));
        tokio::spawn(pubsub::subscriptions(inner.clone(), subs_rx));
        tokio::spawn(pubsub::incoming(inner.clone(), push_rx));
        tokio::spawn(liveness::run(inner.clone(), shutdown));
        tracing::info!(node, "joined the cluster through Redis");
        Ok(RedisAdapter { inner })
    }
}

impl Inner {
    fn link(&self) -> Link {
        self.link.clone()
    }

    /// Records the outcome of a Redis call; logs once per change.
    fn mark(&self, ok: bool) {
        if !ok {
            self.stale.store(true, Ordering::Release);
        }
        let was = self.healthy.swap(ok, Ordering::AcqRel);
        if was && !ok {
            tracing::warn!(node = self.node, "Redis unreachable: local delivery continues, cluster state will be rewritten when it returns");
        }
    }

    fn enqueue(&self, item: Out) {
        if self.out.try_send(item).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "Redis publish queue full: broadcasts for other nodes are being dropped"
                );
            }
        }
    }

    fn publish_wire(&self, channel: String, w: &Wire) {
        self.enqueue(Out::Publish {
            channel,
            payload: w.encode(),
        });
    }

    /// Local delivery plus publication to the other nodes.
    fn publish(&self, mut b: Broadcast) {
        self.hub.app(&b.app).deliver(&b);
        if let Some(ttl) = b.cache_ttl.take() {
            let value = serde_json::json!({"event": b.event, "data": b.data}).to_string();
            self.enqueue(Out::Cache {
                key: self.names.cache(&b.app, &b.channel),
                miss: (self.names.announced(&b.app, "miss"), b.channel.clone()),
                value,
                ttl,
            });
        }
        let channel = self.names.channel(&b.app, &b.channel);
        self.publish_wire(
            channel,
            &Wire::Broadcast {
                origin: self.node,
                b,
            },
        );
    }

    /// Applies a subscription-count update locally, retrying later when throttled.
    fn local_count(self: &Arc<Self>, app: &str, channel: &str, count: Option<usize>) {
        if let CountUpdate::Later(wait) = self.hub.app(app).announce_count(channel, count) {
            let inner = self.clone();
            let (app, channel) = (app.to_string(), channel.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let n = inner
                    .channel_stats(&app, &channel)
                    .await
                    .ok()
                    .map(|s| s.subscription_count);
                let _ = inner.hub.app(&app).announce_count(&channel, n.or(count));
            });
        }
    }

    async fn channel_stats(&self, app: &str, channel: &str) -> Result<ChannelStats, AdapterError> {
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

    async fn acquire(&self, app: &str, channel: &str) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .subs
            .send(SubCmd::Acquire(self.names.channel(app, channel), tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    fn release(&self, app: &str, channel: &str) {
        let _ = self
            .subs
            .send(SubCmd::Release(self.names.channel(app, channel)));
    }

    async fn subscribe(&self, j: Join<'_>) -> Result<Joined, JoinRefused> {
        self.acquire(j.app, j.channel).await;
        let mut script = scripts::JOIN.key(self.names.subs(j.app));
        script
            .key(self.names.node(self.node, "subs"))
            .arg(j.channel)
            .arg(field(&[j.app, j.channel]));
        if let Some(m) = j.member {
            let info = m
                .user_info
                .as_ref()
                .map_or_else(|| "null".to_string(), Value::to_string);
            script
                .key(self.names.presence(j.app, j.channel))
                .key(self.names.presence_info(j.app, j.channel))
                .key(self.names.node(self.node, "pres"))
                .arg(&m.user_id)
                .arg(info)
                .arg(j.max_members)
                .arg(field(&[j.app, j.channel, &m.user_id]));
        }
        let mut link = self.link();
        let decided: Option<(i64, i64, Vec<String>)> =
            match script.invoke_async::<Vec<RValue>>(&mut link).await {
                Ok(v) => {
                    self.mark(true);
                    parse_join(&v)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "join not recorded in Redis");
                    self.mark(false);
                    None
                }
            };
        if let Some((-1, _, _)) = decided {
            self.release(j.app, j.channel);
            return Err(JoinRefused::PresenceFull);
        }
        let replay = if j.announce && classify(j.channel).cache {
            Replay::Given(self.cached_event(j.app, j.channel).await)
        } else {
            Replay::Local
        };
        let presence_data = match (&decided, j.member) {
            (Some((_, _, members)), Some(_)) => Some(presence_payload(members)),
            _ => None,
        };
        let local = self.hub.app(j.app).subscribe(JoinRequest {
            channel: j.channel,
            conn: j.conn,
            member: j.member,
            // The cluster enforced the limit when it could; locally only count this node.
            max_members: if decided.is_some() {
                usize::MAX
            } else {
                j.max_members
            },
            announce: j.announce,
            presence_data: presence_data.as_deref(),
            replay,
        });
        match (local, decided) {
            (Ok(mut joined), Some((count, added, _))) => {
                joined.member_added = added == 1;
                joined.occupied = count == 1;
                joined.count = usize::try_from(count).ok();
                Ok(joined)
            }
            (Ok(joined), None) => Ok(joined),
            (Err(e), _) => {
                self.release(j.app, j.channel);
                Err(e)
            }
        }
    }

    async fn cached_event(&self, app: &str, channel: &str) -> Option<(String, String)> {
        let mut link = self.link();
        let raw: Option<String> = link.get(self.names.cache(app, channel)).await.ok()?;
        let v: Value = serde_json::from_str(&raw?).ok()?;
        Some((
            v["event"].as_str()?.to_string(),
            v["data"].as_str()?.to_string(),
        ))
    }

    async fn unsubscribe(
        &self,
        app: &str,
        channel: &str,
        id: SocketId,
        user_id: Option<&str>,
    ) -> Left {
        let mut left = self.hub.app(app).unsubscribe(channel, id, user_id);
        if !left.was_subscribed {
            return left;
        }
        let mut script = scripts::LEAVE.key(self.names.subs(app));
        script
            .key(self.names.node(self.node, "subs"))
            .arg(channel)
            .arg(field(&[app, channel]));
        if let Some(uid) = user_id {
            script
                .key(self.names.presence(app, channel))
                .key(self.names.presence_info(app, channel))
                .key(self.names.node(self.node, "pres"))
                .arg(uid)
                .arg(field(&[app, channel, uid]));
        }
        let mut link = self.link();
        match script.invoke_async::<(i64, i64)>(&mut link).await {
            Ok((count, removed)) => {
                self.mark(true);
                left.member_removed = (removed == 1)
                    .then(|| user_id.map(str::to_string))
                    .flatten();
                left.vacated = count == 0;
                left.count = usize::try_from(count).ok();
            }
            Err(e) => {
                tracing::debug!(error = %e, "leave not recorded in Redis");
                self.mark(false);
            }
        }
        self.release(app, channel);
        left
    }

    /// Changes the user's cluster-wide socket count; returns the new count.
    async fn user_delta(&self, app: &str, user: &str, delta: i64) -> Option<i64> {
        let mut link = self.link();
        let r = scripts::USER
            .key(self.names.users(app))
            .key(self.names.node(self.node, "users"))
            .arg(user)
            .arg(field(&[app, user]))
            .arg(delta)
            .invoke_async::<i64>(&mut link)
            .await;
        self.mark(r.is_ok());
        r.ok()
    }

    async fn sign_in(&self, s: SignIn<'_>) {
        let first_here = self
            .hub
            .app(s.app)
            .users()
            .register(s.user, s.conn, s.watchlist);
        if s.watchlist_events && !s.watchlist.is_empty() {
            let mut link = self.link();
            let counts: Option<Vec<Option<i64>>> = redis::cmd("HMGET")
                .arg(self.names.users(s.app))
                .arg(s.watchlist)
                .query_async(&mut link)
                .await
                .ok();
            let users = self.hub.app(s.app);
            let users = users.users();
            let (online, offline): (Vec<&str>, Vec<&str>) = match counts {
                Some(c) => {
                    let on: Vec<bool> = c.iter().map(|n| n.unwrap_or(0) > 0).collect();
                    let mut flags = on.into_iter();
                    s.watchlist
                        .iter()
                        .map(String::as_str)
                        .partition(|_| flags.next().unwrap_or(false))
                }
                None => s
                    .watchlist
                    .iter()
                    .map(String::as_str)
                    .partition(|w| users.is_online(w)),
            };
            s.conn
                .push(outbound::watchlist_events(&online, &offline).into());
        }
        let came_online = match self.user_delta(s.app, s.user, 1).await {
            Some(n) => n == 1,
            None => first_here,
        };
        if came_online {
            self.watch(s.app, s.user, true);
        }
    }

    async fn sign_out(&self, app: &str, user: &str, id: SocketId, watchlist: &[String]) {
        let last_here = self.hub.app(app).users().unregister(user, id, watchlist);
        let went_offline = match self.user_delta(app, user, -1).await {
            Some(n) => n == 0,
            None => last_here,
        };
        if went_offline {
            self.watch(app, user, false);
        }
    }

    /// Announces a user's status here and on every other node.
    fn watch(&self, app: &str, user: &str, online: bool) {
        self.hub.app(app).users().announce(user, online);
        let w = Wire::Watch {
            origin: self.node,
            app: app.to_string(),
            user: user.to_string(),
            online,
        };
        self.publish_wire(self.names.control(), &w);
    }
}

/// `{-1}` or `{count, added, [user, info, ...]}`.
fn parse_join(v: &[RValue]) -> Option<(i64, i64, Vec<String>)> {
    let int = |v: &RValue| redis::from_redis_value::<i64>(v.clone()).ok();
    let count = int(v.first()?)?;
    if count == -1 {
        return Some((-1, 0, Vec::new()));
    }
    let added = int(v.get(1)?)?;
    let members = v
        .get(2)
        .and_then(|m| redis::from_redis_value::<Vec<String>>(m.clone()).ok())
        .unwrap_or_default();
    Some((count, added, members))
}

/// The presence `subscription_succeeded` payload from flat `[user, info json, ...]`.
fn presence_payload(flat: &[String]) -> String {
    let pairs: Vec<(&str, Option<Value>)> = flat
        .chunks(2)
        .filter_map(|p| match p {
            [user, info] => Some((
                user.as_str(),
                serde_json::from_str::<Value>(info)
                    .ok()
                    .filter(|v| !v.is_null()),
            )),
            _ => None,
        })
        .collect();
    presence::subscription_data(pairs.iter().map(|(u, i)| (*u, i.as_ref())))
}

impl Adapter for RedisAdapter {
    fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    fn publish_stats(&self) -> (u64, f64, u64) {
        let i = &self.inner;
        let micros = i.publish_micros.load(Ordering::Relaxed);
        (
            i.publishes.load(Ordering::Relaxed),
            micros as f64 / 1e6,
            i.dropped.load(Ordering::Relaxed),
        )
    }

    fn publish(&self, b: Broadcast) {
        self.inner.publish(b);
    }

    fn subscribe<'a>(&'a self, j: Join<'a>) -> BoxFuture<'a, Result<Joined, JoinRefused>> {
        Box::pin(self.inner.subscribe(j))
    }

    fn unsubscribe<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
        id: SocketId,
        user_id: Option<&'a str>,
    ) -> BoxFuture<'a, Left> {
        Box::pin(self.inner.unsubscribe(app, channel, id, user_id))
    }

    fn announce_count(&self, app: &str, channel: &str, count: Option<usize>) {
        self.inner.local_count(app, channel, count);
        if let Some(count) = count {
            let w = Wire::Count {
                origin: self.inner.node,
                app: app.to_string(),
                channel: channel.to_string(),
                count,
            };
            self.inner
                .publish_wire(self.inner.names.channel(app, channel), &w);
        }
    }

    fn sign_in<'a>(&'a self, s: SignIn<'a>) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.sign_in(s))
    }

    fn sign_out<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
        id: SocketId,
        watchlist: &'a [String],
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.sign_out(app, user, id, watchlist))
    }

    fn terminate_user<'a>(
        &'a self,
        app: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async move {
            self.inner.hub.app(app).users().terminate(user);
            let w = Wire::Terminate {
                app: app.to_string(),
                user: user.to_string(),
            };
            let mut link = self.inner.link();
            let cmd = link.publish_cmd(&self.inner.names.control(), &w.encode());
            cmd.query_async::<()>(&mut link)
                .await
                .map_err(adapter_error)
        })
    }

    fn cached<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, u64)>, AdapterError>> {
        Box::pin(async move {
            let mut link = self.inner.link();
            let key = self.inner.names.cache(app, channel);
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
        })
    }

    fn claim_webhook<'a>(&'a self, app: &'a str, claim: Claim<'a>) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let n = &self.inner.names;
            let (kind, item, keys) = match claim {
                Claim::Occupied(c) => ("occupied", c, vec![n.announced(app, "occ")]),
                Claim::Vacated(c) => ("vacated", c, vec![n.announced(app, "occ"), n.subs(app)]),
                Claim::MemberAdded(c, u) => {
                    ("added", u, vec![n.announced(app, &format!("mem:{c}"))])
                }
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
            let mut link = self.inner.link();
            match script
                .arg(kind)
                .arg(item)
                .invoke_async::<i64>(&mut link)
                .await
            {
                Ok(r) => r == 1,
                Err(e) => {
                    tracing::debug!(error = %e, "webhook claim failed");
                    self.inner.mark(false);
                    false
                }
            }
        })
    }

    fn channels<'a>(
        &'a self,
        app: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ChannelStats)>, AdapterError>> {
        Box::pin(async move {
            let mut link = self.inner.link();
            let pres_prefix = format!("{}:pres:{app}:", self.inner.names.tag());
            let flat: Vec<RValue> = scripts::CHANNELS
                .key(self.inner.names.subs(app))
                .arg(prefix)
                .arg(pres_prefix)
                .invoke_async(&mut link)
                .await
                .map_err(adapter_error)?;
            let mut out = Vec::with_capacity(flat.len() / 3);
            for c in flat.chunks(3) {
                if let [name, subs, users] = c {
                    let name: String =
                        redis::from_redis_value(name.clone()).map_err(adapter_error)?;
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
        })
    }

    fn channel<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelStats, AdapterError>> {
        Box::pin(self.inner.channel_stats(app, channel))
    }

    fn users<'a>(
        &'a self,
        app: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AdapterError>> {
        Box::pin(async move {
            let mut link = self.inner.link();
            link.hkeys(self.inner.names.presence(app, channel))
                .await
                .map_err(adapter_error)
        })
    }

    fn connections<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<usize, AdapterError>> {
        Box::pin(async move {
            let mut link = self.inner.link();
            scripts::CONNECTIONS
                .key(self.inner.names.connections(app))
                .key(self.inner.names.nodes())
                .arg(self.inner.config.node_timeout_ms)
                .invoke_async(&mut link)
                .await
                .map_err(adapter_error)
        })
    }
}

/// How long a node waits between reaper passes, relative to the heartbeat.
pub(crate) fn reap_every(config: &RedisConfig) -> Duration {
    Duration::from_millis(config.heartbeat_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_payload_from_redis() {
        let flat = vec![
            "1".to_string(),
            r#"{"name":"Ann"}"#.to_string(),
            "2".to_string(),
            "null".to_string(),
        ];
        let data: Value = serde_json::from_str(&presence_payload(&flat)).unwrap();
        assert_eq!(data["presence"]["count"], 2);
        assert_eq!(
            data["presence"]["hash"],
            serde_json::json!({"1": {"name": "Ann"}, "2": null})
        );
    }

    #[test]
    fn join_replies() {
        assert_eq!(parse_join(&[RValue::Int(-1)]), Some((-1, 0, vec![])));
        let v = vec![
            RValue::Int(3),
            RValue::Int(1),
            RValue::Array(vec![
                RValue::BulkString(b"u".to_vec()),
                RValue::BulkString(b"null".to_vec()),
            ]),
        ];
        assert_eq!(
            parse_join(&v),
            Some((3, 1, vec!["u".to_string(), "null".to_string()]))
        );
        assert_eq!(parse_join(&[]), None);
    }
}
