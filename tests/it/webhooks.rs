//! Webhooks against a real local receiver (§15 items 136–146).

use std::time::Duration;

use herald::config::{AdapterKind, Config, WebhookConfig};
use serde_json::{json, Value};

use crate::common::*;
use crate::redis_server::RedisServer;
use crate::webhook_receiver::Receiver;

const GRACE_MS: u64 = 300;

fn hook(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        events: Vec::new(),
        channel_prefix: String::new(),
        headers: Default::default(),
        batch_ms: 0,
        batch_max: 100,
    }
}

/// A receiver that only wants `channel_occupied`.
fn occupied_only(url: String) -> WebhookConfig {
    let mut h = hook(url);
    h.events = vec!["channel_occupied".into()];
    h
}

fn with_hooks(hooks: Vec<WebhookConfig>) -> Config {
    let mut c = config();
    c.apps[0].webhooks = hooks;
    c.webhooks.grace_ms = GRACE_MS;
    c
}

#[tokio::test]
async fn channel_and_presence_events_with_exact_bodies() {
    let mut r = Receiver::start().await;
    let t = start_with(with_hooks(vec![hook(r.url())])).await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    subscribe_presence(&mut a, &sa, "presence-room", json!(10), json!({"n": 1})).await;
    let mut got = [r.next_event().await, r.next_event().await];
    got.sort_by_key(|v| v["name"].as_str().unwrap().to_string());
    assert_eq!(
        got[0],
        json!({"name": "channel_occupied", "channel": "presence-room"})
    );
    assert_eq!(
        got[1],
        json!({"name": "member_added", "channel": "presence-room", "user_id": "10"})
    );
    send(
        &mut a,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}),
    )
    .await;
    let mut got = [r.next_event().await, r.next_event().await];
    got.sort_by_key(|v| v["name"].as_str().unwrap().to_string());
    assert_eq!(
        got[0],
        json!({"name": "channel_vacated", "channel": "presence-room"})
    );
    assert_eq!(
        got[1],
        json!({"name": "member_removed", "channel": "presence-room", "user_id": "10"})
    );
    assert!(r.try_next().is_none());
}

#[tokio::test]
async fn client_events_cache_miss_and_subscription_count() {
    let mut r = Receiver::start().await;
    let mut h = hook(r.url());
    h.events = vec![
        "client_event".into(),
        "cache_miss".into(),
        "subscription_count".into(),
    ];
    let t = start_with(with_hooks(vec![h])).await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    let (mut b, sb) = connect(t.addr, "key1").await;
    subscribe_private(&mut a, &sa, "private-x").await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "subscription_count", "channel": "private-x", "subscription_count": 1})
    );
    subscribe_private(&mut b, &sb, "private-x").await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "subscription_count", "channel": "private-x", "subscription_count": 2})
    );
    send(
        &mut a,
        json!({"event": "client-typing", "channel": "private-x", "data": {"t": true}}),
    )
    .await;
    recv(&mut b).await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "client_event", "channel": "private-x", "event": "client-typing", "data": "{\"t\":true}", "socket_id": sa})
    );
    // presence: user_id on client events, no subscription_count
    subscribe_presence(&mut a, &sa, "presence-p", json!("u1"), Value::Null).await;
    subscribe_presence(&mut b, &sb, "presence-p", json!("u2"), Value::Null).await;
    recv(&mut a).await; // member_added
    send(
        &mut b,
        json!({"event": "client-x", "channel": "presence-p", "data": "s"}),
    )
    .await;
    recv(&mut a).await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "client_event", "channel": "presence-p", "event": "client-x", "data": "s", "socket_id": sb, "user_id": "u2"})
    );
    // one cache_miss for two subscribers of the same empty cache
    subscribe_public(&mut a, "cache-c").await;
    assert_eq!(recv(&mut a).await["event"], "pusher:cache_miss");
    assert_eq!(
        r.next_event().await,
        json!({"name": "cache_miss", "channel": "cache-c"})
    );
    assert_eq!(
        r.next_event().await,
        json!({"name": "subscription_count", "channel": "cache-c", "subscription_count": 1})
    );
    subscribe_public(&mut b, "cache-c").await;
    assert_eq!(recv(&mut b).await["event"], "pusher:cache_miss");
    assert_eq!(
        r.next_event().await,
        json!({"name": "subscription_count", "channel": "cache-c", "subscription_count": 2})
    );
    // after the cache is filled and expires... a new episode would report again; filled now:
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "e", "channel": "cache-c", "data": "d"})
        )
        .await
        .status,
        200
    );
    assert!(r.try_next().is_none());
}

