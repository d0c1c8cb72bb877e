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
pub struct Recorded {
    pub frames: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Records every text frame a socket receives.
pub fn record(mut ws: Ws) -> Recorded {
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

pub fn removals_of(r: &Recorded, user: &str) -> usize {
    r.frames
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f["event"] == "pusher_internal:member_removed" && data_of(f)["user_id"] == user)
        .count()
}

/// Presence users and user_count of a channel as one node's REST API answers them.
pub async fn members(addr: std::net::SocketAddr, ch: &str) -> Option<(Vec<String>, Value)> {
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
pub async fn settle_on(nodes: &[std::net::SocketAddr], ch: &str, want: &[&str]) {
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

pub async fn ready(addr: std::net::SocketAddr) {
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
