//! A node's own Redis connection drops while Redis stays up for the others: what the other
//! nodes publish meanwhile reaches its subscribers afterwards from the channel logs, once and
//! in order; a drop longer than the log's window is counted, not silent.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::node_config;
use crate::cluster_faults::ready;
use crate::cluster_outage::Gate;
use crate::common::*;
use crate::redis_server::RedisServer;

/// Node A reaches Redis through a gate the test cuts; node B directly. The node timeout is
/// longer than the cut, so nobody is reaped.
async fn nodes(redis: &RedisServer, gate: &Gate, replay_ms: u64) -> (TestServer, TestServer) {
    let mut c = node_config(redis);
    c.redis.node_timeout_ms = 10_000;
    c.redis.replay_ms = replay_ms;
    let mut through_gate = c.clone();
    through_gate.redis.url = gate.url();
    (start_with(through_gate).await, start_with(c).await)
}

/// Cuts A off and waits until it noticed (its heartbeat failed: not ready).
async fn cut_off(gate: &Gate, a: &TestServer) {
    gate.cut();
    let deadline = tokio::time::Instant::now() + WAIT;
    while request(a.addr, "GET", "/ready", b"", &[]).await.status != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cut went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn trigger_on(node: &TestServer, name: &str, data: &str) {
    let r = trigger(
        node.addr,
        json!({"name": name, "channel": "ops", "data": data}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn next(ws: &mut Ws) -> Value {
    tokio::time::timeout(Duration::from_secs(10), recv(ws))
        .await
        .expect("a frame arrives")
}

#[tokio::test]
async fn what_others_published_while_a_nodes_connection_was_down_arrives_once_in_order() {
    let redis = RedisServer::start().await;
    let gate = Gate::to(&redis).await;
    let (a, b) = nodes(&redis, &gate, 10_000).await;
    let (mut here, here_id) = connect(a.addr, "key1").await;
    let (mut there, _) = connect(b.addr, "key1").await;
    subscribe_public(&mut here, "ops").await;
    subscribe_presence(&mut here, &here_id, "presence-room", json!("a"), json!({})).await;
    subscribe_public(&mut there, "ops").await;
    trigger_on(&b, "before", "0").await;
    assert_eq!(next(&mut here).await["data"], "0");
    assert_eq!(next(&mut there).await["data"], "0");

    cut_off(&gate, &a).await;
    for i in 1..=3 {
        trigger_on(&b, "during", &i.to_string()).await;
        assert_eq!(next(&mut there).await["data"], i.to_string());
    }
    // A member joins on B: its member_added is published by B's JOIN script.
    let (mut joiner, joiner_id) = connect(b.addr, "key1").await;
    subscribe_presence(
        &mut joiner,
        &joiner_id,
        "presence-room",
        json!("b"),
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gate.reopen();
    ready(a.addr).await;

    let mut ops = Vec::new();
    let mut members = Vec::new();
    while ops.len() < 3 || members.is_empty() {
        let f = next(&mut here).await;
        match f["event"].as_str() {
            Some("during") => ops.push(f["data"].as_str().unwrap_or_default().to_string()),
            Some("pusher_internal:member_added") => members.push(data_of(&f)["user_id"].clone()),
            _ => panic!("unexpected frame {f}"),
        }
    }
    assert_eq!(ops, ["1", "2", "3"]);
    assert_eq!(members, [json!("b")]);
    // Nothing is delivered twice: the next frame is the next event.
    trigger_on(&b, "after", "4").await;
    let f = next(&mut here).await;
    assert_eq!(
        (f["event"].clone(), f["data"].clone()),
        (json!("after"), json!("4"))
    );
    let (replayed, gaps) = a.server.state().adapter.replay_stats();
    assert!(replayed >= 4, "replayed {replayed}");
    assert_eq!(gaps, 0);
}

#[tokio::test]
async fn a_drop_longer_than_the_log_is_counted() {
    let redis = RedisServer::start().await;
    let gate = Gate::to(&redis).await;
    let (a, b) = nodes(&redis, &gate, 300).await;
    let (mut here, _) = connect(a.addr, "key1").await;
    subscribe_public(&mut here, "ops").await;
    // B has no subscriber of its own: it publishes for A's.
    trigger_on(&b, "before", "0").await;
    assert_eq!(next(&mut here).await["data"], "0");
    cut_off(&gate, &a).await;
    trigger_on(&b, "during", "1").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    gate.reopen();
    ready(a.addr).await;
    eventually("the gap is counted", || {
        a.server.state().adapter.replay_stats().1 >= 1
    })
    .await;
    let text = request(
        a.server.metrics_addr().expect("metrics listener"),
        "GET",
        "/metrics",
        b"",
        &[],
    )
    .await
    .raw;
    assert!(
        text.lines()
            .any(|l| l.starts_with("herald_adapter_replay_gaps_total ") && !l.ends_with(" 0")),
        "{text}"
    );
}
