//! Node liveness: heartbeats, reaping dead nodes' shares (announcing each resulting
//! member_removed / offline once), deciding when to rewrite this node's share (`resync`), and
//! announcing the departures held back while the cluster settled.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{RedisResult, Script};
use serde_json::Value;
use tokio::sync::watch;

use super::scripts;
use super::settle::Pending;
use super::Inner;
use crate::broadcast::Broadcast;
use crate::protocol::presence;
use crate::webhooks::Emitted;

/// KEYS: nodes, this node's `seen` marker. ARGV: node, timeout ms. Records the heartbeat with
/// Redis's clock and returns `{now_ms, known, dead nodes...}`; `known` is 0 when the marker was
/// missing: Redis lost its data (restart, failover) or this node was reaped while alive, so
/// the node must rewrite its share.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
local known = redis.call('EXISTS', KEYS[2])
redis.call('SET', KEYS[2], 1)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
table.insert(dead, 1, known)
table.insert(dead, 1, now)
return dead
"#,
    )
});

/// One heartbeat's answer.
pub struct Beat {
    /// Redis's clock, ms.
    now: i64,
    /// Whether Redis still knew this node.
    known: bool,
    /// Nodes that look dead.
    dead: Vec<u32>,
}

/// Sends one heartbeat.
pub async fn heartbeat(inner: &Inner) -> RedisResult<Beat> {
    let mut link = inner.link();
    let reply: Vec<redis::Value> = HEARTBEAT
        .key(inner.names.nodes())
        .key(inner.names.node(inner.node, "seen"))
        .arg(inner.node)
        .arg(inner.config.node_timeout_ms)
        .invoke_async(&mut link)
        .await?;
    let mut it = reply.into_iter();
    let mut int = || -> RedisResult<i64> {
        Ok(it
            .next()
            .map(redis::from_redis_value)
            .transpose()?
            .unwrap_or(0))
    };
    let now = int()?;
    let known = int()? == 1;
    let dead = it
        .filter_map(|v| redis::from_redis_value::<u32>(v).ok())
        .collect();
    Ok(Beat { now, known, dead })
}

/// Heartbeats and reaps until shutdown; rewrites this node's share first whenever a call failed
/// since the last pass or Redis no longer knows the node. After any failure the node neither
/// reaps others nor announces departures until it has heartbeated healthily for a full node
/// timeout: every live node's heartbeat then had time to come through (a Redis restart with
/// persistence leaves every score older than the timeout) and every node to rewrite its share.
pub async fn run(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(super::reap_every(&inner.config));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = Duration::from_millis(inner.config.node_timeout_ms);
    // A node just started does not reap either: after a Redis restart every score is old, and
    // the other nodes' heartbeats may not have come through yet.
    let reap_from = tokio::time::Instant::now() + timeout;
    // Redis forgot this node; kept until a resync succeeds.
    let mut forgotten = false;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            // Stop heartbeating: sockets closing now remove their own share; anything left is
            // reaped (and announced) by the survivors after `node_timeout_ms`.
            _ = crate::state::shutdown_started(&mut shutdown) => return,
        }
        match heartbeat(&inner).await {
            Ok(beat) => {
                inner.mark(true);
                forgotten |= !beat.known;
                if inner.stale.load(Ordering::Acquire) || !beat.known {
                    inner.settle.unsettle(timeout);
                    tracing::info!(
                        node = inner.node,
                        lost = forgotten,
                        "resubscribing and rewriting this node's share in Redis"
                    );
                    if super::resync::resync(&inner, forgotten).await {
                        forgotten = false;
                    }
                }
                publish_connection_counts(&inner).await;
                if !inner.settle.settled() || tokio::time::Instant::now() < reap_from {
                    continue;
                }
                for node in beat.dead.into_iter().filter(|n| *n != inner.node) {
                    reap(&inner, node, beat.now, inner.config.node_timeout_ms as i64).await;
                }
                for pending in inner.settle.take_due() {
                    recheck(&inner, pending).await;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                inner.mark(false);
                // With Sentinel the master may have moved: ask again and follow it. The share
                // is rewritten at the next heartbeat (the node is stale now).
                if !inner.config.sentinel.is_empty() {
                    match inner.connect().await {
                        Ok(()) => tracing::info!(
                            node = inner.node,
                            "connected to the master Sentinel names"
                        ),
                        Err(e) => tracing::debug!(error = %e, "no master from Sentinel yet"),
                    }
                }
            }
        }
    }
}

