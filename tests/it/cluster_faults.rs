//! The cluster through Redis restarts (with and without its data), long outages and presence
//! flapping: member lists, counts and webhooks stay exact, nothing spurious reaches a client,
//! and a node goes back to its idle command rate (issue 19, items 1–3).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::node_config;
use crate::common::*;
use crate::redis_server::RedisServer;
use crate::webhook_receiver::Receiver;

/// Every text frame a socket received; aborting the task closes the socket.
struct Recorded {
    frames: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Records every text frame a socket receives.
fn record(mut ws: Ws) -> Recorded {
    let frames = Arc::new(Mutex::new(Vec::new()));
    let out = frames.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                    out.lock().unwrap().push(v);
                }
            }
        }
    });
    Recorded { frames, task }
}

fn removals_of(r: &Recorded, user: &str) -> usize {
    r.frames
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f["event"] == "pusher_internal:member_removed" && data_of(f)["user_id"] == user)
        .count()
}

/// Presence users and user_count of a channel as one node's REST API answers them.
async fn members(addr: std::net::SocketAddr, ch: &str) -> Option<(Vec<String>, Value)> {
    let r = api(
        addr,
        "GET",
        &format!("/apps/1/channels/{ch}/users"),
        &[],
        b"",
    )
    .await;
    if r.status != 200 {
        return None;
    }
    let mut ids: Vec<String> = r.body["users"]
        .as_array()?
        .iter()
        .filter_map(|u| u["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    let info = api(
        addr,
        "GET",
        &format!("/apps/1/channels/{ch}"),
        &[("info", "user_count")],
        b"",
    )
    .await;
    Some((ids, info.body["user_count"].clone()))
}

/// Waits (bounded) until every node answers exactly these members.
async fn settle_on(nodes: &[std::net::SocketAddr], ch: &str, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    'outer: loop {
        for n in nodes {
            let got = members(*n, ch).await;
            let ok = got.as_ref().is_some_and(|(ids, count)| {
                ids.iter().map(String::as_str).eq(want.iter().copied())
                    && *count == json!(want.len())
            });
            if !ok {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {n} never settled on {want:?}: {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'outer;
            }
        }
        return;
    }
}

/// Subscribes and unsubscribes one socket as `user` over and over until `stop`.
fn flap(
    addr: std::net::SocketAddr,
    ch: &'static str,
    user: &'static str,
    stop: Arc<AtomicBool>,
    cycles: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut ws, sid) = connect(addr, "key1").await;
        let data = json!({"user_id": user, "user_info": null}).to_string();
        let auth = presence_auth("key1", "secret1", &sid, ch, &data);
        while !stop.load(Ordering::Relaxed) {
            send(&mut ws, json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel_data": data, "channel": ch}})).await;
            loop {
                let f = recv(&mut ws).await;
                if f["event"] == "pusher_internal:subscription_succeeded" {
                    break;
                }
            }
            send(
                &mut ws,
                json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}),
            )
            .await;
            send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
            while recv(&mut ws).await["event"] != "pusher:pong" {}
            cycles.fetch_add(1, Ordering::Relaxed);
        }
    })
}

async fn wait_cycles(cycles: &AtomicUsize, more: usize) {
    let target = cycles.load(Ordering::Relaxed) + more;
    eventually("more flapping cycles", || {
        cycles.load(Ordering::Relaxed) >= target
    })
    .await;
}

