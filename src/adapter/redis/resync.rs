//! Rewriting this node's share after an outage (or after being reaped while alive): one atomic
//! `SYNC` script under the order lock, then exactly the transitions it caused are announced.

use std::sync::atomic::Ordering;

use redis::RedisResult;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::liveness::announce_member;
use super::pubsub::SubCmd;
use super::scripts;
use super::settle::Pending;
use super::wire::field;
use super::Inner;
use crate::webhooks::Emitted;

/// The transitions a [`scripts::SYNC`] caused, as field arrays.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Synced {
    #[serde(deserialize_with = "lua_list")]
    occupied: Vec<Vec<String>>,
    #[serde(deserialize_with = "lua_list")]
    vacated: Vec<Vec<String>>,
    #[serde(deserialize_with = "lua_list")]
    added: Vec<Vec<String>>,
    #[serde(deserialize_with = "lua_list")]
    removed: Vec<Vec<String>>,
    #[serde(deserialize_with = "lua_list")]
    online: Vec<Vec<String>>,
    #[serde(deserialize_with = "lua_list")]
    offline: Vec<Vec<String>>,
    /// This node had been reaped while alive.
    reaped: bool,
}

/// cjson encodes an empty list as `{}`; anything but a list of string lists reads as empty.
fn lua_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<String>>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value(v).unwrap_or_default())
}

/// This node's share as its sockets say now, in [`scripts::SYNC`]'s input form.
fn desired_share(inner: &Inner) -> String {
    let (mut subs, mut pres, mut users) = (Map::new(), Map::new(), Map::new());
    for app in inner.hub.app_ids() {
        let share = inner.hub.app(&app).share();
        for (channel, n) in share.subs {
            subs.insert(field(&[&app, &channel]), json!(n));
        }
        for (channel, user, n, info) in share.presence {
            let info = info.map_or_else(|| "null".to_string(), |v| v.to_string());
            pres.insert(field(&[&app, &channel, &user]), json!([n, info]));
        }
        for (user, n) in share.users {
            users.insert(field(&[&app, &user]), json!(n));
        }
    }
    json!({"subs": subs, "pres": pres, "users": users}).to_string()
}

/// After an outage (or after being reaped while alive): move this node's share to what its
/// sockets say now in one atomic step, with this node's joins and leaves held off meanwhile,
/// then resubscribe, and announce exactly the transitions that caused. `forgotten`: Redis no
/// longer knew this node (its data was lost, or the node was reaped).
///
/// An arrival the resync records was announced before, unless it was decided here alone while
/// Redis was away (then the other nodes hear of it now) or the node had been reaped (everyone
/// heard it leave). So after a loss of Redis's data the recreated members and users are not
/// announced again.
pub(super) async fn resync(inner: &Inner, forgotten: bool) -> bool {
    let synced = {
        let _order = inner.order.write().await;
        // Calls failing from here on make the node stale again (and resync at the next beat).
        inner.stale.store(false, Ordering::Release);
        let mut link = inner.link();
        let r: RedisResult<String> = scripts::SYNC
            .key(inner.names.node(inner.node, "subs"))
            .key(inner.names.node(inner.node, "pres"))
            .key(inner.names.node(inner.node, "users"))
            .key(inner.names.node(inner.node, "reaped"))
            .arg(inner.names.tag())
            .arg(desired_share(inner))
            .invoke_async(&mut link)
            .await;
        if r.is_ok() {
            // Before joins resume: a channel joined while stale skipped its SUBSCRIBE, and the
            // member events scripts publish from now on must reach this node too.
            let (tx, rx) = tokio::sync::oneshot::channel();
            if inner.subs.send(SubCmd::Resubscribe(tx)).is_ok() {
                let _ = rx.await;
            }
        } else {
            inner.mark(false);
        }
        r
    };
    let synced: Synced = match synced {
        Ok(s) => serde_json::from_str(&s).unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "could not rewrite this node's share; will retry");
            return false;
        }
    };
    // Arrivals decided here alone while Redis was away could not claim their webhooks then:
    // they are claimed (and sent) now. Other recreated occupancy and membership was announced
    // before Redis lost it: recorded as announced without sending, so the matching vacated /
    // removed webhooks still go out later.
    let alone = inner.settle.take_arrived();
    for f in &synced.occupied {
        if let [app, channel] = &f[..] {
            let event = Emitted::Occupied(channel.clone());
            if alone.contains(f) {
                inner.webhooks.emit_for(app, event);
            } else {
                inner.webhooks.restored(app, event);
            }
        }
    }
    // Departures wait until every node had time to rewrite its share (this pass unsettled the
    // node): until then a count may be missing only because another node's share is.
    for f in &synced.vacated {
        if let [app, channel] = &f[..] {
            inner.settle.hold(Pending::Vacated {
                app: app.clone(),
                channel: channel.clone(),
            });
        }
    }
    let lost_data = forgotten && !synced.reaped;
    for f in &synced.added {
        if let [app, channel, user] = &f[..] {
            let event = Emitted::MemberAdded(channel.clone(), user.clone());
            if alone.contains(f) {
                announce_member(inner, app, channel, user, true, false);
                inner.webhooks.emit_for(app, event);
            } else {
                if !lost_data {
                    announce_member(inner, app, channel, user, true, true);
                }
                inner.webhooks.restored(app, event);
            }
        }
    }
    for f in &synced.removed {
        if let [app, channel, user] = &f[..] {
            inner.settle.hold(Pending::Member {
                app: app.clone(),
                channel: channel.clone(),
                user: user.clone(),
            });
        }
    }
    for f in &synced.online {
        if let [app, user] = &f[..] {
            if alone.contains(f) {
                inner.watch_remote(app, user, true);
            } else if !lost_data {
                inner.watch(app, user, true);
            }
        }
    }
    for f in &synced.offline {
        if let [app, user] = &f[..] {
            inner.settle.hold(Pending::Offline {
                app: app.clone(),
                user: user.clone(),
            });
        }
    }
    tracing::info!(node = inner.node, "this node's share was rewritten");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_replies_with_empty_lua_tables() {
        let s: Synced = serde_json::from_str(
            r#"{"occupied":{},"vacated":[["1","c"]],"added":{},"removed":[["1","presence-a","u"]],"online":{},"offline":{}}"#,
        )
        .unwrap();
        assert!(s.occupied.is_empty());
        assert_eq!(s.vacated, vec![vec!["1".to_string(), "c".to_string()]]);
        assert_eq!(s.removed[0][2], "u");
    }
}