/// At shutdown, once this node's sockets closed: the departures still held back wait for the
/// settling window to end (the heartbeat has stopped, so it is not extended: at most a node
/// timeout) and are checked as the heartbeat would have checked them. Those Redis cannot take
/// then are logged, with their number, as not announced.
pub async fn announce_held(inner: &Inner) {
    if inner.settle.held() == 0 {
        return;
    }
    if let Some(left) = inner.settle.remaining() {
        let wait = left.min(Duration::from_millis(inner.config.node_timeout_ms));
        tracing::info!(
            departures = inner.settle.held(),
            wait_ms = wait.as_millis() as u64,
            "announcing the departures held while the cluster settles before shutting down"
        );
        tokio::time::sleep(wait).await;
    }
    for pending in inner.settle.take_due() {
        recheck(inner, pending).await;
    }
    let left = inner.settle.held();
    if left > 0 {
        tracing::warn!(
            departures = left,
            "shutting down with departures not announced: Redis did not answer (member_removed, channel_vacated and user-offline events are lost for them)"
        );
    }
}

/// What a reap removed.
#[derive(Debug, Default)]
struct Removed {
    vacated: Vec<(String, String)>,
    members: Vec<(String, String, String)>,
    offline: Vec<(String, String)>,
}

fn decode_list<T: serde::de::DeserializeOwned>(json: &str) -> Vec<T> {
    // cjson encodes an empty table as {}.
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .filter_map(|f| serde_json::from_str::<T>(f.as_str()?).ok())
            .collect(),
        _ => Vec::new(),
    }
}

async fn run_reap(
    inner: &Inner,
    node: u32,
    now: i64,
    timeout: i64,
) -> RedisResult<Option<Removed>> {
    let mut link = inner.link();
    let reply: Option<(String, String, String)> = scripts::REAP
        .key(inner.names.nodes())
        .key(inner.names.node(node, "subs"))
        .key(inner.names.node(node, "pres"))
        .key(inner.names.node(node, "users"))
        .key(inner.names.node(node, "conns"))
        .arg(node)
        .arg(now)
        .arg(timeout)
        .arg(inner.names.tag())
        // The script publishes each member_removed itself where scripts can publish.
        .arg(if inner.scripts_publish() {
            inner.names.channel_base()
        } else {
            String::new()
        })
        .arg(inner.config.replay_ms)
        .invoke_async(&mut link)
        .await?;
    Ok(reply.map(|(vacated, removed, offline)| Removed {
        vacated: decode_list(&vacated),
        members: decode_list(&removed),
        offline: decode_list(&offline),
    }))
}

