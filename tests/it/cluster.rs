//! Several herald nodes over a real Redis: clients on any node see what one node would show.

use std::time::Duration;

use herald::config::{AdapterKind, Config};
use serde_json::{json, Value};

use crate::common::*;
use crate::redis_server::{free_port, RedisCluster, RedisServer};
use crate::spawned::Spawned;

pub fn node_config(redis: &RedisServer) -> Config {
    let mut c = config();
    c.adapter = AdapterKind::Redis;
    c.redis.url = redis.url();
    c.redis.heartbeat_ms = 200;
    c.redis.node_timeout_ms = 1000;
    c.apps[0].enable_watchlist_events = true;
    c
}

pub async fn two_nodes(redis: &RedisServer) -> (TestServer, TestServer) {
    (
        start_with(node_config(redis)).await,
        start_with(node_config(redis)).await,
    )
}

#[tokio::test]
async fn broadcasts_cross_nodes_once_and_honour_socket_id() {
    let redis = RedisServer::start().await;
    let (n1, n2) = two_nodes(&redis).await;
    let (mut a, sa) = connect(n1.addr, "key1").await;
    let (mut b, _) = connect(n2.addr, "key1").await;
    let (mut c, _) = connect(n2.addr, "key1").await;
    for ws in [&mut a, &mut b, &mut c] {
        subscribe_public(ws, "hotel-grand").await;
    }
    let body = json!({"name": "clock-status-updated", "channel": "hotel-grand", "data": "{\"staff\":\"ann\"}"});
    let r = api(
        n2.addr,
        "POST",
        "/apps/1/events",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    let want = json!({"event": "clock-status-updated", "channel": "hotel-grand", "data": "{\"staff\":\"ann\"}"});
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(recv(ws).await, want);
    }
    // excluded on the other node
    let body = json!({"name": "e2", "channel": "hotel-grand", "data": "x", "socket_id": sa});
    assert_eq!(
        api(
            n2.addr,
            "POST",
            "/apps/1/events",
            &[],
            body.to_string().as_bytes()
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut b).await["event"], "e2");
    assert_eq!(recv(&mut c).await["event"], "e2");
    // a marker through node 1 proves a got nothing before it (and nothing twice)
    let marker = json!({"name": "marker", "channel": "hotel-grand", "data": "m"});
    assert_eq!(
        api(
            n1.addr,
            "POST",
            "/apps/1/events",
            &[],
            marker.to_string().as_bytes()
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut a).await["event"], "marker");
    for ws in [&mut b, &mut c] {
        assert_eq!(recv(ws).await["event"], "marker");
    }
    assert_nothing_queued(&mut a).await;
}

