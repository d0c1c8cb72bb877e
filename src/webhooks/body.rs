//! Webhook payloads: event objects, the `{"time_ms", "events"}` body and its signature.
//! Pure functions, unit-tested against PROTOCOL.md §7.

use serde_json::{json, Value};

/// A webhook event as herald records it before deciding whether to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emitted {
    /// The channel went from 0 to ≥ 1 subscribed sockets (cluster-wide).
    Occupied(String),
    /// The channel went to 0 (sent after the grace period if still empty).
    Vacated(String),
    /// A user's first socket joined a presence channel.
    MemberAdded(String, String),
    /// A user's last socket left (sent after the grace period if still gone).
    MemberRemoved(String, String),
    /// A client event was accepted.
    ClientEvent {
        /// Channel.
        channel: String,
        /// Event name.
        event: String,
        /// Data as the JSON string relayed to clients.
        data: String,
        /// Sender.
        socket_id: String,
        /// Sender's presence user id (presence channels only).
        user_id: Option<String>,
    },
    /// A subscription to a cache channel found it empty.
    CacheMiss(String),
    /// The subscription count of a non-presence channel changed.
    SubscriptionCount(String),
}

impl Emitted {
    /// The webhook event name.
    pub fn name(&self) -> &'static str {
        match self {
            Emitted::Occupied(_) => "channel_occupied",
            Emitted::Vacated(_) => "channel_vacated",
            Emitted::MemberAdded(..) => "member_added",
            Emitted::MemberRemoved(..) => "member_removed",
            Emitted::ClientEvent { .. } => "client_event",
            Emitted::CacheMiss(_) => "cache_miss",
            Emitted::SubscriptionCount(_) => "subscription_count",
        }
    }

    /// The event names whose receivers need this event's bookkeeping: a transition and its
    /// reverse share one "announced" record (a vacated webhook can only follow a recorded
    /// occupied one, and a vacate must release the record even when nobody wants
    /// `channel_vacated`).
    pub fn paired_names(&self) -> [&'static str; 2] {
        match self {
            Emitted::Occupied(_) | Emitted::Vacated(_) => ["channel_occupied", "channel_vacated"],
            Emitted::MemberAdded(..) | Emitted::MemberRemoved(..) => {
                ["member_added", "member_removed"]
            }
            _ => [self.name(), self.name()],
        }
    }

    /// The channel it concerns.
    pub fn channel(&self) -> &str {
        match self {
            Emitted::Occupied(c)
            | Emitted::Vacated(c)
            | Emitted::MemberAdded(c, _)
            | Emitted::MemberRemoved(c, _)
            | Emitted::CacheMiss(c)
            | Emitted::SubscriptionCount(c) => c,
            Emitted::ClientEvent { channel, .. } => channel,
        }
    }

    /// The event object; `count` is used by `subscription_count`.
    pub fn to_json(&self, count: usize) -> Value {
        let (name, channel) = (self.name(), self.channel());
        match self {
            Emitted::MemberAdded(_, user) | Emitted::MemberRemoved(_, user) => {
                json!({"name": name, "channel": channel, "user_id": user})
            }
            Emitted::ClientEvent {
                event,
                data,
                socket_id,
                user_id,
                ..
            } => {
                let mut v = json!({"name": name, "channel": channel, "event": event, "data": data, "socket_id": socket_id});
                if let Some(u) = user_id {
                    v["user_id"] = json!(u);
                }
                v
            }
            Emitted::SubscriptionCount(_) => {
                json!({"name": name, "channel": channel, "subscription_count": count})
            }
            _ => json!({"name": name, "channel": channel}),
        }
    }
}

/// The request body for a batch of event objects.
pub fn body(time_ms: u64, events: &[Value]) -> String {
    json!({"time_ms": time_ms, "events": events}).to_string()
}

/// `X-Pusher-Signature`: HMAC-SHA256 of the exact body bytes with the app secret.
pub fn signature(secret: &str, body: &str) -> String {
    crate::auth::sign(secret, body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_objects() {
        assert_eq!(
            Emitted::Occupied("c".into()).to_json(0),
            json!({"name": "channel_occupied", "channel": "c"})
        );
        assert_eq!(
            Emitted::MemberRemoved("presence-x".into(), "10".into()).to_json(0),
            json!({"name": "member_removed", "channel": "presence-x", "user_id": "10"})
        );
        let ce = Emitted::ClientEvent {
            channel: "private-a".into(),
            event: "client-x".into(),
            data: "{\"a\":1}".into(),
            socket_id: "1.2".into(),
            user_id: None,
        };
        assert_eq!(
            ce.to_json(0),
            json!({"name": "client_event", "channel": "private-a", "event": "client-x", "data": "{\"a\":1}", "socket_id": "1.2"})
        );
        assert_eq!(
            Emitted::SubscriptionCount("c".into()).to_json(7)["subscription_count"],
            7
        );
    }

    #[test]
    fn signature_vector() {
        // PROTOCOL.md §7.1
        let body = r#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"my-channel"}]}"#;
        assert_eq!(
            signature("7ad3773142a6692b25b8", body),
            "c19001ae3963ccb13bf618e5b16ba9848e7e74df0993aa0689168e341c6833cf"
        );
        let built = super::body(
            1327078148132,
            &[json!({"name": "channel_occupied", "channel": "my-channel"})],
        );
        assert_eq!(
            built,
            r#"{"events":[{"channel":"my-channel","name":"channel_occupied"}],"time_ms":1327078148132}"#
        );
    }
}
