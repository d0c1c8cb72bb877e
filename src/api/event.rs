//! Parsing and validating trigger requests (`/events`, `/batch_events`): pure, no I/O.

use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use crate::config::Limits;
use crate::protocol::channel::{self, ChannelKind};
use crate::protocol::SocketId;

/// One event as posted (`/events` body or one `batch` entry).
#[derive(Debug, Deserialize)]
pub struct EventBody {
    name: Option<String>,
    data: Option<Value>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    info: Option<String>,
}

/// `/batch_events` body.
#[derive(Debug, Deserialize)]
pub struct BatchBody {
    batch: Option<Vec<EventBody>>,
}

/// Which counts the caller asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    /// `user_count` (presence channels).
    pub user_count: bool,
    /// `subscription_count` (every channel, presence included).
    pub subscription_count: bool,
}

impl Info {
    /// Parses `info=a,b`; unknown attributes (other than those in `extra`) are a 400.
    pub fn parse(raw: Option<&str>, extra: &[&str]) -> Result<(Info, Vec<String>), ApiError> {
        let mut info = Info::default();
        let mut others = Vec::new();
        for attr in raw
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match attr {
                "user_count" => info.user_count = true,
                "subscription_count" => info.subscription_count = true,
                a if extra.contains(&a) => others.push(a.to_string()),
                a => return Err(ApiError::BadRequest(format!("Unknown info attribute: {a}"))),
            }
        }
        Ok((info, others))
    }

    /// Whether anything was asked.
    pub fn any(&self) -> bool {
        self.user_count || self.subscription_count
    }
}

/// A validated event, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Payload string.
    pub data: String,
    /// Distinct target channels, in request order.
    pub channels: Vec<String>,
    /// Socket to exclude.
    pub except: Option<SocketId>,
    /// Requested counts.
    pub info: Info,
}

/// Validates one event. In a batch only `channel` is allowed.
pub fn validate(body: EventBody, limits: &Limits, in_batch: bool) -> Result<Event, ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let Some(name) = body.name.filter(|n| !n.is_empty()) else {
        return bad("Missing event name: 'name' is required".into());
    };
    if name.chars().count() > limits.max_event_name_len {
        return bad(format!(
            "Event name is longer than {} characters",
            limits.max_event_name_len
        ));
    }
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        return bad(format!("Event name {name:?} is reserved"));
    }
    let data = match body.data {
        None | Some(Value::Null) => return bad("Missing event data: 'data' is required".into()),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    if data.len() > limits.max_event_data_bytes {
        return Err(ApiError::TooLarge(format!(
            "Event data is {} bytes, above the limit of {} bytes",
            data.len(),
            limits.max_event_data_bytes
        )));
    }
    let names = match (body.channels, body.channel) {
        (Some(_), _) if in_batch => {
            return bad("Batch events take 'channel', not 'channels'".into())
        }
        (Some(list), _) => list,
        (None, Some(one)) => vec![one],
        (None, None) => return bad("Missing 'channels' or 'channel'".into()),
    };
    if names.is_empty() {
        return bad("'channels' must not be empty".into());
    }
    if names.len() > limits.max_channels_per_trigger {
        return bad(format!(
            "At most {} channels per event",
            limits.max_channels_per_trigger
        ));
    }
    let mut channels: Vec<String> = Vec::with_capacity(names.len());
    let mut encrypted = false;
    for n in names {
        let ty = channel::validate(&n, limits.max_channel_name_len)
            .map_err(|e| ApiError::BadRequest(format!("Invalid channel name '{n}': {e}")))?;
        encrypted |= ty.kind == ChannelKind::Encrypted;
        if !channels.contains(&n) {
            channels.push(n);
        }
    }
    if encrypted && channels.len() > 1 {
        return bad("Cannot trigger to an encrypted channel together with other channels".into());
    }
    let except = match body.socket_id {
        None => None,
        Some(s) => Some(
            SocketId::parse(&s)
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid socket_id: {s:?}")))?,
        ),
    };
    let (info, _) = Info::parse(body.info.as_deref(), &[])?;
    Ok(Event {
        name,
        data,
        channels,
        except,
        info,
    })
}

