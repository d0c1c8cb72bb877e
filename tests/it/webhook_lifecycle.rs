//! Webhook bookkeeping over a server's life (issue 19 items 5 and 6): a transition's record is
//! released whatever the receivers want, and receivers follow a reload.

use std::time::Duration;

use herald::config::{Config, WebhookConfig};
use serde_json::json;

use crate::cluster::node_config;
use crate::common::*;
use crate::redis_server::RedisServer;
use crate::webhook_receiver::Receiver;

const GRACE_MS: u64 = 100;

fn receiver(url: String, events: &[&str]) -> WebhookConfig {
    WebhookConfig {
        url,
        events: events.iter().map(|e| e.to_string()).collect(),
        channel_prefix: String::new(),
        headers: Default::default(),
        batch_ms: 0,
        batch_max: 100,
    }
}

fn with_hooks(mut c: Config, hooks: Vec<WebhookConfig>) -> Config {
    c.apps[0].webhooks = hooks;
    c.webhooks.grace_ms = GRACE_MS;
    c
}

/// A new socket occupies `ch`; the receiver hears it (the socket is returned to keep it open).
async fn occupy(t: &TestServer, r: &mut Receiver, ch: &str) -> Ws {
    let (mut ws, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, ch).await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "channel_occupied", "channel": ch})
    );
    ws
}

/// Subscribes, unsubscribes and subscribes again until the receiver hears the channel occupied
/// again (the vacate is decided after the grace period); fails after a bounded number of tries.
async fn occupy_again(t: &TestServer, r: &mut Receiver, ch: &str) {
    let (mut a, _) = connect(t.addr, "key1").await;
    for _ in 0..20 {
        subscribe_public(&mut a, ch).await;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(500), r.next_event()).await {
            assert_eq!(v, json!({"name": "channel_occupied", "channel": ch}));
            return;
        }
        send(
            &mut a,
            json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}),
        )
        .await;
        // Stay away longer than the grace period, or the next try is a page refresh.
        tokio::time::sleep(Duration::from_millis(GRACE_MS * 2)).await;
    }
    panic!("{ch} was never announced occupied again");
}

async fn occupied_only_receiver_hears_every_occupation(c: Config) {
    let mut r = Receiver::start().await;
    let t = start_with(with_hooks(
        c,
        vec![receiver(r.url(), &["channel_occupied"])],
    ))
    .await;
    // Each round occupies the channel, then leaves it; the next round may only hear it
    // occupied again once the vacate (after the grace period) released the record.
    for _ in 0..3 {
        occupy_again(&t, &mut r, "lobby").await;
    }
    assert!(r.try_next().is_none());
}

#[tokio::test]
async fn occupied_only_receiver_hears_every_occupation_on_one_node() {
    occupied_only_receiver_hears_every_occupation(config()).await;
}

#[tokio::test]
async fn occupied_only_receiver_hears_every_occupation_over_redis() {
    let redis = RedisServer::start().await;
    let c = node_config(&redis);
    occupied_only_receiver_hears_every_occupation(c).await;
    // and the announced set does not grow: every record was released
    let mut conn = redis.client().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n: usize = redis::cmd("SCARD")
            .arg("{herald}:wh:occ:1")
            .query_async(&mut conn)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} records left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A receiver of `member_added` only hears a user join every time, not once per lifetime.
#[tokio::test]
async fn member_added_only_receiver_hears_every_join() {
    let mut r = Receiver::start().await;
    let t = start_with(with_hooks(
        config(),
        vec![receiver(r.url(), &["member_added"])],
    ))
    .await;
    for round in 0..3 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (mut a, sa) = connect(t.addr, "key1").await;
            subscribe_presence(&mut a, &sa, "presence-desk", json!("ann"), json!(null)).await;
            match tokio::time::timeout(Duration::from_millis(500), r.next_event()).await {
                Ok(v) => {
                    assert_eq!(
                        v,
                        json!({"name": "member_added", "channel": "presence-desk", "user_id": "ann"})
                    );
                    break;
                }
                Err(_) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {round}: ann's join was not announced again"
                ),
            }
            drop(a);
            // Gone for longer than the grace period: the next join is a new one.
            tokio::time::sleep(Duration::from_millis(GRACE_MS * 2)).await;
        }
    }
}

/// Item 6: after a reload that changes a receiver's URL and the app's secret, webhooks go to the
/// new URL signed with the new secret; after a receiver is removed, nothing goes to it.
#[tokio::test]
async fn receivers_follow_a_reload() {
    let mut old = Receiver::start().await;
    let mut new = Receiver::start().await;
    let mut other = Receiver::start().await;
    let c = with_hooks(
        config(),
        vec![
            receiver(old.url(), &["channel_occupied"]),
            receiver(other.url(), &["channel_occupied"]),
        ],
    );
    let t = start_with(c.clone()).await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "first").await;
    let h = old.next().await;
    h.assert_signed("key1", "secret1");
    assert_eq!(
        h.events(),
        vec![json!({"name": "channel_occupied", "channel": "first"})]
    );
    other.next().await.assert_signed("key1", "secret1");

    // Receiver 0 moves to a new URL, the secret rotates, receiver 1 is removed.
    let mut c2 = c.clone();
    c2.apps[0].secret = "rotated".into();
    c2.apps[0].webhooks = vec![receiver(new.url(), &["channel_occupied"])];
    assert!(t.server.reload(&c2).is_empty());
    subscribe_public(&mut a, "second").await;
    let h = new.next().await;
    h.assert_signed("key1", "rotated");
    assert_eq!(
        h.events(),
        vec![json!({"name": "channel_occupied", "channel": "second"})]
    );
    // The marker proves the others got nothing: it went out after "second" and only to `new`.
    subscribe_public(&mut a, "third").await;
    let h = new.next().await;
    h.assert_signed("key1", "rotated");
    assert_eq!(
        h.events(),
        vec![json!({"name": "channel_occupied", "channel": "third"})]
    );
    assert!(old.try_next().is_none());
    assert!(other.try_next().is_none());
}

