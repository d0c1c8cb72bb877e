//! Building server → client frames (PROTOCOL.md §1.4). Every function returns the finished text.

use serde::Serialize;

use super::socket_id::SocketId;

#[derive(Serialize)]
struct Frame<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

fn to_text<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs of strings and integers cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// A channel event: `{"event","channel","data"[,"user_id"]}` with `data` as a string.
pub fn channel_event(event: &str, channel: &str, data: &str, user_id: Option<&str>) -> String {
    to_text(&Frame {
        event,
        channel: Some(channel),
        data: Some(data),
        user_id,
    })
}

/// `pusher:connection_established` with its double-encoded data.
pub fn connection_established(socket_id: SocketId, activity_timeout: u64) -> String {
    #[derive(Serialize)]
    struct Established {
        socket_id: String,
        activity_timeout: u64,
    }
    let data = to_text(&Established {
        socket_id: socket_id.to_string(),
        activity_timeout,
    });
    to_text(&Frame {
        event: "pusher:connection_established",
        channel: None,
        data: Some(&data),
        user_id: None,
    })
}

/// `pusher:pong`.
pub fn pong() -> String {
    r#"{"event":"pusher:pong","data":"{}"}"#.to_string()
}

/// `pusher:error` with an object `data` `{code, message}` and an optional channel.
pub fn error(code: Option<u16>, message: &str, channel: Option<&str>) -> String {
    #[derive(Serialize)]
    struct ErrorData<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct ErrorFrame<'a> {
        event: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        data: ErrorData<'a>,
    }
    to_text(&ErrorFrame {
        event: "pusher:error",
        channel,
        data: ErrorData { code, message },
    })
}

/// `pusher_internal:subscription_succeeded`; `data` is `"{}"` or the presence payload.
pub fn subscription_succeeded(channel: &str, data: &str) -> String {
    channel_event(
        "pusher_internal:subscription_succeeded",
        channel,
        data,
        None,
    )
}

/// `pusher:signin_success` with object data `{"user_data": "<string>"}`.
pub fn signin_success(user_data: &str) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        user_data: &'a str,
    }
    #[derive(Serialize)]
    struct F<'a> {
        event: &'static str,
        data: D<'a>,
    }
    to_text(&F {
        event: "pusher:signin_success",
        data: D { user_data },
    })
}

/// `pusher_internal:watchlist_events` with `online` / `offline` elements (empty ones omitted).
pub fn watchlist_events(online: &[&str], offline: &[&str]) -> String {
    #[derive(Serialize)]
    struct Element<'a> {
        name: &'static str,
        user_ids: &'a [&'a str],
    }
    #[derive(Serialize)]
    struct Events<'a> {
        events: Vec<Element<'a>>,
    }
    let mut events = Vec::new();
    if !online.is_empty() {
        events.push(Element {
            name: "online",
            user_ids: online,
        });
    }
    if !offline.is_empty() {
        events.push(Element {
            name: "offline",
            user_ids: offline,
        });
    }
    let data = to_text(&Events { events });
    to_text(&Frame {
        event: "pusher_internal:watchlist_events",
        channel: None,
        data: Some(&data),
        user_id: None,
    })
}

/// `pusher:cache_miss` for a cache channel with nothing cached.
pub fn cache_miss(channel: &str) -> String {
    to_text(&Frame {
        event: "pusher:cache_miss",
        channel: Some(channel),
        data: None,
        user_id: None,
    })
}

/// `pusher_internal:subscription_count`.
pub fn subscription_count(channel: &str, count: usize) -> String {
    let data = format!("{{\"subscription_count\":{count}}}");
    channel_event("pusher_internal:subscription_count", channel, &data, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_frames() {
        assert_eq!(
            connection_established(
                SocketId {
                    node: 3418419052,
                    seq: 2830135721
                },
                120
            ),
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"3418419052.2830135721\",\"activity_timeout\":120}"}"#
        );
        assert_eq!(
            error(Some(4001), "Application does not exist", None),
            r#"{"event":"pusher:error","data":{"code":4001,"message":"Application does not exist"}}"#
        );
        assert_eq!(
            error(None, "x", Some("private-a")),
            r#"{"event":"pusher:error","channel":"private-a","data":{"code":null,"message":"x"}}"#
        );
        assert_eq!(
            subscription_succeeded("private-foobar", "{}"),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-foobar","data":"{}"}"#
        );
        assert_eq!(
            channel_event(
                "client-typing",
                "presence-chat",
                r#"{"typing":true}"#,
                Some("10")
            ),
            r#"{"event":"client-typing","channel":"presence-chat","data":"{\"typing\":true}","user_id":"10"}"#
        );
        assert_eq!(
            signin_success(r#"{"id":"1"}"#),
            r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"1\"}"}}"#
        );
    }
}
