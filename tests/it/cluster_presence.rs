//! Presence and watchlists over several herald nodes and a real Redis: members, limits and
//! online status as one node would show them.

use serde_json::{json, Value};

use crate::cluster::{node_config, two_nodes};
use crate::common::*;
use crate::redis_server::RedisServer;

#[tokio::test]
async fn presence_is_per_user_across_nodes_and_rest_agrees_everywhere() {
    let redis = RedisServer::start().await;
    let (n1, n2) = two_nodes(&redis).await;
    let ch = "presence-floor";
    let (mut w, sw) = connect(n1.addr, "key1").await;
    subscribe_presence(&mut w, &sw, ch, json!("watcher"), json!({"role": "hr"})).await;
    let (mut u1, s1) = connect(n1.addr, "key1").await;
    let (mut u2, s2) = connect(n2.addr, "key1").await;
    let p = subscribe_presence(&mut u2, &s2, ch, json!("ann"), json!({"name": "Ann"})).await;
    assert_eq!(p["count"], 2);
    assert_eq!(
        p["hash"],
        json!({"watcher": {"role": "hr"}, "ann": {"name": "Ann"}})
    );
    let added = recv(&mut w).await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(
        data_of(&added),
        json!({"user_id": "ann", "user_info": {"name": "Ann"}})
    );
    // Ann's second socket, on the other node: no new member
    let p = subscribe_presence(&mut u1, &s1, ch, json!("ann"), json!({"name": "Ann"})).await;
    assert_eq!(p["count"], 2);
    // both nodes answer the same
    for n in [&n1, &n2] {
        let r = api(
            n.addr,
            "GET",
            &format!("/apps/1/channels/{ch}"),
            &[("info", "user_count")],
            b"",
        )
        .await;
        assert_eq!(r.body, json!({"occupied": true, "user_count": 2}));
        let r = api(
            n.addr,
            "GET",
            &format!("/apps/1/channels/{ch}/users"),
            &[],
            b"",
        )
        .await;
        let mut ids: Vec<String> = r.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["ann", "watcher"]);
        let r = api(
            n.addr,
            "GET",
            "/apps/1/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
            b"",
        )
        .await;
        assert_eq!(
            r.body,
            json!({"channels": {"presence-floor": {"user_count": 2}}})
        );
        let r = api(n.addr, "GET", "/apps/1/channels/presence-floor", &[], b"").await;
        assert_eq!(r.body, json!({"occupied": true}));
    }
    drop(u2);
    assert_nothing_queued(&mut u1).await;
    assert_nothing_queued(&mut w).await;
    drop(u1);
    let removed = recv(&mut w).await;
    assert_eq!(
        removed,
        json!({"event": "pusher_internal:member_removed", "channel": ch, "data": "{\"user_id\":\"ann\"}"})
    );
    assert_nothing_queued(&mut w).await;
}

#[tokio::test]
async fn presence_limit_is_cluster_wide() {
    let redis = RedisServer::start().await;
    let mut c = node_config(&redis);
    c.limits.max_presence_members = 1;
    let n1 = start_with(c.clone()).await;
    let n2 = start_with(c).await;
    let (mut a, sa) = connect(n1.addr, "key1").await;
    subscribe_presence(&mut a, &sa, "presence-one", json!("a"), Value::Null).await;
    let (mut b, sb) = connect(n2.addr, "key1").await;
    let data = r#"{"user_id":"b"}"#;
    let auth = presence_auth("key1", "secret1", &sb, "presence-one", data);
    send(&mut b, json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel_data": data, "channel": "presence-one"}})).await;
    expect_error(&recv(&mut b).await, None, "member limit");
}

#[tokio::test]
async fn watchlist_across_nodes() {
    let redis = RedisServer::start().await;
    let (n1, n2) = two_nodes(&redis).await;
    let (mut w, sw) = connect(n1.addr, "key1").await;
    signin(&mut w, &sw, r#"{"id":"w","watchlist":["bob"]}"#).await;
    assert_eq!(
        data_of(&recv(&mut w).await)["events"],
        json!([{"name": "offline", "user_ids": ["bob"]}])
    );
    let (mut b, sb) = connect(n2.addr, "key1").await;
    signin(&mut b, &sb, r#"{"id":"bob"}"#).await;
    assert_eq!(
        data_of(&recv(&mut w).await)["events"],
        json!([{"name": "online", "user_ids": ["bob"]}])
    );
    drop(b);
    assert_eq!(
        data_of(&recv(&mut w).await)["events"],
        json!([{"name": "offline", "user_ids": ["bob"]}])
    );
}
