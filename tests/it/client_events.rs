//! Client events (§15 items 64–77).

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

async fn pair_on(t: &TestServer, ch: &str) -> ((Ws, String), (Ws, String)) {
    let (mut a, sa) = connect(t.addr, "key1").await;
    let (mut b, sb) = connect(t.addr, "key1").await;
    subscribe_private(&mut a, &sa, ch).await;
    subscribe_private(&mut b, &sb, ch).await;
    ((a, sa), (b, sb))
}

#[tokio::test]
async fn private_client_event_reaches_others_not_sender() {
    let t = start().await;
    let ((mut a, _), (mut b, _)) = pair_on(&t, "private-chat").await;
    send(
        &mut a,
        json!({"event": "client-typing", "channel": "private-chat", "data": {"typing": true}}),
    )
    .await;
    let got = recv(&mut b).await;
    assert_eq!(
        got,
        json!({"event": "client-typing", "channel": "private-chat", "data": "{\"typing\":true}"})
    );
    assert!(got.get("user_id").is_none());
    // string data (Java form) is relayed unchanged
    send(
        &mut a,
        json!({"event": "client-note", "channel": "private-chat", "data": "plain text"}),
    )
    .await;
    assert_eq!(recv(&mut b).await["data"], "plain text");
    assert_nothing_queued(&mut a).await;
}

#[tokio::test]
async fn presence_client_event_carries_user_id_and_reaches_same_user_elsewhere() {
    let t = start().await;
    let ch = "presence-chat";
    let (mut a1, s1) = connect(t.addr, "key1").await;
    let (mut a2, s2) = connect(t.addr, "key1").await;
    subscribe_presence(&mut a1, &s1, ch, json!(10), Value::Null).await;
    subscribe_presence(&mut a2, &s2, ch, json!(10), Value::Null).await;
    send(
        &mut a1,
        json!({"event": "client-typing", "channel": ch, "data": [1, 2]}),
    )
    .await;
    assert_eq!(
        recv(&mut a2).await,
        json!({"event": "client-typing", "channel": ch, "data": "[1,2]", "user_id": "10"})
    );
    assert_nothing_queued(&mut a1).await;
}

#[tokio::test]
async fn refusals() {
    let t = start().await;
    let ((mut a, sa), (mut b, _)) = pair_on(&t, "private-chat").await;
    subscribe_public(&mut a, "public").await;
    subscribe_private(&mut a, &sa, "private-encrypted-x").await;
    let cases = [
        (
            json!({"event": "client-x", "channel": "public", "data": {}}),
            "only allowed on private and presence",
        ),
        (
            json!({"event": "client-x", "channel": "private-encrypted-x", "data": {}}),
            "only allowed on private and presence",
        ),
        (
            json!({"event": "client-x", "channel": "private-other", "data": {}}),
            "not subscribed to private-other",
        ),
        (
            json!({"event": "typing", "channel": "private-chat", "data": {}}),
            "Unsupported event",
        ),
        (
            json!({"event": "pusher:typing", "channel": "private-chat", "data": {}}),
            "Unsupported event",
        ),
        (
            json!({"event": "pusher_internal:member_added", "channel": "private-chat", "data": {}}),
            "Unsupported event",
        ),
        (
            json!({"event": "client-x", "channel": "private-chat", "data": "x".repeat(10 * 1024 + 1)}),
            "data is too large",
        ),
        (
            json!({"event": format!("client-{}", "x".repeat(200)), "channel": "private-chat", "data": {}}),
            "event name is too long",
        ),
    ];
    for (frame, msg) in cases {
        send(&mut a, frame).await;
        expect_error(&recv(&mut a).await, None, msg);
    }
    // exactly 10 KiB is fine
    send(
        &mut a,
        json!({"event": "client-x", "channel": "private-chat", "data": "x".repeat(10 * 1024)}),
    )
    .await;
    assert_eq!(recv(&mut b).await["event"], "client-x");
    assert_nothing_queued(&mut a).await;
    assert_nothing_queued(&mut b).await;
}

#[tokio::test]
async fn disabled_app_refuses_client_events() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key2").await;
    let auth = private_auth("key2", "secret2", &sa, "private-x");
    send(
        &mut a,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel": "private-x"}}),
    )
    .await;
    assert_eq!(
        recv(&mut a).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    send(
        &mut a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    )
    .await;
    expect_error(&recv(&mut a).await, None, "enable this feature");
}

#[tokio::test]
async fn eleventh_event_in_a_second_is_rate_limited_without_closing() {
    let t = start().await;
    let ((mut a, _), (mut b, _)) = pair_on(&t, "private-chat").await;
    // All eleven in one write, so they arrive within the same instant.
    for i in 0..11 {
        let f = json!({"event": "client-n", "channel": "private-chat", "data": i.to_string()});
        a.feed(Message::Text(f.to_string().into())).await.unwrap();
    }
    a.flush().await.unwrap();
    expect_error(&recv(&mut a).await, Some(4301), "rate limit");
    for i in 0..10 {
        assert_eq!(recv(&mut b).await["data"], i.to_string());
    }
    // still connected
    assert_nothing_queued(&mut a).await;
    assert_nothing_queued(&mut b).await;
}
