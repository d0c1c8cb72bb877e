//! Parsing client → server frames (PROTOCOL.md §1.3, §1.4, §2).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::error::ProtocolError;

/// A message a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `pusher:ping`, with or without data.
    Ping,
    /// `pusher:pong` (accepted and ignored apart from counting as activity).
    Pong,
    /// `pusher:subscribe`.
    Subscribe {
        /// Channel name as sent.
        channel: String,
        /// `auth` (absent or empty for public channels).
        auth: Option<String>,
        /// Presence `channel_data`, the exact string that was signed.
        channel_data: Option<String>,
    },
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// Channel name as sent.
        channel: String,
    },
    /// `pusher:signin`.
    Signin {
        /// `key:signature`.
        auth: String,
        /// The exact signed `user_data` string.
        user_data: String,
    },
    /// A `client-` event to relay.
    ClientEvent {
        /// Event name (starts with `client-`).
        event: String,
        /// Target channel.
        channel: String,
        /// The payload to relay: a string's value, or the exact JSON text of anything else.
        data: String,
    },
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Inbound, ProtocolError> {
    // Top-level fields stay raw: a client event's `data` is relayed exactly as the client wrote
    // it (key order, number formatting), and no JSON tree is built for it.
    let mut obj: BTreeMap<Cow<'_, str>, &RawValue> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(_) if serde_json::from_str::<Value>(text).is_ok() => {
            return Err(ProtocolError::MalformedFrame("not a JSON object"));
        }
        Err(_) => return Err(ProtocolError::MalformedFrame("invalid JSON")),
    };
    let event = match obj
        .remove("event")
        .map(|r| serde_json::from_str::<String>(r.get()))
    {
        Some(Ok(e)) => e,
        _ => return Err(ProtocolError::MalformedFrame("missing string 'event'")),
    };
    let data = obj.remove("data");
    match event.as_str() {
        "pusher:ping" => Ok(Inbound::Ping),
        "pusher:pong" => Ok(Inbound::Pong),
        "pusher:subscribe" => {
            let mut d = data_object(data)?;
            Ok(Inbound::Subscribe {
                channel: take_channel(&mut d)?,
                auth: optional_string(&mut d, "auth")?,
                channel_data: optional_string(&mut d, "channel_data")?,
            })
        }
        "pusher:unsubscribe" => {
            let mut d = data_object(data)?;
            Ok(Inbound::Unsubscribe {
                channel: take_channel(&mut d)?,
            })
        }
        "pusher:signin" => {
            let mut d = data_object(data)?;
            let auth = optional_string(&mut d, "auth")?
                .ok_or(ProtocolError::MalformedFrame("pusher:signin needs 'auth'"))?;
            let user_data = optional_string(&mut d, "user_data")?.ok_or(
                ProtocolError::MalformedFrame("pusher:signin needs 'user_data'"),
            )?;
            Ok(Inbound::Signin { auth, user_data })
        }
        e if e.starts_with("client-") => {
            let channel = match obj
                .remove("channel")
                .map(|r| serde_json::from_str::<String>(r.get()))
            {
                Some(Ok(c)) => c,
                _ => return Err(ProtocolError::MissingChannel),
            };
            // A string is relayed as its value; anything else as the exact JSON text sent.
            let data = match data {
                None => "null".to_string(),
                Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                    Ok(s) => s,
                    Err(_) => raw.get().to_string(),
                },
            };
            Ok(Inbound::ClientEvent {
                event,
                channel,
                data,
            })
        }
        _ => Err(ProtocolError::UnknownEvent(event)),
    }
}

/// `data` as an object: accepts an object, or a string holding a JSON object.
fn data_object(data: Option<&RawValue>) -> Result<Map<String, Value>, ProtocolError> {
    let value = data.and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
    match value {
        Some(Value::Object(m)) => Ok(m),
        Some(Value::String(s)) => match serde_json::from_str(&s) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(ProtocolError::MalformedFrame("'data' must be an object")),
        },
        _ => Err(ProtocolError::MalformedFrame("'data' must be an object")),
    }
}

fn take_channel(d: &mut Map<String, Value>) -> Result<String, ProtocolError> {
    match d.remove("channel") {
        Some(Value::String(c)) => Ok(c),
        _ => Err(ProtocolError::MissingChannel),
    }
}

