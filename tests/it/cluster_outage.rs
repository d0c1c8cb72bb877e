//! Redis outages: local delivery and new channels go on, events accepted meanwhile reach the
//! other nodes afterwards, a long outage with data kept reaps nobody, a node started before its
//! Redis joins when it appears.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::node_config;
use crate::cluster_faults::{ready, settle_on};
use crate::common::*;
use crate::redis_server::RedisServer;

/// A TCP relay to Redis whose gate the test opens and closes: while closed, new connections are
/// dropped at once (as when a node's network is cut), so one node can come back later than
/// another. `cut` also drops the connections open through it.
pub struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
}

impl Gate {
    pub async fn to(redis: &RedisServer) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, cut_rx) = tokio::sync::watch::channel(0u64);
        let target = redis.port;
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::Relaxed) {
                    continue;
                }
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    }
                });
            }
        });
        Gate { port, open, cuts }
    }

    /// Closes the gate and drops every connection open through it.
    pub fn cut(&self) {
        self.open.store(false, Ordering::Relaxed);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Lets connections through again.
    pub fn reopen(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// A TCP relay to Redis that holds what the node sends for `delay` before passing it on (what
/// Redis sends back goes straight through): a slow link from one node to Redis.
pub async fn slow_link(redis: &RedisServer, delay: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = redis.port;
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    return;
                };
                let (mut from_node, mut to_node) = inbound.into_split();
                let (mut from_redis, mut to_redis) = outbound.into_split();
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = from_node.read(&mut buf).await {
                        let due = tokio::time::Instant::now() + delay;
                        if tx.send((due, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some((due, bytes)) = rx.recv().await {
                        tokio::time::sleep_until(due).await;
                        if to_redis.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
                let _ = tokio::io::copy(&mut from_redis, &mut to_node).await;
            });
        }
    });
    format!("redis://127.0.0.1:{port}/0")
}

