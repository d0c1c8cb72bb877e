//! Presence `channel_data` and signin `user_data` validation, and the presence payload shapes.

use serde::Serialize;
use serde_json::Value;

/// A presence member as announced to clients.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The user id, normalized to a string.
    pub user_id: String,
    /// `user_info` as given (`None` when absent).
    pub user_info: Option<Value>,
}

/// Limits that apply to presence data.
#[derive(Debug, Clone, Copy)]
pub struct PresenceLimits {
    /// Max user id length in characters.
    pub max_user_id_len: usize,
    /// Max serialized `user_info` size in bytes.
    pub max_user_info_bytes: usize,
}

/// Parses `channel_data` into a member (PROTOCOL.md §2.1 step 4).
pub fn parse_channel_data(raw: &str, limits: PresenceLimits) -> Result<Member, String> {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(raw) else {
        return Err("channel_data must be a JSON object".into());
    };
    let user_id = match obj.remove("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("user_id must be a non-empty string or a number".into()),
        None => return Err("user_id is missing".into()),
    };
    if user_id.chars().count() > limits.max_user_id_len {
        return Err(format!(
            "user_id is longer than {} characters",
            limits.max_user_id_len
        ));
    }
    let user_info = obj.remove("user_info");
    if let Some(info) = &user_info {
        let size = serde_json::to_string(info)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if size > limits.max_user_info_bytes {
            return Err(format!(
                "user_info is larger than {} bytes",
                limits.max_user_info_bytes
            ));
        }
    }
    Ok(Member { user_id, user_info })
}

/// The `data` string of a presence `subscription_succeeded`:
/// `{"presence":{"ids":[..],"hash":{id: info|null},"count":n}}`.
pub fn subscription_data<'a>(
    members: impl Iterator<Item = (&'a str, Option<&'a Value>)>,
) -> String {
    let mut ids = Vec::new();
    let mut hash = serde_json::Map::new();
    for (id, info) in members {
        ids.push(Value::String(id.to_string()));
        hash.insert(id.to_string(), info.cloned().unwrap_or(Value::Null));
    }
    let count = ids.len();
    let v = serde_json::json!({"presence": {"ids": ids, "hash": hash, "count": count}});
    v.to_string()
}

/// `data` of `pusher_internal:member_added`.
pub fn member_added_data(member: &Member) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        user_id: &'a str,
        user_info: &'a Option<Value>,
    }
    serde_json::to_string(&D {
        user_id: &member.user_id,
        user_info: &member.user_info,
    })
    .unwrap_or_default()
}

/// `data` of `pusher_internal:member_removed`.
pub fn member_removed_data(user_id: &str) -> String {
    serde_json::json!({ "user_id": user_id }).to_string()
}

/// A signed-in user as declared in `pusher:signin` `user_data`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserData {
    /// `id`: non-empty string in the channel-name charset.
    pub id: String,
    /// `user_info`, shared with presence channels joined without `channel_data`.
    pub info: Option<Value>,
    /// `watchlist`, truncated to the limit.
    pub watchlist: Vec<String>,
    /// Whether the watchlist was longer than the limit.
    pub watchlist_truncated: bool,
}

/// Parses sign-in `user_data` (PROTOCOL.md §2.10).
pub fn parse_user_data(
    raw: &str,
    max_id_len: usize,
    max_watchlist: usize,
) -> Result<UserData, String> {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(raw) else {
        return Err("user_data must be a JSON object".into());
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err("user_data.id must be a non-empty string".into()),
    };
    if id.chars().count() > max_id_len {
        return Err(format!(
            "user_data.id is longer than {max_id_len} characters"
        ));
    }
    if !id.bytes().all(super::channel::is_name_char) {
        return Err(
            "user_data.id may only contain A-Z, a-z, 0-9, '_', '-', '=', '@', ',', '.', ';'".into(),
        );
    }
    let mut watchlist = match obj.remove("watchlist") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(s),
                _ => Err("user_data.watchlist must be an array of user id strings".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("user_data.watchlist must be an array of user id strings".into()),
    };
    let watchlist_truncated = watchlist.len() > max_watchlist;
    watchlist.truncate(max_watchlist);
    Ok(UserData {
        id,
        info: obj.remove("user_info"),
        watchlist,
        watchlist_truncated,
    })
}

#[cfg(test)]
mod user_data_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_data() {
        let u = parse_user_data(
            r#"{"id":"12345","user_info":{"name":"Ann"},"watchlist":["1","2"]}"#,
            128,
            100,
        )
        .unwrap();
        assert_eq!(u.id, "12345");
        assert_eq!(u.info, Some(json!({"name": "Ann"})));
        assert_eq!(u.watchlist, ["1", "2"]);
        assert!(!u.watchlist_truncated);
        let ids: Vec<String> = (0..101).map(|i| format!("\"{i}\"")).collect();
        let u = parse_user_data(
            &format!(r#"{{"id":"a","watchlist":[{}]}}"#, ids.join(",")),
            128,
            100,
        )
        .unwrap();
        assert_eq!(u.watchlist.len(), 100);
        assert!(u.watchlist_truncated);
        for bad in [
            r#"{"id":1}"#,
            r#"{"id":""}"#,
            r#"{}"#,
            "[]",
            "x",
            r#"{"id":"a b"}"#,
            r#"{"id":"a","watchlist":"b"}"#,
            r#"{"id":"a","watchlist":[1]}"#,
        ] {
            assert!(parse_user_data(bad, 128, 100).is_err(), "{bad}");
        }
        assert!(parse_user_data(&format!(r#"{{"id":"{}"}}"#, "u".repeat(129)), 128, 100).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const L: PresenceLimits = PresenceLimits {
        max_user_id_len: 128,
        max_user_info_bytes: 1024,
    };

    #[test]
    fn channel_data() {
        let m =
            parse_channel_data(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#, L).unwrap();
        assert_eq!(m.user_id, "10");
        assert_eq!(m.user_info, Some(json!({"name": "Mr. Channels"})));
        assert_eq!(
            parse_channel_data(r#"{"user_id":"a"}"#, L)
                .unwrap()
                .user_info,
            None
        );
        assert!(parse_channel_data(r#"{"user_info":{}}"#, L).is_err());
        assert!(parse_channel_data(r#"{"user_id":""}"#, L).is_err());
        assert!(parse_channel_data(r#"{"user_id":true}"#, L).is_err());
        assert!(parse_channel_data("[]", L).is_err());
        assert!(parse_channel_data("nope", L).is_err());
        assert!(parse_channel_data(&format!(r#"{{"user_id":"{}"}}"#, "u".repeat(128)), L).is_ok());
        assert!(parse_channel_data(&format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129)), L).is_err());
        let big = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "x".repeat(1023));
        assert!(parse_channel_data(&big, L).is_err());
        let ok = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "x".repeat(1022));
        assert!(parse_channel_data(&ok, L).is_ok());
    }

    #[test]
    fn payloads() {
        let info = json!({"name": "Mr. Channels"});
        let s = subscription_data([("10", Some(&info)), ("11", None)].into_iter());
        assert_eq!(
            s,
            r#"{"presence":{"count":2,"hash":{"10":{"name":"Mr. Channels"},"11":null},"ids":["10","11"]}}"#
        );
        let m = Member {
            user_id: "11".into(),
            user_info: Some(json!({"name": "Ann"})),
        };
        assert_eq!(
            member_added_data(&m),
            r#"{"user_id":"11","user_info":{"name":"Ann"}}"#
        );
        assert_eq!(member_removed_data("11"), r#"{"user_id":"11"}"#);
    }
}