/// Validates a whole batch before anything is published.
pub fn validate_batch(body: BatchBody, limits: &Limits) -> Result<Vec<Event>, ApiError> {
    let Some(batch) = body.batch else {
        return Err(ApiError::BadRequest("Missing 'batch'".into()));
    };
    if batch.is_empty() {
        return Err(ApiError::BadRequest("'batch' must not be empty".into()));
    }
    if batch.len() > limits.max_batch_events {
        return Err(ApiError::BadRequest(format!(
            "At most {} events per batch",
            limits.max_batch_events
        )));
    }
    batch
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            validate(e, limits, true).map_err(|err| match err {
                ApiError::BadRequest(m) => ApiError::BadRequest(format!("batch[{i}]: {m}")),
                ApiError::TooLarge(m) => ApiError::TooLarge(format!("batch[{i}]: {m}")),
                other => other,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> Result<Event, ApiError> {
        validate(
            serde_json::from_str(json).unwrap(),
            &Limits::default(),
            false,
        )
    }

    fn status(r: Result<Event, ApiError>) -> u16 {
        r.map(|_| 200).unwrap_or_else(|e| e.status().as_u16())
    }

    #[test]
    fn valid_forms() {
        let e = ev(r#"{"name":"my-event","data":"{\"m\":1}","channels":["a","b","a"],"socket_id":"1.2","info":"user_count,subscription_count"}"#).unwrap();
        assert_eq!(e.channels, vec!["a", "b"]);
        assert_eq!(e.data, "{\"m\":1}");
        assert_eq!(e.except, Some(SocketId { node: 1, seq: 2 }));
        assert_eq!(
            e.info,
            Info {
                user_count: true,
                subscription_count: true
            }
        );
        assert_eq!(
            ev(r#"{"name":"e","data":"x","channel":"one"}"#)
                .unwrap()
                .channels,
            vec!["one"]
        );
        assert_eq!(
            ev(r#"{"name":"e","data":{"a":1},"channel":"one"}"#)
                .unwrap()
                .data,
            r#"{"a":1}"#
        );
        assert!(ev(r#"{"name":"App\\Events\\OrderShipped","data":"x","channel":"private-App.Models.User.1"}"#).is_ok());
        assert!(ev(r##"{"name":"e","data":"x","channel":"#server-to-user-7"}"##).is_ok());
    }

    #[test]
    fn limits() {
        let chans = |n: usize| {
            (0..n)
                .map(|i| format!("\"c{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            status(ev(&format!(
                r#"{{"name":"e","data":"x","channels":[{}]}}"#,
                chans(100)
            ))),
            200
        );
        assert_eq!(
            status(ev(&format!(
                r#"{{"name":"e","data":"x","channels":[{}]}}"#,
                chans(101)
            ))),
            400
        );
        assert_eq!(
            status(ev(&format!(
                r#"{{"name":"e","data":"{}","channel":"c"}}"#,
                "x".repeat(10240)
            ))),
            200
        );
        assert_eq!(
            status(ev(&format!(
                r#"{{"name":"e","data":"{}","channel":"c"}}"#,
                "x".repeat(10241)
            ))),
            413
        );
        assert_eq!(
            status(ev(&format!(
                r#"{{"name":"{}","data":"x","channel":"c"}}"#,
                "n".repeat(200)
            ))),
            200
        );
        assert_eq!(
            status(ev(&format!(
                r#"{{"name":"{}","data":"x","channel":"c"}}"#,
                "n".repeat(201)
            ))),
            400
        );
    }

    #[test]
    fn rejections() {
        for bad in [
            r#"{"data":"x","channel":"c"}"#,
            r#"{"name":"e","channel":"c"}"#,
            r#"{"name":"e","data":"x"}"#,
            r#"{"name":"e","data":"x","channels":[]}"#,
            r#"{"name":"pusher:x","data":"x","channel":"c"}"#,
            r#"{"name":"pusher_internal:x","data":"x","channel":"c"}"#,
            r#"{"name":"e","data":"x","channel":"bad name"}"#,
            r#"{"name":"e","data":"x","channel":"c","socket_id":"abc"}"#,
            r#"{"name":"e","data":"x","channel":"c","info":"bogus"}"#,
            r#"{"name":"e","data":"x","channels":["private-encrypted-a","b"]}"#,
        ] {
            assert_eq!(status(ev(bad)), 400, "{bad}");
        }
        assert!(ev(r#"{"name":"e","data":"x","channels":["private-encrypted-a"]}"#).is_ok());
    }

    #[test]
    fn batches() {
        let b =
            |json: &str| validate_batch(serde_json::from_str(json).unwrap(), &Limits::default());
        let item = r#"{"channel":"c","name":"e","data":"x"}"#;
        let many = |n: usize| format!(r#"{{"batch":[{}]}}"#, vec![item; n].join(","));
        assert_eq!(b(&many(10)).unwrap().len(), 10);
        assert_eq!(b(&many(11)).unwrap_err().status().as_u16(), 400);
        assert_eq!(b(r#"{"batch":[]}"#).unwrap_err().status().as_u16(), 400);
        assert_eq!(b(r#"{}"#).unwrap_err().status().as_u16(), 400);
        let err = b(r#"{"batch":[{"channel":"c","name":"e","data":"x"},{"channels":["c"],"name":"e","data":"x"}]}"#).unwrap_err();
        assert_eq!(
            err.message(),
            "batch[1]: Batch events take 'channel', not 'channels'"
        );
    }
}
