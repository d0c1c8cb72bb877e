//! This node's joins, leaves, sign-ins and sign-outs: each decided cluster-wide by a Lua script
//! and applied to the local hub in an order that a resync (which takes the `order` lock for
//! writing) can never interleave with. Departures that Redis cannot vouch for are held back
//! (`settle`).

use redis::Value as RValue;
use serde_json::Value;

use super::settle::Pending;
use super::wire::field;
use super::{scripts, Inner};
use crate::adapter::{Join, SignIn};
use crate::hub::{JoinRefused, JoinRequest, Joined, Left, Replay};
use crate::protocol::channel::classify;
use crate::protocol::outbound;
use crate::protocol::presence;
use crate::protocol::SocketId;

/// What Redis decided for a join.
#[derive(Debug, PartialEq, Eq)]
struct Decided {
    count: i64,
    added: bool,
    /// Flat `[user, info json, ...]` of a presence channel.
    members: Vec<String>,
}

impl Inner {
    /// Redis lost this node (data loss, or reaped while alive): rewrite the share soon and give
    /// the other nodes time to rewrite theirs.
    fn note_known(&self, known: bool) {
        if !known {
            self.mark_lost();
        }
    }

    /// Whether a departure decided now can be announced at once (else it is held back).
    fn trusted(&self, known: bool) -> bool {
        self.note_known(known);
        known && self.settle.settled()
    }

    pub(super) async fn subscribe(&self, j: Join<'_>) -> Result<Joined, JoinRefused> {
        self.acquire(j.app, j.channel).await;
        let _order = self.order.read().await;
        let mut script = scripts::JOIN.key(self.names.node(self.node, "seen"));
        script
            .key(self.names.subs(j.app))
            .key(self.names.node(self.node, "subs"))
            .arg(j.channel)
            .arg(field(&[j.app, j.channel]));
        let announce = self.member_channel(j.app, j.channel);
        if let Some(m) = j.member {
            let info = m
                .user_info
                .as_ref()
                .map_or_else(|| "null".to_string(), Value::to_string);
            let added = announce.as_ref().map(|_| {
                member_message(
                    j.app,
                    j.channel,
                    "pusher_internal:member_added",
                    presence::member_added_data(m),
                    Some(j.conn.id),
                )
            });
            script
                .key(self.names.presence(j.app, j.channel))
                .key(self.names.presence_info(j.app, j.channel))
                .key(self.names.node(self.node, "pres"))
                .arg(&m.user_id)
                .arg(info)
                .arg(j.max_members)
                .arg(field(&[j.app, j.channel, &m.user_id]))
                .arg(announce.as_deref().unwrap_or_default())
                .arg(added.unwrap_or_default());
        }
        script.arg(self.config.replay_ms);
        let decided = if self.reachable() {
            let mut link = self.link();
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
            }
        } else {
            None
        };
        if let Some((d, known)) = &decided {
            if d.count == -1 {
                self.release(j.app, j.channel);
                return Err(JoinRefused::PresenceFull);
            }
            self.note_known(*known);
        }
        let decided = decided.map(|(d, _)| d);
        // The cached event is fetched after joining (see `Replay::Deferred`).
        let deferred = j.announce && classify(j.channel).cache;
        let replay = if deferred {
            Replay::Deferred
        } else {
            Replay::Local
        };
        let presence_data = match (&decided, j.member) {
            (Some(d), Some(_)) => Some(presence_payload(&d.members)),
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
        let local = match local {
            Ok(mut joined) if deferred => {
                let cached = self.cached_event(j.app, j.channel).await;
                joined.cache_miss =
                    self.hub
                        .app(j.app)
                        .replay(j.channel, j.conn, joined.deliveries, cached);
                Ok(joined)
            }
            other => other,
        };
        match (local, decided) {
            (Ok(mut joined), Some(d)) => {
                joined.member_added = d.added;
                joined.member_announced = d.added && announce.is_some();
                joined.occupied = d.count == 1;
                joined.count = usize::try_from(d.count).ok();
                Ok(joined)
            }
            (Ok(joined), None) => {
                if joined.occupied {
                    self.settle.arrived_alone(&[j.app, j.channel]);
                }
                if let (true, Some(m)) = (joined.member_added, j.member) {
                    self.settle.arrived_alone(&[j.app, j.channel, &m.user_id]);
                }
                Ok(joined)
            }
            (Err(e), decided) => {
                if decided.is_some() {
                    // Recorded in Redis but refused here: take it back.
                    self.leave_script(j.app, j.channel, j.member.map(|m| m.user_id.as_str()), None)
                        .await;
                }
                self.release(j.app, j.channel);
                Err(e)
            }
        }
    }