/// Item 3: Redis comes back with its data after more than a node timeout, and node B reaches
/// it later than node A (its network is cut for 500 ms more, then its reconnect backoff of up to
/// 2 s). Every heartbeat score is then old, but A may not reap B, which is alive: no
/// member_removed reaches anyone.
#[tokio::test]
async fn a_long_outage_with_data_kept_reaps_nobody() {
    let mut redis = RedisServer::start().await;
    let gate = Gate::to(&redis).await;
    // A node timeout longer than B's worst reconnect delay after the gate opens.
    let timeout = Duration::from_millis(3000);
    let mut ca = node_config(&redis);
    ca.redis.node_timeout_ms = 3000;
    let a = start_with(ca).await;
    let mut cb = node_config(&redis);
    cb.redis.node_timeout_ms = 3000;
    cb.redis.url = gate.url();
    let b = start_with(cb).await;
    const CH: &str = "presence-long-outage";
    let (mut w, sw) = connect(a.addr, "key1").await;
    subscribe_presence(&mut w, &sw, CH, json!("w"), Value::Null).await;
    let (mut o, so) = connect(b.addr, "key1").await;
    subscribe_presence(&mut o, &so, CH, json!("O"), Value::Null).await;
    assert_eq!(data_of(&recv(&mut w).await)["user_id"], "O");

    // Redis stays away longer than the node timeout; B gets through 500 ms after A can.
    gate.open.store(false, Ordering::Relaxed);
    redis
        .restart_keeping_data(timeout + Duration::from_millis(500))
        .await;
    ready(a.addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    gate.open.store(true, Ordering::Relaxed);
    ready(b.addr).await;
    settle_on(&[a.addr, b.addr], CH, &["O", "w"]).await;
    // Long enough for a wrongful reap (one node timeout plus two heartbeats) to show.
    tokio::time::sleep(timeout + Duration::from_millis(400)).await;
    settle_on(&[a.addr, b.addr], CH, &["O", "w"]).await;
    assert_nothing_queued(&mut w).await;
    assert_nothing_queued(&mut o).await;
}

/// While Redis is away, new channels are joined at once and local delivery reaches them.
#[tokio::test]
async fn new_channels_work_locally_while_redis_is_away() {
    let mut redis = RedisServer::start().await;
    let n = start_with(node_config(&redis)).await;
    let (mut a, _) = connect(n.addr, "key1").await;
    subscribe_public(&mut a, "before").await;
    redis.kill();
    // The node notices within a heartbeat or two.
    let deadline = tokio::time::Instant::now() + WAIT;
    while request(n.addr, "GET", "/ready", b"", &[]).await.status != 503 {
        assert!(tokio::time::Instant::now() < deadline, "outage not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..5 {
        let ch = format!("during-{i}");
        subscribe_public(&mut a, &ch).await;
        let r = trigger(n.addr, json!({"name": "e", "channel": ch, "data": "x"})).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            recv(&mut a).await,
            json!({"event": "e", "channel": ch, "data": "x"})
        );
    }
}

/// Issue 20 item 9: a node started while its Redis is not up yet keeps running and serving its
/// own sockets, answers /ready with 503, and joins once Redis appears: its sockets are then
/// counted cluster-wide and events cross to a second node.
#[tokio::test]
async fn a_node_started_before_redis_joins_when_it_appears() {
    let port = crate::redis_server::free_port();
    let mut c = config();
    c.adapter = herald::config::AdapterKind::Redis;
    c.redis.url = format!("redis://127.0.0.1:{port}/0");
    c.redis.heartbeat_ms = 200;
    c.redis.node_timeout_ms = 1000;
    let early = start_with(c.clone()).await;
    let r = request(early.addr, "GET", "/ready", b"", &[]).await;
    assert_eq!(
        (r.status, r.body["adapter"].as_str()),
        (503, Some("unreachable")),
        "{}",
        r.raw
    );
    // Its own sockets work meanwhile.
    let (mut a, _) = connect(early.addr, "key1").await;
    subscribe_public(&mut a, "early").await;
    let r = trigger(
        early.addr,
        json!({"name": "local", "channel": "early", "data": "1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(recv(&mut a).await["event"], "local");

    let _redis = RedisServer::start_with(port, &[]).await;
    ready(early.addr).await;
    let late = start_with(c).await;
    // The early node's socket is recorded once it joined.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = api(
            late.addr,
            "GET",
            "/apps/1/channels/early",
            &[("info", "subscription_count")],
            b"",
        )
        .await;
        if r.body == json!({"occupied": true, "subscription_count": 1}) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not recorded: {}",
            r.raw
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = trigger(
        late.addr,
        json!({"name": "crossed", "channel": "early", "data": "2"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        recv(&mut a).await,
        json!({"event": "crossed", "channel": "early", "data": "2"})
    );
}

/// Issue 15 item 2: events triggered on node A while Redis is away reach A's subscribers at
/// once and B's subscribers once Redis is back (after every node had time to resubscribe), in
/// order and before anything newer; none is dropped.
#[tokio::test]
async fn events_accepted_during_an_outage_reach_the_other_node_in_order() {
    let mut redis = RedisServer::start().await;
    let a = start_with(node_config(&redis)).await;
    let b = start_with(node_config(&redis)).await;
    let (mut here, _) = connect(a.addr, "key1").await;
    let (mut there, _) = connect(b.addr, "key1").await;
    subscribe_public(&mut here, "ops").await;
    subscribe_public(&mut there, "ops").await;
    redis.kill();
    let deadline = tokio::time::Instant::now() + WAIT;
    while request(a.addr, "GET", "/ready", b"", &[]).await.status != 503 {
        assert!(tokio::time::Instant::now() < deadline, "outage not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 1..=3 {
        let r = trigger(
            a.addr,
            json!({"name": "during", "channel": "ops", "data": i.to_string()}),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(recv(&mut here).await["data"], i.to_string());
    }
    // Away for 3 s, longer than a command may wait for its answer (2 s): nothing sent meanwhile can
    // still get through on a reconnect.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    redis.restart().await;
    ready(a.addr).await;
    let r = trigger(
        a.addr,
        json!({"name": "after", "channel": "ops", "data": "4"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(recv(&mut here).await["data"], "4");
    for want in ["1", "2", "3", "4"] {
        let f = tokio::time::timeout(Duration::from_secs(10), recv(&mut there))
            .await
            .expect("the held events arrive");
        assert_eq!(f["data"], want, "{f}");
    }
    assert_eq!(a.server.state().adapter.publish_stats().2, 0);
}

/// A departure held back while the cluster settles (Redis came back empty) is still announced
/// when its node shuts down inside the settling window: the node waits the window out and
/// checks it then. The other node's reaper cannot announce it: the leave already took the
/// member out of the node's share in Redis.
#[tokio::test]
async fn a_departure_held_while_settling_is_announced_at_shutdown() {
    let mut redis = RedisServer::start().await;
    let mut ca = node_config(&redis);
    // A's settling window after Redis comes back: long enough for the steps below.
    // (The wait below for the announcement, `recv`'s 5 s, outlasts what is left of it.)
    ca.redis.node_timeout_ms = 4000;
    let a = start_with(ca).await;
    let b = start_with(node_config(&redis)).await;
    const CH: &str = "presence-held-at-shutdown";
    let (mut w, sw) = connect(b.addr, "key1").await;
    subscribe_presence(&mut w, &sw, CH, json!("w"), Value::Null).await;
    let (mut u, su) = connect(a.addr, "key1").await;
    subscribe_presence(&mut u, &su, CH, json!("U"), Value::Null).await;
    assert_eq!(data_of(&recv(&mut w).await)["user_id"], "U");

    redis.restart().await;
    ready(a.addr).await;
    ready(b.addr).await;
    settle_on(&[a.addr, b.addr], CH, &["U", "w"]).await;
    // U leaves inside A's window: Redis no longer lists U, but nobody is told yet.
    u.close(None).await.unwrap();
    settle_on(&[b.addr], CH, &["w"]).await;
    assert_nothing_queued(&mut w).await;

    let shutdown = tokio::spawn(a.server.shutdown());
    // member_removed arrives once A's window is over.
    let f = recv(&mut w).await;
    assert_eq!(
        (f["event"].as_str(), f["channel"].as_str()),
        (Some("pusher_internal:member_removed"), Some(CH)),
        "{f}"
    );
    assert_eq!(data_of(&f)["user_id"], "U");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("A shuts down after announcing")
        .unwrap();
    assert_nothing_queued(&mut w).await;
}

/// `pusher:signin_success` means the socket's own user channel is joined, across the cluster:
/// a `sendToUser` the backend makes through another node as soon as the client sees it
/// arrives, even when the signing-in node's link to Redis is slow (300 ms). Before, the reply
/// went out before the join, and such an event was lost.
#[tokio::test]
async fn send_to_user_right_after_signin_reaches_the_socket_across_nodes() {
    let redis = RedisServer::start().await;
    let a = start_with(node_config(&redis)).await;
    let mut cb = node_config(&redis);
    cb.redis.url = slow_link(&redis, Duration::from_millis(300)).await;
    // Heartbeats through the slow link must not make B look dead.
    cb.redis.node_timeout_ms = 3000;
    let b = start_with(cb).await;
    ready(b.addr).await;
    let (mut u, su) = connect(b.addr, "key1").await;
    signin(&mut u, &su, r#"{"id":"quick"}"#).await;
    let body = json!({"name": "hello", "channel": "#server-to-user-quick", "data": "now"});
    let r = api(
        a.addr,
        "POST",
        "/apps/1/events",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        recv(&mut u).await,
        json!({"event": "hello", "channel": "#server-to-user-quick", "data": "now"})
    );
    assert_nothing_queued(&mut u).await;
}
