//! Order across nodes: presence member events in the order Redis decided them, cache channel
//! joins during a publish storm (no stale replay, no gap, no duplicate).

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::node_config;
use crate::cluster_faults::record;
use crate::common::*;
use crate::redis_server::RedisServer;

/// A subscriber joining a cache channel on one node while another node publishes to it gets
/// the cached value and then every later event: no stale replay followed by a gap, no event
/// twice (the cached event is fetched after the socket joined, and the replayed event's own
/// broadcast is not delivered again).
#[tokio::test]
async fn cache_channel_joins_during_a_publish_storm_see_no_gap() {
    let redis = RedisServer::start().await;
    let a = start_with(node_config(&redis)).await;
    let b = start_with(node_config(&redis)).await;
    const CH: &str = "cache-roster";
    const EVENTS: u32 = 300;
    // Keeps node B subscribed to the channel throughout, so joins race with broadcasts only.
    let (mut keeper, _) = connect(b.addr, "key1").await;
    send(
        &mut keeper,
        json!({"event": "pusher:subscribe", "data": {"channel": CH}}),
    )
    .await;
    assert_eq!(
        recv(&mut keeper).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let storm = tokio::spawn(async move {
        for i in 1..=EVENTS {
            let r = trigger(
                a.addr,
                json!({"name": "e", "channel": CH, "data": i.to_string()}),
            )
            .await;
            assert_eq!(r.status, 200);
        }
        a
    });
    let mut clients = Vec::new();
    while !storm.is_finished() && clients.len() < 40 {
        let (mut ws, _) = connect(b.addr, "key1").await;
        send(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": CH}}),
        )
        .await;
        assert_eq!(
            recv(&mut ws).await["event"],
            "pusher_internal:subscription_succeeded"
        );
        clients.push(record(ws));
    }
    let _a = storm.await.unwrap();
    assert!(
        clients.len() >= 5,
        "only {} joins during the storm",
        clients.len()
    );
    for (i, c) in clients.iter().enumerate() {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let values: Vec<u32> = c
                .frames
                .lock()
                .unwrap()
                .iter()
                .filter(|f| f["event"] == "e")
                .filter_map(|f| f["data"].as_str()?.parse().ok())
                .collect();
            if values.last() == Some(&EVENTS) {
                let consecutive = values.windows(2).all(|w| w[1] == w[0] + 1);
                assert!(consecutive, "client {i} saw {values:?}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "client {i} never got the last event: {values:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A page refresh that lands on another node: the old socket leaves node 1 while the new one
/// joins node 2. Every observer, on every node, must see that user's member events in the
/// order Redis decided them, so its member list ends with the user present.
#[tokio::test]
async fn member_events_keep_their_order_across_nodes() {
    let redis = RedisServer::start().await;
    let nodes = [
        start_with(node_config(&redis)).await,
        start_with(node_config(&redis)).await,
        start_with(node_config(&redis)).await,
    ];
    const CH: &str = "presence-refresh";
    let mut observers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let (mut ws, sid) = connect(n.addr, "key1").await;
        subscribe_presence(&mut ws, &sid, CH, json!(format!("obs{i}")), Value::Null).await;
        observers.push(ws);
    }
    let (mut current, su) = connect(nodes[0].addr, "key1").await;
    subscribe_presence(&mut current, &su, CH, json!("U"), Value::Null).await;
    for cycle in 0..40 {
        let target = nodes[(cycle + 1) % 2].addr;
        let old = current;
        let (joined, ()) = tokio::join!(
            async move {
                let (mut ws, sid) = connect(target, "key1").await;
                subscribe_presence(&mut ws, &sid, CH, json!("U"), Value::Null).await;
                ws
            },
            async move { drop(old) },
        );
        current = joined;
        let marker = format!("m{cycle}");
        let r = trigger(
            nodes[2].addr,
            json!({"name": "marker", "channel": CH, "data": marker}),
        )
        .await;
        assert_eq!(r.status, 200);
        for (i, ws) in observers.iter_mut().enumerate() {
            // Each observer's view: U is present after everything up to the marker.
            let mut present = None;
            loop {
                let f = recv(ws).await;
                match f["event"].as_str() {
                    Some("marker") if f["data"] == marker => break,
                    Some("pusher_internal:member_added") if data_of(&f)["user_id"] == "U" => {
                        present = Some(true)
                    }
                    Some("pusher_internal:member_removed") if data_of(&f)["user_id"] == "U" => {
                        present = Some(false)
                    }
                    _ => {}
                }
            }
            assert_ne!(present, Some(false), "cycle {cycle}: observer {i} lost U");
        }
    }
}

/// On a presence cache channel the joiner's own member_added (published by the join script)
/// must not cost it the cached event.
#[tokio::test]
async fn presence_cache_joins_on_another_node_get_the_cached_event() {
    let redis = RedisServer::start().await;
    let a = start_with(node_config(&redis)).await;
    let b = start_with(node_config(&redis)).await;
    const CH: &str = "presence-cache-desk";
    let r = trigger(
        a.addr,
        json!({"name": "status", "channel": CH, "data": "open"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut joined = Vec::new();
    for i in 0..10 {
        let (mut ws, sid) = connect(b.addr, "key1").await;
        subscribe_presence(&mut ws, &sid, CH, json!(format!("u{i}")), Value::Null).await;
        // Member events of the others may come first; the cached event must come.
        let mut f = recv(&mut ws).await;
        while f["event"] == "pusher_internal:member_added" {
            f = recv(&mut ws).await;
        }
        assert_eq!(
            f,
            json!({"event": "status", "channel": CH, "data": "open"}),
            "join {i}"
        );
        joined.push(ws);
    }
}