    pub(super) async fn unsubscribe(
        &self,
        app: &str,
        channel: &str,
        id: SocketId,
        user_id: Option<&str>,
    ) -> Left {
        let _order = self.order.read().await;
        let mut left = self.hub.app(app).unsubscribe(channel, id, user_id);
        if !left.was_subscribed {
            return left;
        }
        let here = left.member_removed.take();
        // Announced with the decision only while departures can be trusted at once.
        let announce = self.settle.settled().then_some(id);
        match self.leave_script(app, channel, user_id, announce).await {
            Some((count, removed, known, announced)) => {
                let removed = (removed == 1)
                    .then(|| user_id.map(str::to_string))
                    .flatten();
                if self.trusted(known) {
                    left.member_announced = announced && removed.is_some();
                    left.member_removed = removed;
                } else if let Some(user) = removed.or(here) {
                    self.settle.hold(Pending::Member {
                        app: app.to_string(),
                        channel: channel.to_string(),
                        user,
                    });
                }
                left.vacated = count == 0;
                left.count = usize::try_from(count).ok();
            }
            // Redis is away: other nodes may still hold the user; decide once it is back.
            None => {
                if let Some(user) = here {
                    self.settle.hold(Pending::Member {
                        app: app.to_string(),
                        channel: channel.to_string(),
                        user,
                    });
                }
            }
        }
        self.release(app, channel);
        left
    }

    /// Runs LEAVE; `(subscription_count, member_removed, known, announced)`, or `None` if
    /// Redis is away. With `announce` (the leaving socket), a resulting member_removed is
    /// published by the script itself.
    async fn leave_script(
        &self,
        app: &str,
        channel: &str,
        user_id: Option<&str>,
        announce: Option<SocketId>,
    ) -> Option<(i64, i64, bool, bool)> {
        if !self.reachable() {
            return None;
        }
        let mut script = scripts::LEAVE.key(self.names.node(self.node, "seen"));
        script
            .key(self.names.subs(app))
            .key(self.names.node(self.node, "subs"))
            .arg(channel)
            .arg(field(&[app, channel]));
        let mut announced = false;
        if let Some(uid) = user_id {
            let pubsub = announce.and_then(|_| self.member_channel(app, channel));
            let message = match (&pubsub, announce) {
                (Some(_), Some(id)) => member_message(
                    app,
                    channel,
                    "pusher_internal:member_removed",
                    presence::member_removed_data(uid),
                    Some(id),
                ),
                _ => String::new(),
            };
            announced = pubsub.is_some();
            script
                .key(self.names.presence(app, channel))
                .key(self.names.presence_info(app, channel))
                .key(self.names.node(self.node, "pres"))
                .arg(uid)
                .arg(field(&[app, channel, uid]))
                .arg(pubsub.unwrap_or_default())
                .arg(message);
        }
        script.arg(self.config.replay_ms);
        let mut link = self.link();
        match script.invoke_async::<(i64, i64, i64)>(&mut link).await {
            Ok((count, removed, known)) => {
                self.mark(true);
                Some((count, removed, known == 1, announced && known == 1))
            }
            Err(e) => {
                tracing::debug!(error = %e, "leave not recorded in Redis");
                self.mark(false);
                None
            }
        }
    }

    /// Changes the user's cluster-wide socket count; returns the new count (-1: there was none)
    /// and whether Redis knows this node.
    async fn user_delta(&self, app: &str, user: &str, delta: i64) -> Option<(i64, bool)> {
        if !self.reachable() {
            return None;
        }
        let mut link = self.link();
        let r = scripts::USER
            .key(self.names.node(self.node, "seen"))
            .key(self.names.users(app))
            .key(self.names.node(self.node, "users"))
            .arg(user)
            .arg(field(&[app, user]))
            .arg(delta)
            .invoke_async::<(i64, i64)>(&mut link)
            .await;
        self.mark(r.is_ok());
        r.ok().map(|(n, known)| (n, known == 1))
    }

