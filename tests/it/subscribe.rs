//! Subscriptions of every channel type and their refusals (§15 items 27–50).

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn public_subscribe_with_and_without_auth_key() {
    let t = start().await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, "my-channel").await;
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "java-style"}}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"event": "pusher_internal:subscription_succeeded", "channel": "java-style", "data": "{}"})
    );
    // data as a string holding JSON is accepted too
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": "{\"channel\":\"stringly\"}"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["channel"], "stringly");
}

#[tokio::test]
async fn private_and_encrypted_with_valid_signatures() {
    let t = start().await;
    let (mut ws, sid) = connect(t.addr, "key1").await;
    subscribe_private(&mut ws, &sid, "private-foobar").await;
    subscribe_private(&mut ws, &sid, "private-encrypted-foobar").await;
    subscribe_private(&mut ws, &sid, "private-App.Models.User.1").await;
}

#[tokio::test]
async fn private_refusals_keep_the_connection_and_subscribe_nothing() {
    let t = start().await;
    let (mut ws, sid) = connect(t.addr, "key1").await;
    let ch = "private-foobar";
    let cases = [
        (
            json!({"channel": ch, "auth": format!("key1:{}", "0".repeat(64))}),
            "Invalid signature: Expected HMAC SHA256 hex digest of",
        ),
        (
            json!({"channel": ch, "auth": private_auth("key1", "secret1", "1.1", ch)}),
            "Invalid signature",
        ),
        (
            json!({"channel": ch, "auth": private_auth("key2", "secret1", &sid, ch)}),
            "Invalid key in subscription auth data: 'key2'",
        ),
        (
            json!({"channel": ch, "auth": private_auth("key1", "secret2", &sid, ch)}),
            "Invalid signature",
        ),
        (
            json!({"channel": ch, "auth": ""}),
            "Auth info required to subscribe to private-foobar",
        ),
        (json!({"channel": ch}), "Auth info required"),
        (
            json!({"channel": "private-encrypted-x", "auth": "garbage"}),
            "Invalid key",
        ),
    ];
    for (data, msg) in cases {
        send(&mut ws, json!({"event": "pusher:subscribe", "data": data})).await;
        let f = recv(&mut ws).await;
        expect_error(&f, None, msg);
    }
    let info = api(
        t.addr,
        "GET",
        "/apps/1/channels/private-foobar",
        &[("info", "subscription_count")],
        b"",
    )
    .await;
    assert_eq!(
        info.body,
        json!({"occupied": false, "subscription_count": 0})
    );
    // the wrong-signature message names the exact string that should have been signed
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": ch, "auth": "key1:abc"}}),
    )
    .await;
    let f = recv(&mut ws).await;
    assert_eq!(
        f["data"]["message"],
        format!(
            "Invalid signature: Expected HMAC SHA256 hex digest of {sid}:{ch}, but got key1:abc"
        )
    );
    assert_eq!(f["channel"], ch);
    assert_nothing_queued(&mut ws).await;
}

#[tokio::test]
async fn channel_name_rules() {
    let t = start().await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    for bad in [
        "has space",
        "#hash",
        "#server-to-user-",
        "caf\u{e9}",
        "slash/no",
        "",
    ] {
        send(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": bad}}),
        )
        .await;
        expect_error(&recv(&mut ws).await, None, "channel name");
    }
    subscribe_public(&mut ws, &"a".repeat(200)).await;
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "a".repeat(201)}}),
    )
    .await;
    expect_error(&recv(&mut ws).await, None, "longer than 200");
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"auth": ""}}),
    )
    .await;
    expect_error(&recv(&mut ws).await, None, "Missing channel");
}

#[tokio::test]
async fn double_subscribe_is_an_error_and_keeps_one_membership() {
    let t = start().await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, "dup").await;
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "dup"}}),
    )
    .await;
    expect_error(
        &recv(&mut ws).await,
        None,
        "Existing subscription to channel dup",
    );
    let r = api(
        t.addr,
        "GET",
        "/apps/1/channels/dup",
        &[("info", "subscription_count")],
        b"",
    )
    .await;
    assert_eq!(r.body, json!({"occupied": true, "subscription_count": 1}));
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "e", "channel": "dup", "data": "once"})
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut ws).await["data"], "once");
    assert_nothing_queued(&mut ws).await;
}

#[tokio::test]
async fn unsubscribe_is_silent_and_stops_delivery() {
    let t = start().await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, "news").await;
    send(
        &mut ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}),
    )
    .await;
    send(
        &mut ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "never-subscribed"}}),
    )
    .await;
    assert_nothing_queued(&mut ws).await;
    assert_eq!(
        trigger(t.addr, json!({"name": "e", "channel": "news", "data": "x"}))
            .await
            .status,
        200
    );
    assert_nothing_queued(&mut ws).await;
    let r = api(t.addr, "GET", "/apps/1/channels/news", &[], b"").await;
    assert_eq!(r.body, json!({"occupied": false}));
}

#[tokio::test]
async fn closing_the_socket_unsubscribes_everything() {
    let t = start().await;
    let (mut ws, sid) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, "a").await;
    subscribe_private(&mut ws, &sid, "private-b").await;
    ws.close(None).await.unwrap();
    drop(ws);
    let hub = t.server.state().hub.app("1");
    eventually("channels to be vacated after close", || {
        hub.channels("").is_empty()
    })
    .await;
}

#[tokio::test]
async fn per_connection_channel_limit() {
    let mut c = config();
    c.limits.max_channels_per_connection = 2;
    let t = start_with(c).await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, "a").await;
    subscribe_public(&mut ws, "b").await;
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "c"}}),
    )
    .await;
    expect_error(&recv(&mut ws).await, None, "at most 2 channels");
    send(
        &mut ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "a"}}),
    )
    .await;
    subscribe_public(&mut ws, "c").await;
}

#[tokio::test]
async fn server_to_user_requires_matching_signin() {
    let t = start().await;
    let (mut ws, sid) = connect(t.addr, "key1").await;
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": "#server-to-user-42"}}),
    )
    .await;
    expect_error(&recv(&mut ws).await, None, "requires signing in");
    let user_data = r#"{"id":"42"}"#;
    signin(&mut ws, &sid, user_data).await;
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": "#server-to-user-43"}}),
    )
    .await;
    expect_error(&recv(&mut ws).await, None, "requires signing in");
    subscribe_public(&mut ws, "#server-to-user-42").await;
}

#[tokio::test]
async fn signin_refusals() {
    let t = start().await;
    let (mut ws, sid) = connect(t.addr, "key1").await;
    let signin = |data: &str| signin_frame(&sid, data);
    send(&mut ws, json!({"event": "pusher:signin", "data": {"auth": "key1:00", "user_data": "{\"id\":\"1\"}"}})).await;
    expect_error(&recv(&mut ws).await, None, "Invalid signature");
    send(&mut ws, signin(r#"{"id":1}"#)).await;
    expect_error(&recv(&mut ws).await, None, "id must be a non-empty string");
    send(&mut ws, signin(r#"{"name":"x"}"#)).await;
    expect_error(&recv(&mut ws).await, None, "id must be a non-empty string");
    send(&mut ws, signin(r#"{"id":"a"}"#)).await;
    assert_eq!(recv(&mut ws).await["event"], "pusher:signin_success");
    send(&mut ws, signin(r#"{"id":"a"}"#)).await;
    assert_eq!(recv(&mut ws).await["event"], "pusher:signin_success");
    send(&mut ws, signin(r#"{"id":"b"}"#)).await;
    expect_error(&recv(&mut ws).await, None, "different user");
}
