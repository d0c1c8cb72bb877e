//! Apps from a real PostgreSQL and a real MariaDB: Soketi's table as its docs fill it, apps
//! added, changed, disabled and removed at run time on two nodes, static apps next to the
//! store, and bad rows. Outages and floods are in `app_store_outage.rs`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::app_store_db::{Kind, TestDb};
use crate::cluster::node_config;
use crate::common::*;
use crate::redis_server::RedisServer;
use crate::webhook_receiver::Receiver;

/// A config with the test's database as app store, fast cache periods, and static app 1..4.
fn store_config(db: &TestDb) -> herald::config::Config {
    let mut c = config();
    let mut s = db.store_config();
    s.cache_ttl_seconds = 1;
    s.negative_ttl_seconds = 1;
    c.app_store = Some(s);
    c
}

/// Polls until `key` connects (bounded): an app added at run time is found within the
/// negative cache period.
async fn connect_eventually(addr: std::net::SocketAddr, key: &str) -> (Ws, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut ws = open(
            addr,
            &format!("/app/{key}?protocol=7&client=js&version=8.4.0"),
        )
        .await;
        let first = recv(&mut ws).await;
        if first["event"] == "pusher:connection_established" {
            let data: Value = serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
            return (ws, data["socket_id"].as_str().unwrap().to_string());
        }
        assert_eq!(first["data"]["code"], 4001, "{first}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} not found in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn soketi_schema(kind: Kind) {
    let db = TestDb::create(kind).await;
    db.soketi_table().await;
    let mut hooks = Receiver::start().await;
    let webhooks = json!([{"url": hooks.url(), "event_types": ["channel_occupied"]}]).to_string();
    // As Soketi's docs fill it: -1 for no limit, 0/1 flags, webhooks as JSON.
    db.insert_app(
        "101",
        "soketi-key",
        "soketi-secret",
        &format!("-1, 1, 1, -1, -1, -1, '{webhooks}'"),
    )
    .await;
    db.insert_app("102", "one-only", "s102", "1, 0, 1, -1, -1, -1, NULL")
        .await;
    db.insert_app("103", "off-key", "s103", "-1, 0, 0, -1, -1, -1, NULL")
        .await;
    // A bad row: empty secret. Refused with a logged reason; the others are unaffected.
    db.insert_app("104", "bad-key", "", "-1, 0, 1, -1, -1, -1, NULL")
        .await;
    // Same key as static app 1: the static app is found first.
    db.insert_app("105", "key1", "s105", "-1, 0, 1, -1, -1, -1, NULL")
        .await;
    // A static app's id: refused (apps share channels by id).
    db.insert_app("1", "impostor", "s1", "-1, 0, 1, -1, -1, -1, NULL")
        .await;
    let s = start_with(store_config(&db)).await;

    // connect, private channel auth with the row's secret
    let (mut ws, sid) = connect(s.addr, "soketi-key").await;
    let ch = "private-orders";
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": ch,
            "auth": private_auth("soketi-key", "soketi-secret", &sid, ch)}}),
    )
    .await;
    let ok = recv(&mut ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    // the webhook from the JSON column, signed with the row's key and secret
    let hook = hooks.next().await;
    hook.assert_signed("soketi-key", "soketi-secret");
    assert_eq!(hook.events()[0]["name"], "channel_occupied");
    assert_eq!(hook.events()[0]["channel"], ch);
    // REST trigger by the row's id, signed with its secret
    let body = json!({"name": "e", "channel": ch, "data": "{\"n\":1}"}).to_string();
    let r = api_as(
        s.addr,
        "soketi-key",
        "soketi-secret",
        "POST",
        "/apps/101/events",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let ev = recv(&mut ws).await;
    assert_eq!(
        ev,
        json!({"event": "e", "channel": ch, "data": "{\"n\":1}"})
    );
    // a wrong secret is refused
    let r = api_as(
        s.addr,
        "soketi-key",
        "wrong",
        "POST",
        "/apps/101/events",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    // client events: on for 101
    send(
        &mut ws,
        json!({"event": "client-x", "channel": ch, "data": {}}),
    )
    .await;
    assert_nothing_queued(&mut ws).await;

    // limits: max_connections = 1, client messages off
    let (mut one, sid1) = connect(s.addr, "one-only").await;
    expect_refused(s.addr, "/app/one-only?protocol=7", 4004).await;
    subscribe_private_as(&mut one, "one-only", "s102", &sid1, "private-a").await;
    send(
        &mut one,
        json!({"event": "client-x", "channel": "private-a", "data": {}}),
    )
    .await;
    let err = recv(&mut one).await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    // disabled (enabled = 0): 4003; REST 403
    expect_refused(s.addr, "/app/off-key?protocol=7", 4003).await;
    let r = api_as(
        s.addr,
        "off-key",
        "s103",
        "POST",
        "/apps/103/events",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.raw);
    // bad row and unknown key: 4001; unknown id: 404
    expect_refused(s.addr, "/app/bad-key?protocol=7", 4001).await;
    expect_refused(s.addr, "/app/impostor?protocol=7", 4001).await;
    expect_refused(s.addr, "/app/nobody?protocol=7", 4001).await;
    let r = api_as(
        s.addr,
        "nobody",
        "x",
        "POST",
        "/apps/999/events",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 404);
    // static apps keep working next to the store, and win on a shared key
    let (_w1, _) = connect(s.addr, "key1").await;
    let r = trigger(s.addr, json!({"name": "e", "channel": "c", "data": "{}"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        s.server.state().apps.by_key("key1").map(|a| a.id.clone()),
        Some("1".to_string())
    );
    // the metrics label store apps like static ones
    let m = metrics_text(&s).await;
    assert!(m.contains("herald_app_connections{app=\"101\"} 1"), "{m}");
    assert!(m.contains("herald_app_store_up 1"), "{m}");
    assert!(m.contains("herald_app_store_bad_rows_total 2"), "{m}");
    s.server.shutdown().await;
}

async fn subscribe_private_as(ws: &mut Ws, key: &str, secret: &str, sid: &str, ch: &str) {
    send(
        ws,
        json!({"event": "pusher:subscribe", "data": {"channel": ch,
            "auth": private_auth(key, secret, sid, ch)}}),
    )
    .await;
    let ok = recv(ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
}

pub async fn metrics_text(s: &TestServer) -> String {
    let addr = s.server.metrics_addr().expect("metrics on");
    request(addr, "GET", "/metrics", b"", &[]).await.raw
}

#[tokio::test]
async fn soketi_table_on_postgres_works_unchanged() {
    soketi_schema(Kind::Pg).await;
}

#[tokio::test]
async fn soketi_table_on_mariadb_works_unchanged() {
    soketi_schema(Kind::Maria).await;
}

/// Added at run time, usable on two nodes without a restart; a new secret is used for new
/// signatures; disabling closes the open sockets on both nodes with 4003, removing with 4001.
async fn runtime_changes(kind: Kind) {
    let db = TestDb::create(kind).await;
    db.soketi_table().await;
    let redis = RedisServer::start().await;
    let node = || {
        let mut c = node_config(&redis);
        let mut st = db.store_config();
        st.cache_ttl_seconds = 1;
        st.negative_ttl_seconds = 1;
        c.app_store = Some(st);
        c
    };
    let a = start_with(node()).await;
    let b = start_with(node()).await;
    // unknown on both nodes first (and remembered as unknown)
    expect_refused(a.addr, "/app/late-key?protocol=7", 4001).await;
    expect_refused(b.addr, "/app/late-key?protocol=7", 4001).await;
    db.insert_app(
        "201",
        "late-key",
        "late-secret",
        "-1, 1, 1, -1, -1, -1, NULL",
    )
    .await;
    db.insert_app(
        "202",
        "gone-key",
        "gone-secret",
        "-1, 1, 1, -1, -1, -1, NULL",
    )
    .await;
    let (mut wa, _) = connect_eventually(a.addr, "late-key").await;
    let (mut wb, _) = connect_eventually(b.addr, "late-key").await;
    subscribe_public(&mut wa, "news").await;
    subscribe_public(&mut wb, "news").await;
    let (mut gone, _) = connect_eventually(b.addr, "gone-key").await;
    // one trigger on node A reaches the subscriber on B
    let body = json!({"name": "e", "channel": "news", "data": "1"}).to_string();
    let r = api_as(
        a.addr,
        "late-key",
        "late-secret",
        "POST",
        "/apps/201/events",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(recv(&mut wa).await["data"], "1");
    assert_eq!(recv(&mut wb).await["data"], "1");

    // a new secret: new signatures use it on both nodes within the cache period
    db.update_app("201", "secret = 'new-secret'").await;
    for n in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = api_as(
                n.addr,
                "late-key",
                "new-secret",
                "POST",
                "/apps/201/events",
                &[],
                body.as_bytes(),
            )
            .await;
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 401, "{}", r.raw);
            assert!(
                tokio::time::Instant::now() < deadline,
                "new secret not used in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = api_as(
            n.addr,
            "late-key",
            "late-secret",
            "POST",
            "/apps/201/events",
            &[],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 401, "the old secret is refused");
    }
    // (the triggers above delivered to both sockets)
    for _ in 0..2 {
        assert_eq!(recv(&mut wa).await["data"], "1");
        assert_eq!(recv(&mut wb).await["data"], "1");
    }

    // disabled: open sockets on both nodes close with 4003, new ones are refused with 4003
    db.update_app("201", "`enabled` = 0").await;
    for ws in [&mut wa, &mut wb] {
        let (texts, code, _) = expect_close_within(ws, Duration::from_secs(10)).await;
        assert_eq!(code, 4003, "{texts:?}");
    }
    expect_refused(a.addr, "/app/late-key?protocol=7", 4003).await;
    // removed: closed with 4001
    db.exec("DELETE FROM apps WHERE id = '202'").await;
    let (_, code, _) = expect_close_within(&mut gone, Duration::from_secs(10)).await;
    assert_eq!(code, 4001);
    expect_refused(b.addr, "/app/gone-key?protocol=7", 4001).await;
    // enabled again: usable again without a restart
    db.update_app("201", "`enabled` = 1").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut ws = open(a.addr, "/app/late-key?protocol=7").await;
        let first = recv(&mut ws).await;
        if first["event"] == "pusher:connection_established" {
            break;
        }
        assert_eq!(first["data"]["code"], 4003, "{first}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "not enabled in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.server.shutdown().await;
    b.server.shutdown().await;
}

#[tokio::test]
async fn runtime_changes_reach_two_nodes_postgres() {
    runtime_changes(Kind::Pg).await;
}

#[tokio::test]
async fn runtime_changes_reach_two_nodes_mariadb() {
    runtime_changes(Kind::Maria).await;
}

/// herald's own columns next to Soketi's, in camelCase, on herald's full schema
/// (`herald app-store init` creates the same one).
#[tokio::test]
async fn camel_case_columns_and_heralds_own() {
    let db = TestDb::create(Kind::Pg).await;
    db.exec(
        "CREATE TABLE apps (id varchar(64) PRIMARY KEY, \"key\" varchar(64), secret varchar(64),
         \"maxConnections\" integer, \"enableClientMessages\" boolean, enabled boolean,
         \"maxPresenceMembersPerChannel\" integer, enable_subscription_count smallint)",
    )
    .await;
    db.exec("INSERT INTO apps VALUES ('301', 'camel', 'camel-secret', 5, true, true, 1, 1)")
        .await;
    let s = start_with(store_config(&db)).await;
    let (mut w1, s1) = connect(s.addr, "camel").await;
    subscribe_presence_as(&mut w1, &s1, "presence-room", "u1").await;
    // max_presence_members_per_channel = 1: a second member is refused
    let (mut w2, s2) = connect(s.addr, "camel").await;
    let ch = "presence-room";
    let data = json!({"user_id": "u2"}).to_string();
    send(
        &mut w2,
        json!({"event": "pusher:subscribe", "data": {"channel": ch,
            "auth": presence_auth("camel", "camel-secret", &s2, ch, &data), "channel_data": data}}),
    )
    .await;
    let err = recv(&mut w2).await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    // subscription counts on (herald's own column)
    subscribe_public(&mut w2, "counted").await;
    let count = recv(&mut w2).await;
    assert_eq!(
        count["event"], "pusher_internal:subscription_count",
        "{count}"
    );
    s.server.shutdown().await;
}

async fn subscribe_presence_as(ws: &mut Ws, sid: &str, ch: &str, user: &str) {
    let data = json!({"user_id": user}).to_string();
    send(
        ws,
        json!({"event": "pusher:subscribe", "data": {"channel": ch,
            "auth": presence_auth("camel", "camel-secret", sid, ch, &data), "channel_data": data}}),
    )
    .await;
    let ok = recv(ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
}