    pub(super) async fn sign_in(&self, s: SignIn<'_>) {
        let _order = self.order.read().await;
        let first_here = self
            .hub
            .app(s.app)
            .users()
            .register(s.user, s.conn, s.watchlist);
        if s.watchlist_events && !s.watchlist.is_empty() {
            self.send_watchlist(&s).await;
        }
        let came_online = match self.user_delta(s.app, s.user, 1).await {
            Some((n, known)) => {
                self.note_known(known);
                n == 1
            }
            None => {
                if first_here {
                    self.settle.arrived_alone(&[s.app, s.user]);
                }
                first_here
            }
        };
        if came_online {
            self.watch(s.app, s.user, true);
        }
    }

    /// Queues the initial watchlist status (cluster-wide when Redis answers).
    async fn send_watchlist(&self, s: &SignIn<'_>) {
        let counts: Option<Vec<Option<i64>>> = if self.reachable() {
            let mut link = self.link();
            redis::cmd("HMGET")
                .arg(self.names.users(s.app))
                .arg(s.watchlist)
                .query_async(&mut link)
                .await
                .ok()
        } else {
            None
        };
        let users = self.hub.app(s.app);
        let users = users.users();
        let (online, offline): (Vec<&str>, Vec<&str>) = match counts {
            Some(c) => {
                let mut flags = c.into_iter().map(|n| n.unwrap_or(0) > 0);
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

    pub(super) async fn sign_out(&self, app: &str, user: &str, id: SocketId, watchlist: &[String]) {
        let _order = self.order.read().await;
        let last_here = self.hub.app(app).users().unregister(user, id, watchlist);
        let offline = Pending::Offline {
            app: app.to_string(),
            user: user.to_string(),
        };
        match self.user_delta(app, user, -1).await {
            Some((n, known)) => {
                let trusted = self.trusted(known);
                if n == 0 && trusted {
                    self.watch(app, user, false);
                } else if n == 0 || (n < 0 && last_here) {
                    // Not vouched for, or the count was gone (lost data): check again later.
                    self.settle.hold(offline);
                }
            }
            // Redis is away: the user may be online on other nodes; decide once it is back.
            None if last_here => self.settle.hold(offline),
            None => {}
        }
    }
}

impl Inner {
    /// Whether the scripts that decide member events (JOIN, LEAVE, REAP, GONE) publish them
    /// too, so that they reach every node in the order Redis decided them. Not on a Redis
    /// Cluster, where a script cannot publish to a channel outside its keys' slot: there the
    /// node publishes them itself.
    pub(super) fn scripts_publish(&self) -> bool {
        matches!(self.link(), super::link::Link::Single(_))
    }

    /// The pub/sub channel a script publishes a channel's member events on, when it does.
    pub(super) fn member_channel(&self, app: &str, channel: &str) -> Option<String> {
        self.scripts_publish()
            .then(|| self.names.channel(app, channel))
    }
}

/// A member event as the script publishes it (delivered by every node, this one included).
pub(super) fn member_message(
    app: &str,
    channel: &str,
    event: &str,
    data: String,
    except: Option<SocketId>,
) -> String {
    super::wire::Wire::Member {
        b: crate::broadcast::Broadcast {
            app: app.to_string(),
            channel: channel.to_string(),
            event: event.to_string(),
            data,
            except,
            user_id: None,
            cache_ttl: None,
        },
    }
    .encode()
}

/// `{-1}` or `{count, added, [user, info, ...], known}`, with `known`.
fn parse_join(v: &[RValue]) -> Option<(Decided, bool)> {
    let int = |v: &RValue| redis::from_redis_value::<i64>(v.clone()).ok();
    let count = int(v.first()?)?;
    if count == -1 {
        let full = Decided {
            count,
            added: false,
            members: Vec::new(),
        };
        return Some((full, true));
    }
    let added = int(v.get(1)?)? == 1;
    let members = v
        .get(2)
        .and_then(|m| redis::from_redis_value::<Vec<String>>(m.clone()).ok())
        .unwrap_or_default();
    let known = v.get(3).and_then(int) == Some(1);
    Some((
        Decided {
            count,
            added,
            members,
        },
        known,
    ))
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
        let full = parse_join(&[RValue::Int(-1)]).unwrap();
        assert_eq!(full.0.count, -1);
        let v = vec![
            RValue::Int(3),
            RValue::Int(1),
            RValue::Array(vec![
                RValue::BulkString(b"u".to_vec()),
                RValue::BulkString(b"null".to_vec()),
            ]),
            RValue::Int(0),
        ];
        assert_eq!(
            parse_join(&v),
            Some((
                Decided {
                    count: 3,
                    added: true,
                    members: vec!["u".to_string(), "null".to_string()]
                },
                false
            ))
        );
        assert_eq!(parse_join(&[]), None);
    }
}