/// Sockets closed by a shutdown still release what their channels claimed: after a restart the
/// channel is announced occupied again.
#[tokio::test]
async fn shutdown_releases_the_records_of_closed_sockets() {
    let redis = RedisServer::start().await;
    let mut r = Receiver::start().await;
    let c = node_config(&redis);
    let c = with_hooks(c, vec![receiver(r.url(), &["channel_occupied"])]);
    let t = start_with(c.clone()).await;
    let _a = occupy(&t, &mut r, "lobby").await;
    t.server.shutdown().await;
    let mut conn = redis.client().await;
    let left: Vec<String> = redis::cmd("SMEMBERS")
        .arg("{herald}:wh:occ:1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let t = start_with(c).await;
    let _b = occupy(&t, &mut r, "lobby").await;
}

/// The departures of the sockets a shutdown closes still go out as webhooks, after their grace
/// period, before the server is gone.
#[tokio::test]
async fn shutdown_sends_the_departures_of_closed_sockets() {
    let mut r = Receiver::start().await;
    let t = start_with(with_hooks(
        config(),
        vec![receiver(r.url(), &["channel_occupied", "channel_vacated"])],
    ))
    .await;
    let _a = occupy(&t, &mut r, "lobby").await;
    t.server.shutdown().await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "channel_vacated", "channel": "lobby"})
    );
}

/// Issue 15: webhooks are durable in Redis mode. Node A claims transitions while the receiver
/// is down and dies mid-retry (SIGKILL); node B takes its entries over after a node timeout and
/// delivers them once the receiver is back, with a stable id header.
#[tokio::test]
async fn webhooks_of_a_node_killed_mid_retry_are_delivered_by_another() {
    let redis = RedisServer::start().await;
    // The receiver's port is reserved now and served only later.
    let spare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = spare.local_addr().unwrap();
    drop(spare);
    let url = format!("http://{hook_addr}/hooks");
    let port = crate::redis_server::free_port();
    let file = write_config(&format!("durable-{port}.toml"), "");
    let toml = format!(
        "adapter = \"redis\"\n[metrics]\nenabled = false\n[server]\nport = {port}\n\
         [redis]\nurl = \"{}\"\nheartbeat_ms = 200\nnode_timeout_ms = 1000\n\
         [webhooks]\ngrace_ms = {GRACE_MS}\nretry_window_secs = 60\n\
         [[apps]]\nid = \"1\"\nkey = \"key1\"\nsecret = \"secret1\"\n\
         [[apps.webhooks]]\nurl = \"{url}\"\nevents = [\"channel_occupied\"]\n",
        redis.url()
    );
    std::fs::write(&file, toml).unwrap();
    let mut a = crate::spawned::herald(&[], &file);
    let a_addr = wait_listening(port).await;

    let (mut ws, _) = connect(a_addr, "key1").await;
    subscribe_public(&mut ws, "first").await;
    subscribe_public(&mut ws, "second").await;
    // Wait until node A holds both entries (read, not acknowledged: it is retrying them).
    let mut conn = redis.client().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg("{herald}:wh:queue")
            .arg("herald")
            .query_async(&mut conn)
            .await
            .unwrap();
        let n = match &pending {
            redis::Value::Array(v) => match v.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        };
        if n >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node A never took the entries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.child().kill().unwrap();
    a.child().wait().unwrap();
    // Node B only starts now: whatever it delivers, it took over from A.
    let mut c = node_config(&redis);
    c.webhooks.retry_window_secs = 60;
    let _b = start_with(with_hooks(c, vec![receiver(url, &["channel_occupied"])])).await;
    let mut r = Receiver::start_on(tokio::net::TcpListener::bind(hook_addr).await.unwrap());
    let mut got = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    while got.len() < 2 {
        let h = tokio::time::timeout(Duration::from_secs(15), r.next())
            .await
            .expect("the webhooks arrive through node B");
        h.assert_signed("key1", "secret1");
        let id = h.headers.get("x-herald-webhook-id").expect("an id header");
        ids.insert(id.to_str().unwrap().to_string());
        for e in h.events() {
            got.insert(e["channel"].as_str().unwrap().to_string());
            assert_eq!(e["name"], "channel_occupied");
        }
    }
    assert_eq!(got.into_iter().collect::<Vec<_>>(), ["first", "second"]);
    assert!(!ids.is_empty());
}
