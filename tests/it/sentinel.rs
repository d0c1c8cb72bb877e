//! Redis Sentinel: nodes find the master through a sentinel and follow a failover.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::node_config;
use crate::cluster_faults::settle_on;
use crate::common::*;
use crate::redis_server::RedisServer;

/// Issue 15 (Sentinel): a master, a replica and a sentinel; two nodes find the master through
/// the sentinel. The master is killed under traffic: the sentinel promotes the replica, both
/// nodes follow it, cross-node delivery resumes and the presence state is rewritten. The gap
/// (from the kill to the first cross-node event) is printed.
#[tokio::test]
async fn nodes_follow_a_sentinel_failover() {
    use crate::redis_server::Sentinel;
    let mut master = RedisServer::start().await;
    let replica_of = master.port.to_string();
    let replica = RedisServer::start_with(
        crate::redis_server::free_port(),
        &["--replicaof", "127.0.0.1", &replica_of],
    )
    .await;
    let mut rc = replica.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut rc)
            .await
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica never synced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sentinel = Sentinel::start(master.port).await;
    let mut sc = redis::Client::open(sentinel.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
            .arg("replicas")
            .arg("mymaster")
            .query_async(&mut sc)
            .await
            .unwrap_or_default();
        if !replicas.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sentinel never saw the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mk = || {
        let mut c = node_config(&master);
        c.redis.sentinel = vec![sentinel.url()];
        c.redis.url = "redis://127.0.0.1:1/0".into(); // only its password and db are used
        c
    };
    let n1 = start_with(mk()).await;
    let n2 = start_with(mk()).await;
    const CH: &str = "presence-failover";
    let (mut ann, sa) = connect(n1.addr, "key1").await;
    subscribe_presence(&mut ann, &sa, CH, json!("ann"), Value::Null).await;
    let (mut bob, sb) = connect(n2.addr, "key1").await;
    subscribe_presence(&mut bob, &sb, CH, json!("bob"), Value::Null).await;
    assert_eq!(data_of(&recv(&mut ann).await)["user_id"], "bob");
    settle_on(&[n1.addr, n2.addr], CH, &["ann", "bob"]).await;

    master.kill();
    let killed = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    let gap = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failover within 30 s"
        );
        i += 1;
        let r = trigger(
            n1.addr,
            json!({"name": "tick", "channel": CH, "data": i.to_string()}),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(recv(&mut ann).await["data"], i.to_string());
        match tokio::time::timeout(Duration::from_millis(200), recv(&mut bob)).await {
            Ok(f) if f["event"] == "tick" => break killed.elapsed(),
            Ok(f) => panic!("unexpected {f}"),
            Err(_) => {}
        }
    };
    eprintln!("sentinel failover: cross-node delivery resumed {gap:?} after the master was killed");
    // The promoted replica holds the rewritten presence state, on both nodes' view.
    settle_on(&[n1.addr, n2.addr], CH, &["ann", "bob"]).await;
    drop(bob);
    let f = recv(&mut ann).await;
    // Events held or sent during the failover may come first; the removal follows them.
    let mut f = f;
    while f["event"] == "tick" {
        f = recv(&mut ann).await;
    }
    assert_eq!(
        f,
        json!({"event": "pusher_internal:member_removed", "channel": CH, "data": "{\"user_id\":\"bob\"}"})
    );
}