#[tokio::test]
async fn page_refresh_within_grace_sends_nothing() {
    let mut r = Receiver::start().await;
    let t = start_with(with_hooks(vec![hook(r.url())])).await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    subscribe_presence(&mut a, &sa, "presence-r", json!("u"), Value::Null).await;
    assert_eq!(
        r.next_event().await["name"]
            .as_str()
            .map(|s| s.starts_with("channel_occupied") || s == "member_added"),
        Some(true)
    );
    r.next_event().await;
    drop(a);
    // the "refreshed page" reconnects within the grace period
    let (mut a2, sa2) = connect(t.addr, "key1").await;
    subscribe_presence(&mut a2, &sa2, "presence-r", json!("u"), Value::Null).await;
    // After the grace period a marker channel is occupied; nothing may precede its webhook.
    tokio::time::sleep(Duration::from_millis(GRACE_MS * 3)).await;
    subscribe_public(&mut a2, "marker").await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "channel_occupied", "channel": "marker"})
    );
}

#[tokio::test]
async fn batching_filters_and_extra_headers() {
    let mut r = Receiver::start().await;
    let mut h = hook(r.url());
    h.batch_ms = 300;
    h.channel_prefix = "hotel-".into();
    h.events = vec!["channel_occupied".into()];
    h.headers.insert("X-Receiver-Token".into(), "t0k3n".into());
    let t = start_with(with_hooks(vec![h])).await;
    let (mut a, _) = connect(t.addr, "key1").await;
    for ch in ["hotel-a", "other", "hotel-b", "hotel-c"] {
        subscribe_public(&mut a, ch).await;
    }
    let got = r.next().await;
    got.assert_signed("key1", "secret1");
    assert_eq!(got.headers.get("x-receiver-token").unwrap(), "t0k3n");
    assert_eq!(
        got.events(),
        vec![
            json!({"name": "channel_occupied", "channel": "hotel-a"}),
            json!({"name": "channel_occupied", "channel": "hotel-b"}),
            json!({"name": "channel_occupied", "channel": "hotel-c"}),
        ]
    );
}

#[tokio::test]
async fn retried_after_500s_with_the_same_body() {
    let mut r = Receiver::start().await;
    r.answer(&[500, 503]);
    let t = start_with(with_hooks(vec![occupied_only(r.url())])).await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "retry-me").await;
    let first = r.next().await;
    let second = r.next().await;
    let third = r.next().await;
    assert_eq!(first.raw, second.raw);
    assert_eq!(second.raw, third.raw);
    third.assert_signed("key1", "secret1");
    assert_eq!(
        third.events(),
        vec![json!({"name": "channel_occupied", "channel": "retry-me"})]
    );
    let stats = t.server.state().webhooks.stats();
    eventually("the delivery to be counted", || {
        stats.delivered.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(stats.failures.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test]
async fn retried_after_a_refused_connection() {
    // Reserve a port, close it, and only start the receiver after a failed attempt.
    let spare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = spare.local_addr().unwrap();
    drop(spare);
    let url = format!("http://{addr}/hooks");
    let t = start_with(with_hooks(vec![occupied_only(url)])).await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "late").await;
    let stats = t.server.state().webhooks.stats().clone();
    eventually("a refused attempt", || {
        stats.failures.load(std::sync::atomic::Ordering::Relaxed) >= 1
    })
    .await;
    let mut r = Receiver::start_on(tokio::net::TcpListener::bind(addr).await.unwrap());
    assert_eq!(
        r.next_event().await,
        json!({"name": "channel_occupied", "channel": "late"})
    );
}

#[tokio::test]
async fn given_up_after_the_retry_window() {
    let mut r = Receiver::start().await;
    r.answer(&[500; 64]);
    let mut c = with_hooks(vec![occupied_only(r.url())]);
    c.webhooks.retry_window_secs = 1;
    let t = start_with(c).await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "doomed").await;
    let stats = t.server.state().webhooks.stats().clone();
    eventually("the webhook to be given up", || {
        stats.given_up.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    let attempts = stats.attempts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (2..20).contains(&attempts),
        "{attempts} attempts within a 1 s window"
    );
    // the receiver saw exactly those attempts, all for the same body
    let mut seen = Vec::new();
    while let Some(h) = r.try_next() {
        seen.push(h.raw);
    }
    assert_eq!(seen.len() as u64, attempts);
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
    // later events still go out
    r.clear_answers();
    subscribe_public(&mut a, "fine").await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "channel_occupied", "channel": "fine"})
    );
}