#[tokio::test]
async fn client_events_and_send_to_user_cross_nodes() {
    let redis = RedisServer::start().await;
    let (n1, n2) = two_nodes(&redis).await;
    let (mut a, sa) = connect(n1.addr, "key1").await;
    let (mut b, sb) = connect(n2.addr, "key1").await;
    subscribe_private(&mut a, &sa, "private-chat").await;
    subscribe_private(&mut b, &sb, "private-chat").await;
    send(
        &mut a,
        json!({"event": "client-typing", "channel": "private-chat", "data": {"t": 1}}),
    )
    .await;
    assert_eq!(
        recv(&mut b).await,
        json!({"event": "client-typing", "channel": "private-chat", "data": "{\"t\":1}"})
    );
    signin(&mut b, &sb, r#"{"id":"bob"}"#).await;
    let body = json!({"name": "notify", "channel": "#server-to-user-bob", "data": "hi"});
    assert_eq!(
        api(
            n1.addr,
            "POST",
            "/apps/1/events",
            &[],
            body.to_string().as_bytes()
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut b).await["event"], "notify");
    // terminate through node 1 closes bob's socket on node 2
    assert_eq!(
        api(
            n1.addr,
            "POST",
            "/apps/1/users/bob/terminate_connections",
            &[],
            b"{}"
        )
        .await
        .status,
        200
    );
    let (_, code, _) = expect_close(&mut b).await;
    assert_eq!(code, 4009);
    assert_nothing_queued(&mut a).await;
}

/// A herald binary on Redis, to be killed with SIGKILL.
pub fn spawn_node(redis: &RedisServer, port: u16) -> Spawned {
    let file = write_config(&format!("node-{port}.toml"), "");
    let toml = format!(
        "adapter = \"redis\"\n[metrics]\nenabled = false\n[server]\nport = {port}\n[redis]\nurl = \"{}\"\nheartbeat_ms = 200\nnode_timeout_ms = 1000\n\
         [[apps]]\nid = \"1\"\nkey = \"key1\"\nsecret = \"secret1\"\nenable_client_messages = true\n",
        redis.url()
    );
    std::fs::write(&file, toml).unwrap();
    crate::spawned::herald(&[], &file)
}

#[tokio::test]
async fn killed_node_members_are_removed_once_within_10s() {
    let redis = RedisServer::start().await;
    let n1 = start_with(node_config(&redis)).await;
    let n3 = start_with(node_config(&redis)).await;
    let port = free_port();
    let mut victim = spawn_node(&redis, port);
    let addr = wait_listening(port).await;
    let ch = "presence-shift";
    let (mut w1, s1) = connect(n1.addr, "key1").await;
    subscribe_presence(&mut w1, &s1, ch, json!("w1"), Value::Null).await;
    let (mut w3, s3) = connect(n3.addr, "key1").await;
    subscribe_presence(&mut w3, &s3, ch, json!("w3"), Value::Null).await;
    assert_eq!(recv(&mut w1).await["event"], "pusher_internal:member_added");
    let (mut v, sv) = connect(addr, "key1").await;
    subscribe_presence(&mut v, &sv, ch, json!("doomed"), Value::Null).await;
    for ws in [&mut w1, &mut w3] {
        assert_eq!(data_of(&recv(ws).await)["user_id"], "doomed");
    }
    victim.child().kill().unwrap();
    victim.child().wait().unwrap();
    let started = std::time::Instant::now();
    for ws in [&mut w1, &mut w3] {
        let f = tokio::time::timeout(Duration::from_secs(10), recv(ws))
            .await
            .expect("member_removed within 10 s");
        assert_eq!(
            f,
            json!({"event": "pusher_internal:member_removed", "channel": ch, "data": "{\"user_id\":\"doomed\"}"})
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // exactly once: nothing else follows on either survivor
    assert_nothing_queued(&mut w1).await;
    assert_nothing_queued(&mut w3).await;
    let r = api(
        n1.addr,
        "GET",
        &format!("/apps/1/channels/{ch}"),
        &[("info", "user_count")],
        b"",
    )
    .await;
    assert_eq!(r.body["user_count"], 2);
}

#[tokio::test]
async fn redis_outage_keeps_local_delivery_and_recovers() {
    let mut redis = RedisServer::start().await;
    let (n1, n2) = two_nodes(&redis).await;
    let (mut a, _) = connect(n1.addr, "key1").await;
    let (mut local, _) = connect(n1.addr, "key1").await;
    let (mut b, _) = connect(n2.addr, "key1").await;
    for ws in [&mut a, &mut local, &mut b] {
        subscribe_public(ws, "ops").await;
    }
    redis.kill();
    // local delivery on node 1 keeps working
    let r = trigger(
        n1.addr,
        json!({"name": "during", "channel": "ops", "data": "x"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(recv(&mut a).await["event"], "during");
    assert_eq!(recv(&mut local).await["event"], "during");
    // queries that need the cluster say so, and the node reports itself not ready
    let r = api(n1.addr, "GET", "/apps/1/channels", &[], b"").await;
    assert_eq!(r.status, 503);
    let r = request(n1.addr, "GET", "/ready", b"", &[]).await;
    assert_eq!(
        (r.status, r.body["adapter"].as_str()),
        (503, Some("unreachable")),
        "{}",
        r.raw
    );
    redis.restart().await;
    // delivery across nodes resumes: retry a marker until node 2's subscriber sees one
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cross-node delivery did not resume"
        );
        let r = trigger(
            n1.addr,
            json!({"name": "after", "channel": "ops", "data": "y"}),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(recv(&mut a).await["event"], "after");
        assert_eq!(recv(&mut local).await["event"], "after");
        if let Ok(f) = tokio::time::timeout(Duration::from_millis(300), recv(&mut b)).await {
            assert_eq!(f["event"], "after");
            break;
        }
    }
    assert_eq!(
        request(n1.addr, "GET", "/ready", b"", &[]).await.status,
        200
    );
    // the rewritten state counts every socket again
    let want = json!({"occupied": true, "subscription_count": 3});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = api(
            n2.addr,
            "GET",
            "/apps/1/channels/ops",
            &[("info", "subscription_count")],
            b"",
        )
        .await;
        if r.body == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "state not rewritten: {}",
            r.raw
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_cluster_of_three_masters() {
    let cluster = RedisCluster::start().await;
    let mut c = config();
    c.adapter = AdapterKind::Redis;
    c.redis.cluster = cluster.seeds();
    c.redis.heartbeat_ms = 200;
    c.redis.node_timeout_ms = 1000;
    let n1 = start_with(c.clone()).await;
    let n2 = start_with(c).await;
    let mut subs = Vec::new();
    // channels spread over the shards
    for (i, n) in [&n1, &n2, &n1, &n2].into_iter().enumerate() {
        let (mut ws, _) = connect(n.addr, "key1").await;
        subscribe_public(&mut ws, &format!("room-{i}")).await;
        subs.push(ws);
    }
    for i in 0..4 {
        let body = json!({"name": "e", "channel": format!("room-{i}"), "data": i.to_string()});
        assert_eq!(
            api(
                n1.addr,
                "POST",
                "/apps/1/events",
                &[],
                body.to_string().as_bytes()
            )
            .await
            .status,
            200
        );
    }
    for (i, ws) in subs.iter_mut().enumerate() {
        assert_eq!(recv(ws).await["data"], i.to_string());
    }
    // One batch request queues publishes for channels on different shards at once: the node
    // must not pipeline them to one shard.
    let batch: Vec<Value> = (0..4)
        .map(|i| json!({"channel": format!("room-{i}"), "name": "b", "data": format!("b{i}")}))
        .collect();
    let body = json!({"batch": batch}).to_string();
    assert_eq!(
        api(
            n1.addr,
            "POST",
            "/apps/1/batch_events",
            &[],
            body.as_bytes()
        )
        .await
        .status,
        200
    );
    for (i, ws) in subs.iter_mut().enumerate() {
        assert_eq!(recv(ws).await["data"], format!("b{i}"));
    }
    let ch = "presence-c";
    let (mut a, sa) = connect(n1.addr, "key1").await;
    subscribe_presence(&mut a, &sa, ch, json!("a"), Value::Null).await;
    let (mut b, sb) = connect(n2.addr, "key1").await;
    let p = subscribe_presence(&mut b, &sb, ch, json!("b"), Value::Null).await;
    assert_eq!(p["count"], 2);
    assert_eq!(data_of(&recv(&mut a).await)["user_id"], "b");
    let r = api(n2.addr, "GET", "/apps/1/channels", &[], b"").await;
    assert_eq!(
        r.body["channels"].as_object().unwrap().len(),
        5,
        "{}",
        r.raw
    );
}

#[tokio::test]
async fn dashboard_shows_cluster_counts_and_publishes_across_nodes() {
    let redis = RedisServer::start().await;
    let mut c1 = node_config(&redis);
    c1.dashboard.enabled = true;
    c1.dashboard.port = 0;
    c1.dashboard.password = "pw-test".into();
    let n1 = start_with(c1).await;
    let n2 = start_with(node_config(&redis)).await;
    let dash = n1.server.dashboard_addr().unwrap();
    let auth = [("authorization", "Basic YWRtaW46cHctdGVzdA==")];
    // a client on node 2 only
    let (mut b, _) = connect(n2.addr, "key1").await;
    subscribe_public(&mut b, "floor").await;
    let channels = request(dash, "GET", "/api/apps/1/channels", b"", &auth).await;
    assert_eq!(
        channels.body,
        json!({"channels": [{"name": "floor", "subscription_count": 1, "user_count": null}]})
    );
    // connection counts come from every node's heartbeat (200 ms here)
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = request(dash, "GET", "/api/apps/1/stats", b"", &auth).await;
        if stats.body["connections"] == 1 && stats.body["channels"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cluster counts not shown: {}",
            stats.raw
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // node 1's log: its own events, labelled with its node id
    let node1 = request(dash, "GET", "/api/apps", b"", &auth).await.body["node"]
        .as_u64()
        .unwrap();
    let mut sse = tokio::net::TcpStream::connect(dash).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let head = "GET /api/apps/1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46cHctdGVzdA==\r\n\r\n";
        sse.write_all(head.as_bytes()).await.unwrap();
    }
    let mut seen = String::new();
    crate::dashboard::read_until(&mut sse, &mut seen, "text/event-stream").await;
    // the form on node 1 reaches the subscriber on node 2
    let form = json!({"channel": "floor", "event": "announce", "data": "from node 1"});
    let r = request(
        dash,
        "POST",
        "/api/apps/1/events",
        form.to_string().as_bytes(),
        &auth,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        recv(&mut b).await,
        json!({"event": "announce", "channel": "floor", "data": "from node 1"})
    );
    crate::dashboard::read_until(&mut sse, &mut seen, "\"kind\":\"api_message\"").await;
    assert!(seen.contains(&format!("\"node\":{node1}")), "{seen}");
}