/// Removes a dead node's share; the node that wins the ZREM announces the consequences.
async fn reap(inner: &Inner, node: u32, now: i64, timeout: i64) {
    match run_reap(inner, node, now, timeout).await {
        Ok(Some(removed)) => {
            tracing::warn!(
                dead = node,
                members = removed.members.len(),
                "reaped a dead node's sockets"
            );
            // Webhooks wait out the grace period and then check the cluster state again.
            for (app, channel) in removed.vacated {
                inner.webhooks.emit_for(&app, Emitted::Vacated(channel));
            }
            // On standalone Redis the script published the member events already.
            let published = inner.scripts_publish();
            for (app, channel, user) in removed.members {
                if !published {
                    announce_member(inner, &app, &channel, &user, false, true);
                }
                inner
                    .webhooks
                    .emit_for(&app, Emitted::MemberRemoved(channel.clone(), user.clone()));
            }
            for (app, user) in removed.offline {
                inner.watch(&app, &user, false);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, dead = node, "reap failed"),
    }
}

/// Announces a departure held back while the cluster settled, if it is still true: the user has
/// no socket here and Redis (now rewritten by every live node) has none elsewhere.
async fn recheck(inner: &Inner, pending: Pending) {
    let mut link = inner.link();
    match &pending {
        Pending::Member { app, channel, user } => {
            if inner.hub.app(app).member_info(channel, user).is_some() {
                return;
            }
            // Decided and published in one step, so a re-join elsewhere cannot be overtaken.
            let pubsub = inner.member_channel(app, channel);
            let message = pubsub.as_ref().map(|_| {
                super::membership::member_message(
                    app,
                    channel,
                    "pusher_internal:member_removed",
                    presence::member_removed_data(user),
                    None,
                )
            });
            let gone: RedisResult<i64> = scripts::GONE
                .key(inner.names.presence(app, channel))
                .arg(user)
                .arg(pubsub.as_deref().unwrap_or_default())
                .arg(message.unwrap_or_default())
                .arg(inner.config.replay_ms)
                .invoke_async(&mut link)
                .await;
            match gone {
                Ok(1) => {
                    if pubsub.is_none() {
                        announce_member(inner, app, channel, user, false, true);
                    }
                    inner
                        .webhooks
                        .emit_for(app, Emitted::MemberRemoved(channel.clone(), user.clone()));
                }
                Ok(_) => {}
                Err(_) => inner.settle.hold(pending),
            }
        }
        Pending::Vacated { app, channel } => {
            if inner.hub.app(app).channel_stats(channel).subscription_count == 0 {
                inner
                    .webhooks
                    .emit_for(app, Emitted::Vacated(channel.clone()));
            }
        }
        Pending::Offline { app, user } => {
            if inner.hub.app(app).users().is_online(user) {
                return;
            }
            let online: RedisResult<bool> = redis::cmd("HEXISTS")
                .arg(inner.names.users(app))
                .arg(user)
                .query_async(&mut link)
                .await;
            match online {
                Ok(false) => inner.watch(app, user, false),
                Ok(true) => {}
                Err(_) => inner.settle.hold(pending),
            }
        }
    }
}

/// member_added / member_removed to every node's subscribers (`here`) or the other nodes' only.
pub(super) fn announce_member(
    inner: &Inner,
    app: &str,
    channel: &str,
    user: &str,
    added: bool,
    here: bool,
) {
    let (event, data) = if added {
        let info = inner.hub.app(app).member_info(channel, user).flatten();
        let m = presence::Member {
            user_id: user.to_string(),
            user_info: info,
        };
        (
            "pusher_internal:member_added",
            presence::member_added_data(&m),
        )
    } else {
        (
            "pusher_internal:member_removed",
            presence::member_removed_data(user),
        )
    };
    let b = Broadcast {
        app: app.to_string(),
        channel: channel.to_string(),
        event: event.to_string(),
        data,
        except: None,
        user_id: None,
        cache_ttl: None,
    };
    if here {
        inner.publish(b);
    } else {
        inner.publish_remote(b);
    }
}

/// Writes this node's connection count per app, for cluster-wide totals (the dashboard). The
/// hash goes away with the node when it is reaped.
async fn publish_connection_counts(inner: &Inner) {
    let mut pipe = redis::pipe();
    let key = inner.names.node(inner.node, "conns");
    for app in inner.hub.app_ids() {
        let n = inner.hub.app(&app).connection_count();
        pipe.hset(&key, &app, n).ignore();
    }
    let mut link = inner.link();
    if let Err(e) = pipe.query_async::<()>(&mut link).await {
        tracing::debug!(error = %e, "connection counts not written");
    }
}
