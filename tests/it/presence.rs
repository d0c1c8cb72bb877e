//! Presence bookkeeping: payloads, members per user (not per socket), limits (§15 items 35–55).

use serde_json::{json, Value};

use crate::common::*;

const CH: &str = "presence-room";

#[tokio::test]
async fn subscription_payload_lists_every_member_including_self() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    let p = subscribe_presence(
        &mut a,
        &sa,
        CH,
        json!("10"),
        json!({"name": "Mr. Channels"}),
    )
    .await;
    assert_eq!(
        p,
        json!({"ids": ["10"], "hash": {"10": {"name": "Mr. Channels"}}, "count": 1})
    );
    let (mut b, sb) = connect(t.addr, "key1").await;
    // numeric user ids become strings everywhere
    let p = subscribe_presence(&mut b, &sb, CH, json!(11), Value::Null).await;
    assert_eq!(p["count"], 2);
    assert_eq!(
        p["hash"],
        json!({"10": {"name": "Mr. Channels"}, "11": null})
    );
    let mut ids: Vec<String> = p["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["10", "11"]);
    // a joined, b's member_added reaches a (not b)
    let added = recv(&mut a).await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(added["channel"], CH);
    assert_eq!(data_of(&added), json!({"user_id": "11", "user_info": null}));
    assert_nothing_queued(&mut b).await;
}

#[tokio::test]
async fn member_events_are_per_user_not_per_socket() {
    let t = start().await;
    let (mut watcher, sw) = connect(t.addr, "key1").await;
    subscribe_presence(&mut watcher, &sw, CH, json!("w"), json!({})).await;
    let (mut u1, s1) = connect(t.addr, "key1").await;
    let (mut u2, s2) = connect(t.addr, "key1").await;
    subscribe_presence(&mut u1, &s1, CH, json!("u"), json!({"n": 1})).await;
    let added = recv(&mut watcher).await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(
        data_of(&added),
        json!({"user_id": "u", "user_info": {"n": 1}})
    );
    // the same user from a second socket: nobody hears about it
    let p = subscribe_presence(&mut u2, &s2, CH, json!("u"), json!({"n": 1})).await;
    assert_eq!(p["count"], 2);
    assert_nothing_queued(&mut watcher).await;
    assert_nothing_queued(&mut u1).await;
    let users = api(
        t.addr,
        "GET",
        &format!("/apps/1/channels/{CH}/users"),
        &[],
        b"",
    )
    .await;
    assert_eq!(users.body["users"].as_array().unwrap().len(), 2);
    let info = api(
        t.addr,
        "GET",
        &format!("/apps/1/channels/{CH}"),
        &[("info", "user_count")],
        b"",
    )
    .await;
    assert_eq!(info.body, json!({"occupied": true, "user_count": 2}));
    // one socket leaves by unsubscribing: the user remains
    send(
        &mut u1,
        json!({"event": "pusher:unsubscribe", "data": {"channel": CH}}),
    )
    .await;
    assert_nothing_queued(&mut u1).await;
    assert_nothing_queued(&mut watcher).await;
    // the last socket disconnects: member_removed
    drop(u2);
    let removed = recv(&mut watcher).await;
    assert_eq!(
        removed,
        json!({"event": "pusher_internal:member_removed", "channel": CH, "data": "{\"user_id\":\"u\"}"})
    );
    let users = api(
        t.addr,
        "GET",
        &format!("/apps/1/channels/{CH}/users"),
        &[],
        b"",
    )
    .await;
    assert_eq!(users.body, json!({"users": [{"id": "w"}]}));
}

#[tokio::test]
async fn presence_refusals() {
    let t = start().await;
    let (mut ws, sid) = connect(t.addr, "key1").await;
    let sub = |data: &str, signed_over: &str| {
        let auth = presence_auth("key1", "secret1", &sid, CH, signed_over);
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel_data": data, "channel": CH}})
    };
    let good = r#"{"user_id":"1"}"#;
    send(&mut ws, sub(good, r#"{"user_id":"2"}"#)).await;
    expect_error(&recv(&mut ws).await, None, "Invalid signature");
    let no_id = r#"{"user_info":{}}"#;
    send(&mut ws, sub(no_id, no_id)).await;
    expect_error(&recv(&mut ws).await, None, "user_id is missing");
    let long_id = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129));
    send(&mut ws, sub(&long_id, &long_id)).await;
    expect_error(&recv(&mut ws).await, None, "longer than 128");
    let big_info = format!(
        r#"{{"user_id":"1","user_info":{{"bio":"{}"}}}}"#,
        "x".repeat(1100)
    );
    send(&mut ws, sub(&big_info, &big_info)).await;
    expect_error(&recv(&mut ws).await, None, "larger than 1024");
    send(&mut ws, sub("not json", "not json")).await;
    expect_error(&recv(&mut ws).await, None, "JSON object");
    // no channel_data and not signed in
    let auth = private_auth("key1", "secret1", &sid, CH);
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel": CH}}),
    )
    .await;
    expect_error(&recv(&mut ws).await, None, "channel_data is required");
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": CH}}),
    )
    .await;
    expect_error(&recv(&mut ws).await, None, "Auth info required");
    let r = api(
        t.addr,
        "GET",
        &format!("/apps/1/channels/{CH}"),
        &[("info", "user_count")],
        b"",
    )
    .await;
    assert_eq!(r.body, json!({"occupied": false, "user_count": 0}));
}

#[tokio::test]
async fn signed_in_user_joins_without_channel_data() {
    let t = start().await;
    let (mut ws, sid) = connect(t.addr, "key1").await;
    let user_data = r#"{"id":"12345","user_info":{"name":"Ann"}}"#;
    signin(&mut ws, &sid, user_data).await;
    let auth = private_auth("key1", "secret1", &sid, CH);
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel": CH}}),
    )
    .await;
    let ok = recv(&mut ws).await;
    assert_eq!(
        data_of(&ok)["presence"],
        json!({"ids": ["12345"], "hash": {"12345": {"name": "Ann"}}, "count": 1})
    );
}

#[tokio::test]
async fn member_limit_admits_existing_members() {
    let mut c = config();
    c.limits.max_presence_members = 2;
    let t = start_with(c).await;
    let mut keep = Vec::new();
    for uid in ["a", "b"] {
        let (mut ws, sid) = connect(t.addr, "key1").await;
        subscribe_presence(&mut ws, &sid, CH, json!(uid), Value::Null).await;
        keep.push(ws);
    }
    let (mut third, s3) = connect(t.addr, "key1").await;
    let data = r#"{"user_id":"c"}"#;
    let auth = presence_auth("key1", "secret1", &s3, CH, data);
    send(&mut third, json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel_data": data, "channel": CH}})).await;
    expect_error(&recv(&mut third).await, None, "member limit");
    // "a" again from a new socket is fine
    let p = subscribe_presence(&mut third, &s3, CH, json!("a"), Value::Null).await;
    assert_eq!(p["count"], 2);
}