fn optional_string(d: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ProtocolError> {
    match d.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ProtocolError::MalformedFrame(match key {
            "auth" => "'auth' must be a string",
            "channel_data" => "'channel_data' must be a string",
            _ => "'user_data' must be a string",
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings() {
        assert_eq!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(Inbound::Ping)
        );
        assert_eq!(parse(r#"{"event": "pusher:ping"}"#), Ok(Inbound::Ping));
        assert_eq!(
            parse(r#"{"event":"pusher:pong","data":{}}"#),
            Ok(Inbound::Pong)
        );
    }

    #[test]
    fn subscribe_forms() {
        let want = Inbound::Subscribe {
            channel: "my-channel".into(),
            auth: Some(String::new()),
            channel_data: None,
        };
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"my-channel"}}"#),
            Ok(want)
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"c"}}"#),
            Ok(Inbound::Subscribe {
                channel: "c".into(),
                auth: None,
                channel_data: None
            })
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"c\",\"auth\":\"k:s\"}"}"#),
            Ok(Inbound::Subscribe {
                channel: "c".into(),
                auth: Some("k:s".into()),
                channel_data: None
            })
        );
        let p = parse(
            r#"{"event":"pusher:subscribe","data":{"auth":"a","channel_data":"{\"user_id\":10}","channel":"presence-x"}}"#,
        );
        assert_eq!(
            p,
            Ok(Inbound::Subscribe {
                channel: "presence-x".into(),
                auth: Some("a".into()),
                channel_data: Some("{\"user_id\":10}".into())
            })
        );
    }

    #[test]
    fn bad_frames() {
        assert_eq!(
            parse("nope"),
            Err(ProtocolError::MalformedFrame("invalid JSON"))
        );
        assert_eq!(
            parse("[1]"),
            Err(ProtocolError::MalformedFrame("not a JSON object"))
        );
        assert_eq!(
            parse(r#"{"event":5}"#),
            Err(ProtocolError::MalformedFrame("missing string 'event'"))
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{}}"#),
            Err(ProtocolError::MissingChannel)
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe"}"#),
            Err(ProtocolError::MalformedFrame("'data' must be an object"))
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"c","auth":5}}"#),
            Err(ProtocolError::MalformedFrame("'auth' must be a string"))
        );
        assert_eq!(
            parse(r#"{"event":"pusher_internal:member_added","data":{}}"#),
            Err(ProtocolError::UnknownEvent(
                "pusher_internal:member_added".into()
            ))
        );
        assert_eq!(
            parse(r#"{"event":"my-event","data":{}}"#),
            Err(ProtocolError::UnknownEvent("my-event".into()))
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn client_events() {
        assert_eq!(
            parse(r#"{"event":"client-typing","channel":"private-a","data":{"typing":true}}"#),
            Ok(Inbound::ClientEvent {
                event: "client-typing".into(),
                channel: "private-a".into(),
                data: r#"{"typing":true}"#.into()
            })
        );
        // relayed exactly as written: key order, spacing and number formatting kept
        let odd = r#"{"event":"client-x","channel":"c","data":{"zeta":1, "alpha":{"b":2,"a":1},"n":1.50}}"#;
        assert!(
            matches!(parse(odd), Ok(Inbound::ClientEvent { data, .. }) if data == r#"{"zeta":1, "alpha":{"b":2,"a":1},"n":1.50}"#)
        );
        let string = r#"{"event":"client-x","channel":"c","data":"plain \"text\""}"#;
        assert!(
            matches!(parse(string), Ok(Inbound::ClientEvent { data, .. }) if data == r#"plain "text""#)
        );
        assert!(
            matches!(parse(r#"{"event":"client-x","channel":"c"}"#), Ok(Inbound::ClientEvent { data, .. }) if data == "null")
        );
        assert_eq!(
            parse(r#"{"event":"client-x","channel":5,"data":{}}"#),
            Err(ProtocolError::MissingChannel)
        );
        assert_eq!(
            parse(r#"{"event":"client-x","data":{}}"#),
            Err(ProtocolError::MissingChannel)
        );
    }
}
