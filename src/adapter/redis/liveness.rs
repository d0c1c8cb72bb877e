//! Node liveness: heartbeats, reaping dead nodes' shares (announcing each resulting
//! member_removed / offline once), and rewriting this node's share after a Redis outage.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

use redis::{RedisResult, Script};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::pubsub::SubCmd;
use super::scripts;
use super::wire::field;
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
/// since the last pass or Redis no longer knows the node.
pub async fn run(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(super::reap_every(&inner.config));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                publish_connection_counts(&inner).await;
                let stale = inner.stale.swap(false, Ordering::AcqRel);
                if stale || !beat.known {
                    tracing::info!(
                        node = inner.node,
                        lost = !beat.known,
                        "resubscribing and rewriting this node's share in Redis"
                    );
                    resync(&inner).await;
                }
                for node in beat.dead.into_iter().filter(|n| *n != inner.node) {
                    reap(&inner, node, beat.now, inner.config.node_timeout_ms as i64).await;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                inner.mark(false);
            }
        }
    }
}

/// What a reap or reset removed.
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
        .arg(node)
        .arg(now)
        .arg(timeout)
        .arg(inner.names.tag())
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
            for (app, channel, user) in removed.members {
                announce_member(inner, &app, &channel, &user, false);
                inner
                    .webhooks
                    .emit_for(&app, Emitted::MemberRemoved(channel, user));
            }
            for (app, user) in removed.offline {
                inner.watch(&app, &user, false);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, dead = node, "reap failed"),
    }
}

fn announce_member(inner: &Inner, app: &str, channel: &str, user: &str, added: bool) {
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
    inner.publish(Broadcast {
        app: app.to_string(),
        channel: channel.to_string(),
        event: event.to_string(),
        data,
        except: None,
        user_id: None,
        cache_ttl: None,
    });
}

/// After an outage: resubscribe, then replace this node's share in Redis with what its sockets
/// say now, and announce only the real differences.
async fn resync(inner: &Inner) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if inner.subs.send(SubCmd::Resubscribe(tx)).is_ok() {
        let _ = rx.await;
    }
    let removed = match run_reap(inner, inner.node, 0, -1).await {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "could not reset this node's share; will retry");
            inner.mark(false);
            return;
        }
    };
    let mut subs = Vec::new();
    let mut pres = Vec::new();
    let mut users = Vec::new();
    for app in inner.hub.app_ids() {
        let share = inner.hub.app(&app).share();
        for (channel, n) in share.subs {
            subs.push(json!([app, channel, n, field(&[&app, &channel])]));
        }
        for (channel, user, n, info) in share.presence {
            let info = info.map_or_else(|| "null".to_string(), |v| v.to_string());
            pres.push(json!([
                app,
                channel,
                user,
                n,
                info,
                field(&[&app, &channel, &user])
            ]));
        }
        for (user, n) in share.users {
            users.push(json!([app, user, n, field(&[&app, &user])]));
        }
    }
    let payload = json!({"subs": subs, "pres": pres, "users": users}).to_string();
    let mut link = inner.link();
    let restored: RedisResult<String> = scripts::RESTORE
        .key(inner.names.node(inner.node, "subs"))
        .key(inner.names.node(inner.node, "pres"))
        .key(inner.names.node(inner.node, "users"))
        .arg(inner.names.tag())
        .arg(payload)
        .invoke_async(&mut link)
        .await;
    let restored: Value = match restored {
        Ok(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
        Err(e) => {
            tracing::warn!(error = %e, "could not restore this node's share; will retry");
            inner.mark(false);
            return;
        }
    };
    let triples = |v: &Value| -> HashSet<(String, String, String)> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some((
                    e[0].as_str()?.to_string(),
                    e[1].as_str()?.to_string(),
                    e[2].as_str()?.to_string(),
                ))
            })
            .collect()
    };
    let pairs = |v: &Value| -> HashSet<(String, String)> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e[0].as_str()?.to_string(), e[1].as_str()?.to_string())))
            .collect()
    };
    let added = triples(&restored["added"]);
    let online = pairs(&restored["online"]);
    let removed_members: HashSet<_> = removed.members.into_iter().collect();
    let went_offline: HashSet<_> = removed.offline.into_iter().collect();
    for (app, channel, user) in removed_members.difference(&added) {
        announce_member(inner, app, channel, user, false);
        inner
            .webhooks
            .emit_for(app, Emitted::MemberRemoved(channel.clone(), user.clone()));
    }
    for (app, channel) in &removed.vacated {
        inner
            .webhooks
            .emit_for(app, Emitted::Vacated(channel.clone()));
    }
    for (app, channel, user) in added.difference(&removed_members) {
        announce_member(inner, app, channel, user, true);
    }
    for (app, user) in went_offline.difference(&online) {
        inner.watch(app, user, false);
    }
    for (app, user) in online.difference(&went_offline) {
        inner.watch(app, user, true);
    }
    tracing::info!(node = inner.node, "this node's share was rewritten");
}

/// Writes this node's connection count per app, for cluster-wide totals (the dashboard).
async fn publish_connection_counts(inner: &Inner) {
    let mut pipe = redis::pipe();
    for app in inner.hub.app_ids() {
        let n = inner.hub.app(&app).connection_count();
        pipe.hset(inner.names.connections(&app), inner.node, n)
            .ignore();
    }
    let mut link = inner.link();
    if let Err(e) = pipe.query_async::<()>(&mut link).await {
        tracing::debug!(error = %e, "connection counts not written");
    }
}
