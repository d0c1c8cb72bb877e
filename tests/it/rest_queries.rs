//! REST channel queries and the counts triggers report (§15 items 56–63): `GET /channels`,
//! `GET /channels/{name}`, `/users`, and `info` on `/events` and `/batch_events`, on one node and
//! across two nodes on Redis.

use serde_json::{json, Value};

use crate::common::*;
use crate::redis_server::RedisServer;

#[tokio::test]
async fn trigger_info_counts() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    let (mut b, sb) = connect(t.addr, "key1").await;
    subscribe_presence(&mut a, &sa, "presence-p", json!("1"), Value::Null).await;
    subscribe_presence(&mut b, &sb, "presence-p", json!("2"), Value::Null).await;
    assert_eq!(recv(&mut a).await["event"], "pusher_internal:member_added");
    subscribe_public(&mut a, "pub").await;
    subscribe_public(&mut b, "pub").await;
    let r = trigger(t.addr, json!({"name": "e", "channels": ["presence-p", "pub", "empty"], "data": "x", "info": "user_count,subscription_count"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"channels": {
            "presence-p": {"user_count": 2, "subscription_count": 2},
            "pub": {"subscription_count": 2},
            "empty": {"subscription_count": 0}
        }})
    );
}

#[tokio::test]
async fn channels_listing() {
    let t = start().await;
    let r = api(t.addr, "GET", "/apps/1/channels", &[], b"").await;
    assert_eq!((r.status, r.raw.as_str()), (200, r#"{"channels":{}}"#));
    let (mut a, sa) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "pub-1").await;
    subscribe_presence(&mut a, &sa, "presence-x", json!("u1"), Value::Null).await;
    let user_data = r#"{"id":"7"}"#;
    signin(&mut a, &sa, user_data).await;
    subscribe_public(&mut a, "#server-to-user-7").await;
    let r = api(t.addr, "GET", "/apps/1/channels", &[], b"").await;
    assert_eq!(r.body, json!({"channels": {"pub-1": {}, "presence-x": {}}}));
    let r = api(
        t.addr,
        "GET",
        "/apps/1/channels",
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        b"",
    )
    .await;
    assert_eq!(
        r.body,
        json!({"channels": {"presence-x": {"user_count": 1}}})
    );
    let r = api(
        t.addr,
        "GET",
        "/apps/1/channels",
        &[("info", "user_count")],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = api(
        t.addr,
        "GET",
        "/apps/1/channels",
        &[("filter_by_prefix", "pub-"), ("info", "user_count")],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn channel_info_and_users() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    let (mut b, sb) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "pub").await;
    subscribe_public(&mut b, "pub").await;
    subscribe_presence(&mut a, &sa, "presence-q", json!(5), Value::Null).await;
    subscribe_presence(&mut b, &sb, "presence-q", json!(5), Value::Null).await;
    let get = |path: &'static str, info: Option<&'static str>| {
        let addr = t.addr;
        async move {
            let extra: Vec<(&str, &str)> = info.map(|i| vec![("info", i)]).unwrap_or_default();
            api(addr, "GET", path, &extra, b"").await
        }
    };
    assert_eq!(
        get("/apps/1/channels/pub", None).await.body,
        json!({"occupied": true})
    );
    assert_eq!(
        get("/apps/1/channels/pub", Some("subscription_count"))
            .await
            .body,
        json!({"occupied": true, "subscription_count": 2})
    );
    assert_eq!(
        get("/apps/1/channels/pub", Some("user_count")).await.status,
        400
    );
    assert_eq!(
        get("/apps/1/channels/presence-q", Some("user_count"))
            .await
            .body,
        json!({"occupied": true, "user_count": 1})
    );
    // one user on two sockets: one member, two subscriptions
    assert_eq!(
        get("/apps/1/channels/presence-q", Some("subscription_count"))
            .await
            .body,
        json!({"occupied": true, "subscription_count": 2})
    );
    assert_eq!(
        get(
            "/apps/1/channels/presence-q",
            Some("user_count,subscription_count")
        )
        .await
        .body,
        json!({"occupied": true, "user_count": 1, "subscription_count": 2})
    );
    assert_eq!(
        get("/apps/1/channels/nobody", None).await.body,
        json!({"occupied": false})
    );
    assert_eq!(
        get("/apps/1/channels/presence-q/users", None).await.body,
        json!({"users": [{"id": "5"}]})
    );
    assert_eq!(
        get("/apps/1/channels/presence-empty/users", None)
            .await
            .body,
        json!({"users": []})
    );
    assert_eq!(get("/apps/1/channels/pub/users", None).await.status, 400);
    assert_eq!(get("/apps/1/channels/bad%20name", None).await.status, 400);
}

/// Asks for `user_count,subscription_count` of `presence-room` (and a public channel) on every
/// REST path that takes `info`, through the node at `addr`: each answer has the subscribed
/// connections as well as the distinct users.
async fn both_counts_everywhere(addr: std::net::SocketAddr, users: usize, subscriptions: usize) {
    let both = ("info", "user_count,subscription_count");
    let r = api(addr, "GET", "/apps/1/channels/presence-room", &[both], b"").await;
    assert_eq!(
        (r.status, r.body),
        (
            200,
            json!({"occupied": true, "user_count": users, "subscription_count": subscriptions})
        )
    );
    let r = api(
        addr,
        "GET",
        "/apps/1/channels",
        &[("filter_by_prefix", "presence-"), both],
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.body),
        (
            200,
            json!({"channels": {"presence-room": {"user_count": users, "subscription_count": subscriptions}}})
        )
    );
    let body = json!({"name": "e", "channels": ["presence-room", "lobby"], "data": "x", "info": "user_count,subscription_count"});
    let r = api(
        addr,
        "POST",
        "/apps/1/events",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.body),
        (
            200,
            json!({"channels": {
                "presence-room": {"user_count": users, "subscription_count": subscriptions},
                "lobby": {"subscription_count": 1}
            }})
        )
    );
    let batch = json!({"batch": [
        {"channel": "presence-room", "name": "e", "data": "x", "info": "subscription_count"},
        {"channel": "presence-room", "name": "e", "data": "x", "info": "user_count,subscription_count"},
    ]});
    let r = api(
        addr,
        "POST",
        "/apps/1/batch_events",
        &[],
        batch.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.body),
        (
            200,
            json!({"batch": [
                {"subscription_count": subscriptions},
                {"user_count": users, "subscription_count": subscriptions}
            ]})
        )
    );
}

