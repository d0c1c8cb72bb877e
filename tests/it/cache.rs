//! Cache channels and subscription counts (§15 items 78–85, 130).

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn cache_miss_then_replay_of_the_last_rest_event() {
    let t = start().await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "cache-prices").await;
    assert_eq!(
        recv(&mut a).await,
        json!({"event": "pusher:cache_miss", "channel": "cache-prices"})
    );
    let r = api(
        t.addr,
        "GET",
        "/apps/1/channels/cache-prices",
        &[("info", "cache")],
        b"",
    )
    .await;
    assert_eq!(r.body, json!({"occupied": true, "cache": null}));
    for n in ["1", "2"] {
        assert_eq!(
            trigger(
                t.addr,
                json!({"name": "price", "channel": "cache-prices", "data": n})
            )
            .await
            .status,
            200
        );
        assert_eq!(recv(&mut a).await["data"], n);
    }
    let (mut b, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut b, "cache-prices").await;
    assert_eq!(
        recv(&mut b).await,
        json!({"event": "price", "channel": "cache-prices", "data": "2"})
    );
    assert_nothing_queued(&mut b).await;
    let r = api(
        t.addr,
        "GET",
        "/apps/1/channels/cache-prices",
        &[("info", "cache")],
        b"",
    )
    .await;
    assert_eq!(r.body["cache"]["data"], "2");
    let ttl = r.body["cache"]["ttl"].as_u64().unwrap();
    assert!(ttl > 1700 && ttl <= 1800, "{ttl}");
    assert_eq!(
        api(
            t.addr,
            "GET",
            "/apps/1/channels/plain",
            &[("info", "cache")],
            b""
        )
        .await
        .status,
        400
    );
}

#[tokio::test]
async fn events_to_an_empty_cache_channel_are_kept() {
    let t = start().await;
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "e", "channel": "cache-empty", "data": "kept"})
        )
        .await
        .status,
        200
    );
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "cache-empty").await;
    assert_eq!(
        recv(&mut a).await,
        json!({"event": "e", "channel": "cache-empty", "data": "kept"})
    );
}

#[tokio::test]
async fn private_and_presence_cache_channels_and_no_client_event_caching() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    subscribe_private(&mut a, &sa, "private-cache-x").await;
    assert_eq!(recv(&mut a).await["event"], "pusher:cache_miss");
    subscribe_private(&mut a, &sa, "private-encrypted-cache-x").await;
    assert_eq!(recv(&mut a).await["event"], "pusher:cache_miss");
    subscribe_presence(&mut a, &sa, "presence-cache-x", json!("1"), Value::Null).await;
    assert_eq!(recv(&mut a).await["event"], "pusher:cache_miss");
    send(
        &mut a,
        json!({"event": "client-x", "channel": "private-cache-x", "data": {}}),
    )
    .await;
    assert_nothing_queued(&mut a).await;
    let (mut b, sb) = connect(t.addr, "key1").await;
    // a's client event reached nobody and was not cached
    subscribe_private(&mut b, &sb, "private-cache-x").await;
    assert_eq!(recv(&mut b).await["event"], "pusher:cache_miss");
}

#[tokio::test]
async fn cached_event_expires() {
    let mut c = config();
    c.limits.cache_ttl_seconds = 1;
    let t = start_with(c).await;
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "e", "channel": "cache-short", "data": "x"})
        )
        .await
        .status,
        200
    );
    let r = api(
        t.addr,
        "GET",
        "/apps/1/channels/cache-short",
        &[("info", "cache")],
        b"",
    )
    .await;
    assert_eq!(r.body["cache"], json!({"data": "x", "ttl": 1}));
    let cache = || t.server.state().hub.app("1").cached("cache-short");
    eventually("the cached event to expire", || cache().is_none()).await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "cache-short").await;
    assert_eq!(recv(&mut a).await["event"], "pusher:cache_miss");
}

fn counting() -> herald::config::Config {
    let mut c = config();
    c.apps[0].enable_subscription_count = true;
    c
}

fn count_of(frame: &Value, channel: &str) -> u64 {
    assert_eq!(
        frame["event"], "pusher_internal:subscription_count",
        "{frame}"
    );
    assert_eq!(frame["channel"], channel);
    data_of(frame)["subscription_count"]
        .as_u64()
        .expect("integer count")
}

#[tokio::test]
async fn subscription_count_on_every_change() {
    let t = start_with(counting()).await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "room").await;
    assert_eq!(count_of(&recv(&mut a).await, "room"), 1);
    let (mut b, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut b, "room").await;
    assert_eq!(count_of(&recv(&mut b).await, "room"), 2);
    assert_eq!(count_of(&recv(&mut a).await, "room"), 2);
    send(
        &mut b,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "room"}}),
    )
    .await;
    assert_eq!(count_of(&recv(&mut a).await, "room"), 1);
    assert_nothing_queued(&mut b).await;
    // presence channels never get it
    let (mut p, sp) = connect(t.addr, "key1").await;
    subscribe_presence(&mut p, &sp, "presence-room", json!("1"), Value::Null).await;
    assert_nothing_queued(&mut p).await;
}

#[tokio::test]
async fn no_subscription_count_when_disabled() {
    let t = start().await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "room").await;
    let (mut b, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut b, "room").await;
    assert_nothing_queued(&mut a).await;
    assert_nothing_queued(&mut b).await;
}