async fn ready(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while request(addr, "GET", "/ready", b"", &[]).await.status != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} not ready again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Item 2 and the acceptance test: user U keeps one socket on node A while a second
/// socket as U joins and leaves on node B without pause, through a Redis restart that loses
/// everything and one that keeps it. Nobody may ever see U removed, and afterwards every node
/// agrees on the members, the count and the webhooks.
#[tokio::test]
async fn presence_flapping_through_redis_restarts_stays_exact() {
    let mut redis = RedisServer::start().await;
    let mut hooks = Receiver::start().await;
    let mk = |redis: &RedisServer| {
        let mut c = node_config(redis);
        c.apps[0].webhooks = vec![herald::config::WebhookConfig {
            url: hooks.url(),
            events: vec!["member_added".into(), "member_removed".into()],
            channel_prefix: String::new(),
            headers: Default::default(),
            batch_ms: 0,
            batch_max: 100,
        }];
        c.webhooks.grace_ms = 100;
        c
    };
    let a = start_with(mk(&redis)).await;
    let b = start_with(mk(&redis)).await;
    const CH: &str = "presence-flap";
    let (mut u, su) = connect(a.addr, "key1").await;
    subscribe_presence(&mut u, &su, CH, json!("U"), Value::Null).await;
    let (mut x, sx) = connect(a.addr, "key1").await;
    subscribe_presence(&mut x, &sx, CH, json!("x"), Value::Null).await;
    let (mut y, sy) = connect(b.addr, "key1").await;
    subscribe_presence(&mut y, &sy, CH, json!("y"), Value::Null).await;
    let watchers = [record(u), record(x), record(y)];

    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicUsize::new(0));
    let flapper = flap(b.addr, CH, "U", stop.clone(), cycles.clone());
    wait_cycles(&cycles, 50).await;

    // Redis restarts empty: both nodes rewrite their shares while U flaps.
    redis.restart().await;
    ready(a.addr).await;
    ready(b.addr).await;
    wait_cycles(&cycles, 100).await;
    settle_on(&[a.addr, b.addr], CH, &["U", "x", "y"]).await;

    // Redis restarts with its data (SAVE, away for 300 ms, back).
    redis.restart_keeping_data(Duration::from_millis(300)).await;
    ready(a.addr).await;
    ready(b.addr).await;
    wait_cycles(&cycles, 100).await;

    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), flapper)
        .await
        .expect("flapper stops")
        .unwrap();
    settle_on(&[a.addr, b.addr], CH, &["U", "x", "y"]).await;
    for (i, w) in watchers.iter().enumerate() {
        assert_eq!(
            removals_of(w, "U"),
            0,
            "watcher {i} saw U removed: {:?}",
            w.frames.lock().unwrap()
        );
    }
    let mut hooked = Vec::new();
    while let Some(h) = hooks.try_next() {
        hooked.extend(h.events());
    }
    let removed_u = json!({"name": "member_removed", "channel": CH, "user_id": "U"});
    assert!(!hooked.contains(&removed_u), "{hooked:?}");

    // U's last socket goes (with x's and y's): exactly one member_removed each, to the
    // remaining member and as webhooks.
    let (mut z, sz) = connect(b.addr, "key1").await;
    subscribe_presence(&mut z, &sz, CH, json!("z"), Value::Null).await;
    assert_eq!(
        hooks.next_event().await,
        json!({"name": "member_added", "channel": CH, "user_id": "z"})
    );
    for w in &watchers {
        w.task.abort();
    }
    settle_on(&[a.addr, b.addr], CH, &["z"]).await;
    let mut gone = Vec::new();
    for _ in 0..3 {
        let f = recv(&mut z).await;
        assert_eq!(f["event"], "pusher_internal:member_removed", "{f}");
        gone.push(data_of(&f)["user_id"].as_str().unwrap().to_string());
    }
    gone.sort();
    assert_eq!(gone, ["U", "x", "y"]);
    assert_nothing_queued(&mut z).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(hooks.next_event().await);
    }
    seen.sort_by_key(|v| v["user_id"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        seen,
        vec![
            removed_u,
            json!({"name": "member_removed", "channel": CH, "user_id": "x"}),
            json!({"name": "member_removed", "channel": CH, "user_id": "y"}),
        ]
    );
}