/// Reads what the REST triggers of [`both_counts_everywhere`] delivered `times` times to a
/// socket on `presence-room` (one trigger and two batch events each time), then proves nothing
/// else came: presence channels never get `subscription_count` events.
async fn expect_room_events(ws: &mut Ws, times: usize) {
    for _ in 0..3 * times {
        assert_eq!(
            recv(ws).await,
            json!({"event": "e", "channel": "presence-room", "data": "x"})
        );
    }
    assert_nothing_queued(ws).await;
}

/// The `lobby` subscriber: its count update, then one trigger per [`both_counts_everywhere`].
async fn expect_lobby_events(ws: &mut Ws, times: usize) {
    for _ in 0..times {
        assert_eq!(
            recv(ws).await,
            json!({"event": "e", "channel": "lobby", "data": "x"})
        );
    }
    assert_nothing_queued(ws).await;
}

/// ann on two sockets and bob on one join `presence-room`; another socket joins `lobby`. The
/// app counts subscriptions, so `lobby` gets its count update and `presence-room` none.
async fn join_room(
    ann1: std::net::SocketAddr,
    ann2: std::net::SocketAddr,
    bob: std::net::SocketAddr,
) -> [Ws; 4] {
    let (mut a1, s1) = connect(ann1, "key1").await;
    let (mut a2, s2) = connect(ann2, "key1").await;
    let (mut b, s3) = connect(bob, "key1").await;
    let (mut lobby, _) = connect(bob, "key1").await;
    subscribe_presence(&mut a1, &s1, "presence-room", json!("ann"), Value::Null).await;
    subscribe_presence(&mut a2, &s2, "presence-room", json!("ann"), Value::Null).await;
    subscribe_presence(&mut b, &s3, "presence-room", json!("bob"), Value::Null).await;
    for ws in [&mut a1, &mut a2] {
        let added = recv(ws).await;
        assert_eq!(
            (&added["event"], &added["channel"]),
            (
                &json!("pusher_internal:member_added"),
                &json!("presence-room")
            )
        );
        assert_eq!(
            data_of(&added),
            json!({"user_id": "bob", "user_info": null})
        );
    }
    subscribe_public(&mut lobby, "lobby").await;
    assert_eq!(
        recv(&mut lobby).await,
        json!({"event": "pusher_internal:subscription_count", "channel": "lobby", "data": "{\"subscription_count\":1}"})
    );
    [a1, a2, b, lobby]
}

#[tokio::test]
async fn presence_channels_answer_subscription_count_on_every_rest_path() {
    let mut c = config();
    c.apps[0].enable_subscription_count = true;
    let t = start_with(c).await;
    let [mut a1, mut a2, mut b, mut lobby] = join_room(t.addr, t.addr, t.addr).await;
    both_counts_everywhere(t.addr, 2, 3).await;
    for ws in [&mut a1, &mut a2, &mut b] {
        expect_room_events(ws, 1).await;
    }
    expect_lobby_events(&mut lobby, 1).await;
}

#[tokio::test]
async fn presence_subscription_count_is_cluster_wide_on_redis() {
    let redis = RedisServer::start().await;
    let node = || {
        let mut c = config();
        c.adapter = herald::config::AdapterKind::Redis;
        c.redis.url = redis.url();
        c.redis.heartbeat_ms = 200;
        c.redis.node_timeout_ms = 1000;
        c.apps[0].enable_subscription_count = true;
        start_with(c)
    };
    let (n1, n2) = (node().await, node().await);
    // ann on both nodes, bob and the lobby on node 2
    let [mut a1, mut a2, mut b, mut lobby] = join_room(n1.addr, n2.addr, n2.addr).await;
    // the same answer through either node
    both_counts_everywhere(n1.addr, 2, 3).await;
    both_counts_everywhere(n2.addr, 2, 3).await;
    for ws in [&mut a1, &mut a2, &mut b] {
        expect_room_events(ws, 2).await;
    }
    expect_lobby_events(&mut lobby, 2).await;
}