#[tokio::test]
async fn two_nodes_send_one_webhook_per_transition() {
    let redis = RedisServer::start().await;
    let mut r = Receiver::start().await;
    let node = || {
        let mut c = with_hooks(vec![hook(r.url())]);
        c.adapter = AdapterKind::Redis;
        c.redis.url = redis.url();
        c.redis.heartbeat_ms = 200;
        c.redis.node_timeout_ms = 1000;
        c
    };
    let n1 = start_with(node()).await;
    let n2 = start_with(node()).await;
    let ch = "presence-both";
    let (mut a, sa) = connect(n1.addr, "key1").await;
    let (mut b, sb) = connect(n2.addr, "key1").await;
    subscribe_presence(&mut a, &sa, ch, json!("u"), Value::Null).await;
    subscribe_presence(&mut b, &sb, ch, json!("u"), Value::Null).await;
    let mut got = [r.next_event().await, r.next_event().await];
    got.sort_by_key(|v| v["name"].as_str().unwrap().to_string());
    assert_eq!(
        got,
        [
            json!({"name": "channel_occupied", "channel": ch}),
            json!({"name": "member_added", "channel": ch, "user_id": "u"})
        ]
    );
    drop(a);
    drop(b);
    let mut got = [r.next_event().await, r.next_event().await];
    got.sort_by_key(|v| v["name"].as_str().unwrap().to_string());
    assert_eq!(
        got,
        [
            json!({"name": "channel_vacated", "channel": ch}),
            json!({"name": "member_removed", "channel": ch, "user_id": "u"})
        ]
    );
    // nothing else: a marker on node 2 is the next webhook
    let (mut m, _) = connect(n2.addr, "key1").await;
    tokio::time::sleep(Duration::from_millis(GRACE_MS * 2)).await;
    subscribe_public(&mut m, "marker").await;
    assert_eq!(
        r.next_event().await,
        json!({"name": "channel_occupied", "channel": "marker"})
    );
}

#[tokio::test]
async fn failed_deliveries_are_logged_at_warn_once_per_receiver_without_secrets() {
    let mut r = Receiver::start().await;
    r.answer(&[500, 503]);
    let port = crate::redis_server::free_port();
    // Credentials in the query string and a header: neither may reach the log.
    let file = write_config(
        "webhook-warn.toml",
        &format!(
            r#"[metrics]
enabled = false
[server]
port = {port}
drain_seconds = 1
[[apps]]
id = "1"
key = "key1"
secret = "s3cret-app"
[[apps.webhooks]]
url = "{}?token=s3cret-query"
events = ["channel_occupied"]
[apps.webhooks.headers]
Authorization = "Bearer s3cret-header"
"#,
            r.url()
        ),
    );
    // The default log level: no RUST_LOG.
    let (mut herald, mut logs) = crate::spawned::logged(&[], &file, None);
    let addr = wait_listening(port).await;
    let (mut a, _) = connect(addr, "key1").await;
    subscribe_public(&mut a, "warn-me").await;
    // two failures, then the delivery
    for _ in 0..3 {
        assert_eq!(
            r.next().await.events(),
            vec![json!({"name": "channel_occupied", "channel": "warn-me"})]
        );
    }
    let pid = herald.child().id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut child = herald.take();
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap());
    assert_eq!(
        tokio::time::timeout(WAIT, exit)
            .await
            .unwrap()
            .unwrap()
            .code(),
        Some(0)
    );
    // the process has exited: every line it wrote is in the channel
    let mut lines = Vec::new();
    while let Some(line) = tokio::time::timeout(WAIT, logs.recv()).await.unwrap() {
        lines.push(line);
    }
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("webhook delivery failed"))
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one line per receiver per minute: {lines:#?}"
    );
    let line = failed[0];
    for part in [
        " WARN ",
        "app=1",
        &format!("receiver={}", r.url()),
        "attempt=1",
        "reason=HTTP 500 Internal Server Error",
        "held_back=0",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("s3cret")),
        "a secret reached the log: {lines:#?}"
    );
}