/// A TCP relay to Redis whose gate the test opens and closes: while closed, new connections are
/// dropped at once (as when a node's network is cut), so one node can come back later than
/// another.
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Gate {
    async fn to(redis: &RedisServer) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let target = redis.port;
        let gate = open.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::Relaxed) {
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate { port, open }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
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

/// Total commands Redis executed over a window, without the test's own INFO / CONFIG calls.
async fn commands_during(redis: &RedisServer, window: Duration) -> u64 {
    let mut c = redis.client().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .unwrap();
    tokio::time::sleep(window).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .filter(|l| !l.starts_with("cmdstat_info:") && !l.starts_with("cmdstat_config|"))
        .filter_map(|l| {
            let calls = l.split("calls=").nth(1)?;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Item 1: after a Redis restart the node rewrites its share once and goes back to its idle
/// rate; it must not resync on every heartbeat from then on.
#[tokio::test]
async fn command_rate_returns_to_idle_after_a_redis_restart() {
    let mut redis = RedisServer::start().await;
    let n = start_with(node_config(&redis)).await;
    let (mut p, sp) = connect(n.addr, "key1").await;
    subscribe_presence(&mut p, &sp, "presence-idle", json!("p"), Value::Null).await;
    let (mut q, _) = connect(n.addr, "key1").await;
    subscribe_public(&mut q, "idle").await;
    let window = Duration::from_secs(2);
    let before = commands_during(&redis, window).await;

    redis.restart().await;
    ready(n.addr).await;
    settle_on(&[n.addr], "presence-idle", &["p"]).await;
    // One more node timeout for the resync and its aftermath to finish.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = commands_during(&redis, window).await;
    // heartbeat_ms is 200: about 10 heartbeats per window, a few commands each.
    assert!(
        after <= before + before / 2 + 4,
        "{after} commands in {window:?} after the restart against {before} before"
    );
    assert_nothing_queued(&mut p).await;
    assert_nothing_queued(&mut q).await;
}

/// A killed node's per-node keys (its share and its connection counts) go with it.
#[tokio::test]
async fn a_reaped_node_leaves_no_keys_behind() {
    let redis = RedisServer::start().await;
    let survivor = start_with(node_config(&redis)).await;
    let port = crate::redis_server::free_port();
    let mut victim = crate::cluster::spawn_node(&redis, port);
    let addr = wait_listening(port).await;
    let (mut v, _) = connect(addr, "key1").await;
    subscribe_public(&mut v, "doomed").await;
    let (mut s, _) = connect(survivor.addr, "key1").await;
    subscribe_public(&mut s, "kept").await;
    let mut c = redis.client().await;
    let node_keys = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            let mut keys: Vec<String> = redis::cmd("KEYS")
                .arg("{herald}:node:*")
                .query_async(&mut c)
                .await
                .unwrap();
            // The `reaped` mark stays an hour, for a node that was reaped while alive.
            keys.retain(|k| !k.ends_with(":reaped"));
            keys.sort();
            keys
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while node_keys(&mut c)
        .await
        .iter()
        .filter(|k| k.ends_with(":conns"))
        .count()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "counts not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.child().kill().unwrap();
    victim.child().wait().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let keys = node_keys(&mut c).await;
        let nodes: std::collections::BTreeSet<&str> =
            keys.iter().filter_map(|k| k.split(':').nth(2)).collect();
        if nodes.len() == 1 {
            let conns: Vec<&String> = keys.iter().filter(|k| k.ends_with(":conns")).collect();
            assert_eq!(conns.len(), 1, "{keys:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead node's keys remain: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = api(survivor.addr, "GET", "/apps/1/channels", &[], b"").await;
    assert_eq!(r.body, json!({"channels": {"kept": {}}}));
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
    // Away longer than a command may wait for its answer (2 s): nothing sent meanwhile can
    // still get through on a reconnect.
    tokio::time::sleep(Duration::from_millis(2500)).await;
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

/// After Redis lost its data, a leave on a node that has not rewritten its share yet must not
/// take another node's socket off the counts: U stays a member while its socket on A lives.
#[tokio::test]
async fn a_leave_before_the_resync_spares_other_nodes_counts() {
    let redis = RedisServer::start().await;
    let a = start_with(node_config(&redis)).await;
    // B heartbeats rarely, so its leave runs before it notices the loss.
    let mut cb = node_config(&redis);
    cb.redis.heartbeat_ms = 3000;
    cb.redis.node_timeout_ms = 7000;
    let b = start_with(cb).await;
    const CH: &str = "presence-lost";
    let (mut w, sw) = connect(a.addr, "key1").await;
    subscribe_presence(&mut w, &sw, CH, json!("w"), Value::Null).await;
    let (mut ua, sua) = connect(a.addr, "key1").await;
    subscribe_presence(&mut ua, &sua, CH, json!("U"), Value::Null).await;
    assert_eq!(data_of(&recv(&mut w).await)["user_id"], "U");
    let (mut ub, sub) = connect(b.addr, "key1").await;
    subscribe_presence(&mut ub, &sub, CH, json!("U"), Value::Null).await;
    let mut c = redis.client().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    // A rewrites its share at its next heartbeat (200 ms).
    settle_on(&[a.addr], CH, &["U", "w"]).await;
    drop(ub);
    // B's leave, then B's own resync; U must stay a member everywhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle_on(&[a.addr, b.addr], CH, &["U", "w"]).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    settle_on(&[a.addr, b.addr], CH, &["U", "w"]).await;
    assert_nothing_queued(&mut w).await;
    assert_nothing_queued(&mut ua).await;
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
