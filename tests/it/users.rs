//! Signed-in users: sendToUser, terminate_connections, watchlists, authorized connections
//! (§15 items 86–97).

use serde_json::{json, Value};

use crate::common::*;

fn with_watchlists() -> herald::config::Config {
    let mut c = config();
    c.apps[0].enable_watchlist_events = true;
    c.limits.max_watchlist_size = 3;
    c
}

#[tokio::test]
async fn send_to_user_reaches_every_socket_of_that_user_only() {
    let t = start().await;
    let (mut a1, s1) = connect(t.addr, "key1").await;
    let (mut a2, s2) = connect(t.addr, "key1").await;
    let (mut b, sb) = connect(t.addr, "key1").await;
    signin(&mut a1, &s1, r#"{"id":"ann"}"#).await;
    signin(&mut a2, &s2, r#"{"id":"ann"}"#).await;
    signin(&mut b, &sb, r#"{"id":"bob"}"#).await;
    // a1 subscribes explicitly as pusher-js does; a2 (like a client that never does) relies on
    // the implicit membership.
    subscribe_public(&mut a1, "#server-to-user-ann").await;
    send(
        &mut a1,
        json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-ann"}}),
    )
    .await;
    expect_error(&recv(&mut a1).await, None, "Existing subscription");
    let r = trigger(
        t.addr,
        json!({"name": "notify", "channel": "#server-to-user-ann", "data": "{\"n\":1}"}),
    )
    .await;
    assert_eq!((r.status, r.body), (200, json!({})));
    for ws in [&mut a1, &mut a2] {
        assert_eq!(
            recv(ws).await,
            json!({"event": "notify", "channel": "#server-to-user-ann", "data": "{\"n\":1}"})
        );
    }
    assert_nothing_queued(&mut b).await;
    // unsubscribing does not leave the user channel while signed in
    send(
        &mut a1,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "#server-to-user-ann"}}),
    )
    .await;
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "again", "channel": "#server-to-user-ann", "data": "x"})
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut a1).await["event"], "again");
    // not listed as a channel
    let r = api(t.addr, "GET", "/apps/1/channels", &[], b"").await;
    assert_eq!(r.body, json!({"channels": {}}));
}

#[tokio::test]
async fn terminate_closes_signed_in_sockets_with_4009_on_both_paths() {
    let t = start().await;
    for path in [
        "/apps/1/users/ann/terminate_connections",
        "/users/ann/terminate_connections",
    ] {
        let (mut a1, s1) = connect(t.addr, "key1").await;
        let (mut a2, s2) = connect(t.addr, "key1").await;
        let (mut presence_only, sp) = connect(t.addr, "key1").await;
        let (mut other, so) = connect(t.addr, "key1").await;
        signin(&mut a1, &s1, r#"{"id":"ann"}"#).await;
        signin(&mut a2, &s2, r#"{"id":"ann"}"#).await;
        signin(&mut other, &so, r#"{"id":"bob"}"#).await;
        subscribe_presence(
            &mut presence_only,
            &sp,
            "presence-t",
            json!("ann"),
            Value::Null,
        )
        .await;
        let r = api(t.addr, "POST", path, &[], b"{}").await;
        assert_eq!((r.status, r.body), (200, json!({})), "{path}: {}", r.raw);
        for ws in [&mut a1, &mut a2] {
            let (texts, code, _) = expect_close(ws).await;
            assert_eq!(code, 4009);
            expect_error(&texts[0], Some(4009), "terminated");
        }
        assert_nothing_queued(&mut presence_only).await;
        assert_nothing_queued(&mut other).await;
    }
    // the python-style path needs a known key
    let r = api_as(
        t.addr,
        "nokey",
        "secret1",
        "POST",
        "/users/ann/terminate_connections",
        &[],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = api(
        t.addr,
        "GET",
        "/apps/1/users/ann/terminate_connections",
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 405);
}

fn watchlist_events(frame: &Value) -> Value {
    assert_eq!(
        frame["event"], "pusher_internal:watchlist_events",
        "{frame}"
    );
    assert!(frame.get("channel").is_none());
    data_of(frame)["events"].clone()
}

#[tokio::test]
async fn watchlist_online_offline() {
    let t = start_with(with_watchlists()).await;
    let (mut ann, sa) = connect(t.addr, "key1").await;
    signin(&mut ann, &sa, r#"{"id":"ann"}"#).await;
    let (mut w, sw) = connect(t.addr, "key1").await;
    signin(&mut w, &sw, r#"{"id":"w","watchlist":["ann","bob"]}"#).await;
    assert_eq!(
        watchlist_events(&recv(&mut w).await),
        json!([{"name": "online", "user_ids": ["ann"]}, {"name": "offline", "user_ids": ["bob"]}])
    );
    let (mut bob1, sb1) = connect(t.addr, "key1").await;
    signin(&mut bob1, &sb1, r#"{"id":"bob"}"#).await;
    assert_eq!(
        watchlist_events(&recv(&mut w).await),
        json!([{"name": "online", "user_ids": ["bob"]}])
    );
    let (mut bob2, sb2) = connect(t.addr, "key1").await;
    signin(&mut bob2, &sb2, r#"{"id":"bob"}"#).await;
    drop(bob1);
    assert_nothing_queued(&mut bob2).await;
    drop(bob2);
    assert_eq!(
        watchlist_events(&recv(&mut w).await),
        json!([{"name": "offline", "user_ids": ["bob"]}])
    );
    assert_nothing_queued(&mut w).await;
    assert_nothing_queued(&mut ann).await;
}

#[tokio::test]
async fn watchlist_over_the_limit_is_truncated_with_4302() {
    let t = start_with(with_watchlists()).await;
    let (mut w, sw) = connect(t.addr, "key1").await;
    let data = r#"{"id":"w","watchlist":["a","b","c","d"]}"#;
    send(&mut w, signin_frame(&sw, data)).await;
    assert_eq!(recv(&mut w).await["event"], "pusher:signin_success");
    assert_eq!(
        watchlist_events(&recv(&mut w).await),
        json!([{"name": "offline", "user_ids": ["a", "b", "c"]}])
    );
    expect_error(&recv(&mut w).await, Some(4302), "only the first 3 user ids");
    assert_nothing_queued(&mut w).await;
}

#[tokio::test]
async fn watchlist_is_ignored_when_the_app_disables_it() {
    let t = start().await;
    let (mut w, sw) = connect(t.addr, "key1").await;
    signin(&mut w, &sw, r#"{"id":"w","watchlist":["a"]}"#).await;
    assert_nothing_queued(&mut w).await;
}

#[tokio::test]
async fn authorized_connections_must_sign_in_in_time() {
    let mut c = config();
    c.apps[0].signin_timeout = Some(1);
    let t = start_with(c).await;
    let (mut lazy, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut lazy, "public-only").await;
    let (mut signed, ss) = connect(t.addr, "key1").await;
    signin(&mut signed, &ss, r#"{"id":"u"}"#).await;
    let (mut private, sp) = connect(t.addr, "key1").await;
    subscribe_private(&mut private, &sp, "private-ok").await;
    let (texts, code, reason) = expect_close(&mut lazy).await;
    assert_eq!(code, 4009);
    assert_eq!(reason, "Connection not authorized within timeout");
    expect_error(&texts[0], Some(4009), "not authorized within timeout");
    // The others outlive the deadline: a frame sent after the lazy one was closed is answered.
    assert_nothing_queued(&mut signed).await;
    assert_nothing_queued(&mut private).await;
}
