//! The one message every delivery path carries, and the one place it becomes a frame.

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::{outbound, SocketId};

/// An event for every subscriber of one channel of one app (except one socket, maybe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// App id.
    pub app: String,
    /// Target channel.
    pub channel: String,
    /// Event name.
    pub event: String,
    /// Payload string, forwarded exactly.
    pub data: String,
    /// Socket that must not receive it (`socket_id` of a trigger, or a client event's sender).
    pub except: Option<SocketId>,
    /// Sender's presence user id, on client events in presence channels.
    pub user_id: Option<String>,
    /// Keep as the channel's cached event for this long (REST events on cache channels).
    pub cache_ttl: Option<std::time::Duration>,
}

impl Broadcast {
    /// Serializes the frame once; every subscriber gets a cheap clone of the result.
    pub fn to_frame(&self) -> Utf8Bytes {
        outbound::channel_event(
            &self.event,
            &self.channel,
            &self.data,
            self.user_id.as_deref(),
        )
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_shape() {
        let b = Broadcast {
            app: "1".into(),
            channel: "my-channel".into(),
            event: "my-event".into(),
            data: "{\"message\":\"hello world\"}".into(),
            except: None,
            user_id: None,
            cache_ttl: None,
        };
        assert_eq!(
            b.to_frame().as_str(),
            r#"{"event":"my-event","channel":"my-channel","data":"{\"message\":\"hello world\"}"}"#
        );
    }
}
