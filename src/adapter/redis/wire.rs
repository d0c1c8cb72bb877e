//! What nodes say to each other over Redis pub/sub, and key/channel naming. Pure, no I/O.

use serde::{Deserialize, Serialize};

use crate::broadcast::Broadcast;

/// One pub/sub message between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum Wire {
    /// A channel broadcast (already delivered by its origin node).
    #[serde(rename = "b")]
    Broadcast {
        /// Node that published it.
        origin: u32,
        /// The broadcast.
        b: Broadcast,
    },
    /// A presence member event published by the JOIN/LEAVE script that decided it, so every
    /// node (its origin too) sees member events in the order Redis decided them.
    #[serde(rename = "m")]
    Member {
        /// The `pusher_internal:member_added` / `member_removed` broadcast.
        b: Broadcast,
    },
    /// The cluster-wide subscriber count of a channel changed.
    #[serde(rename = "n")]
    Count {
        /// Node that published it.
        origin: u32,
        /// App id.
        app: String,
        /// Channel.
        channel: String,
        /// New count.
        count: usize,
    },
    /// Close every socket signed in as this user.
    #[serde(rename = "x")]
    Terminate {
        /// App id.
        app: String,
        /// User id.
        user: String,
    },
    /// A user came online or went offline, cluster-wide.
    #[serde(rename = "w")]
    Watch {
        /// Node that published it.
        origin: u32,
        /// App id.
        app: String,
        /// User id.
        user: String,
        /// Online or offline.
        online: bool,
    },
}

impl Wire {
    /// The node that published it, when its own node must skip it.
    pub fn origin(&self) -> Option<u32> {
        match self {
            Wire::Broadcast { origin, .. }
            | Wire::Count { origin, .. }
            | Wire::Watch { origin, .. } => Some(*origin),
            Wire::Terminate { .. } | Wire::Member { .. } => None,
        }
    }

    /// Encodes for PUBLISH.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a received payload.
    pub fn decode(bytes: &[u8]) -> Option<Wire> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Key and channel names. Every key carries the hash tag `{prefix}` so the Lua scripts that
/// touch several keys work on a Redis Cluster too (they live in one slot); pub/sub channels
/// carry no tag, so sharded pub/sub spreads them over the cluster.
#[derive(Debug, Clone)]
pub struct Names {
    tag: String,
    prefix: String,
}

impl Names {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Names {
        Names {
            tag: format!("{{{prefix}}}"),
            prefix: prefix.to_string(),
        }
    }

    /// The key prefix (`{prefix}`), as the scripts build keys from it.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Sorted set of nodes by last heartbeat (ms).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.tag)
    }

    /// Hash channel → subscribed sockets, cluster-wide.
    pub fn subs(&self, app: &str) -> String {
        format!("{}:subs:{app}", self.tag)
    }

    /// Hash user → sockets in a presence channel, cluster-wide.
    pub fn presence(&self, app: &str, channel: &str) -> String {
        format!("{}:pres:{app}:{channel}", self.tag)
    }

    /// Hash user → user_info JSON of a presence channel.
    pub fn presence_info(&self, app: &str, channel: &str) -> String {
        format!("{}:presinfo:{app}:{channel}", self.tag)
    }

    /// Hash user → signed-in sockets, cluster-wide.
    pub fn users(&self, app: &str) -> String {
        format!("{}:users:{app}", self.tag)
    }

    /// A node's own keys: `kind` is `subs`, `pres` or `users` (its share of the counts), `conns`
    /// (app → connections here) or `seen` (present while Redis knows the node).
    pub fn node(&self, node: u32, kind: &str) -> String {
        format!("{}:node:{node}:{kind}", self.tag)
    }

    /// Set of channels/users whose webhook transition was announced: `kind` is `occ`, `miss`,
    /// or `mem:{channel}`.
    pub fn announced(&self, app: &str, kind: &str) -> String {
        format!("{}:wh:{kind}:{app}", self.tag)
    }

    /// The stream of webhook entries waiting for delivery (durable webhooks), and its
    /// consumer group.
    pub fn webhooks(&self) -> String {
        format!("{}:wh:queue", self.tag)
    }

    /// The cached event of a cache channel.
    pub fn cache(&self, app: &str, channel: &str) -> String {
        format!("{}:cache:{app}:{channel}", self.tag)
    }

    /// The pub/sub channel carrying one channel's broadcasts.
    pub fn channel(&self, app: &str, channel: &str) -> String {
        format!("{}:c:{app}:{channel}", self.prefix)
    }

    /// The start of every channel's pub/sub channel name (`{prefix}:c:`), for scripts.
    pub fn channel_base(&self) -> String {
        format!("{}:c:", self.prefix)
    }

    /// The pub/sub channel every node listens to.
    pub fn control(&self) -> String {
        format!("{}:ctl", self.prefix)
    }
}

/// Field of a node-share hash: a JSON array, so any user id is safe inside it.
pub fn field(parts: &[&str]) -> String {
    serde_json::to_string(parts).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SocketId;

    #[test]
    fn round_trip_and_origin() {
        let b = Broadcast {
            app: "1".into(),
            channel: "c".into(),
            event: "e".into(),
            data: "{\"x\":1}".into(),
            except: Some(SocketId { node: 7, seq: 9 }),
            user_id: Some("u".into()),
            cache_ttl: None,
        };
        let w = Wire::Broadcast { origin: 3, b };
        assert_eq!(Wire::decode(w.encode().as_bytes()), Some(w.clone()));
        assert_eq!(w.origin(), Some(3));
        let t = Wire::Terminate {
            app: "1".into(),
            user: "a\"b".into(),
        };
        assert_eq!(Wire::decode(t.encode().as_bytes()), Some(t.clone()));
        assert_eq!(t.origin(), None);
        assert_eq!(Wire::decode(b"garbage"), None);
    }

    #[test]
    fn member_messages_built_by_lua_decode() {
        // What the REAP script's cjson produces: no except, user_id or cache_ttl.
        let raw = br#"{"t":"m","b":{"app":"1","channel":"presence-a","event":"pusher_internal:member_removed","data":"{\"user_id\":\"u\/1\"}"}}"#;
        let Some(Wire::Member { b }) = Wire::decode(raw) else {
            panic!("not decoded");
        };
        assert_eq!(b.data, r#"{"user_id":"u/1"}"#);
        assert_eq!((b.except, b.user_id, b.cache_ttl), (None, None, None));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&b.data).unwrap(),
            serde_json::from_str::<serde_json::Value>(
                &crate::protocol::presence::member_removed_data("u/1")
            )
            .unwrap()
        );
    }

    #[test]
    fn names() {
        let n = Names::new("herald");
        assert_eq!(n.subs("1"), "{herald}:subs:1");
        assert_eq!(n.presence("1", "presence-a"), "{herald}:pres:1:presence-a");
        assert_eq!(n.node(5, "pres"), "{herald}:node:5:pres");
        assert_eq!(n.channel("1", "c"), "herald:c:1:c");
        assert_eq!(
            field(&["1", "presence-a", "we\"ird\nid"]),
            r#"["1","presence-a","we\"ird\nid"]"#
        );
    }
}
