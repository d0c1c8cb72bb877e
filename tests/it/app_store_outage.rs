//! The app store's database away and back under traffic (through a TCP relay the test cuts,
//! see `app_store_db::Relay`), and floods of unknown keys counted from the database's side.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::app_store::metrics_text;
use crate::app_store_db::{Kind, Relay, TestDb};
use crate::common::*;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// The first frame's close or error code of a refused connection attempt.
async fn refused_code(addr: std::net::SocketAddr, key: &str) -> u16 {
    let mut ws = open(addr, &format!("/app/{key}?protocol=7")).await;
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["event"], "pusher:error", "{v}");
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn database_away_and_back_under_traffic() {
    let db = TestDb::create(Kind::Pg).await;
    db.soketi_table().await;
    db.insert_app(
        "401",
        "cached-key",
        "cached-secret",
        "-1, 1, 1, -1, -1, -1, NULL",
    )
    .await;
    let relay = Relay::to(Kind::Pg.port()).await;
    let mut c = config();
    let mut st = db.store_config();
    st.url = db.url_via(relay.port);
    st.cache_ttl_seconds = 1;
    st.negative_ttl_seconds = 1;
    st.timeout_ms = 500;
    c.app_store = Some(st);
    let s = start_with(c).await;
    let (mut ws, _) = connect(s.addr, "cached-key").await;
    subscribe_public(&mut ws, "live").await;
    let send_event = |n: u32| {
        let body = json!({"name": "e", "channel": "live", "data": n.to_string()}).to_string();
        let addr = s.addr;
        async move {
            api_as(
                addr,
                "cached-key",
                "cached-secret",
                "POST",
                "/apps/401/events",
                &[],
                body.as_bytes(),
            )
            .await
            .status
        }
    };
    assert_eq!(send_event(1).await, 200);
    assert_eq!(recv(&mut ws).await["data"], "1");

    relay.cut();
    // an uncached key: refused with 4100 (reconnect after backing off), REST 503, not a hang
    assert_eq!(refused_code(s.addr, "never-seen").await, 4100);
    let r = api_as(
        s.addr,
        "never-seen",
        "x",
        "POST",
        "/apps/499/events",
        &[],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.raw);
    assert_eq!(r.body["error"], "App store unavailable, retry later");
    // the cached app keeps working: REST, delivery, new connections
    assert_eq!(send_event(2).await, 200);
    assert_eq!(recv(&mut ws).await["data"], "2");
    let (_other, _) = connect(s.addr, "cached-key").await;
    // /ready and the metrics say the store is away
    let ready = request(s.addr, "GET", "/ready", b"", &[]).await;
    assert_eq!(ready.body["app_store"], "unreachable", "{}", ready.raw);
    assert!(metrics_text(&s).await.contains("herald_app_store_up 0"));
    // a refresh period passes with the store away: the cached app is still there
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(send_event(3).await, 200);
    assert_eq!(recv(&mut ws).await["data"], "3");

    // an app added while the store was away is found once it is back, without a restart
    db.insert_app("402", "new-key", "new-secret", "-1, 0, 1, -1, -1, -1, NULL")
        .await;
    relay.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut w = open(s.addr, "/app/new-key?protocol=7").await;
        let first = recv(&mut w).await;
        if first["event"] == "pusher:connection_established" {
            break;
        }
        let code = first["data"]["code"].as_u64();
        assert!(matches!(code, Some(4100 | 4001)), "{first}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "store not back in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = request(s.addr, "GET", "/ready", b"", &[]).await;
    assert_eq!(ready.body["app_store"], "ok", "{}", ready.raw);
    assert!(metrics_text(&s).await.contains("herald_app_store_up 1"));
    // the socket opened before the outage never noticed
    assert_eq!(send_event(4).await, 200);
    assert_eq!(recv(&mut ws).await["data"], "4");
    s.server.shutdown().await;
}

/// Runs `attempts` connection attempts with keys from `key`, `workers` at a time; returns how
/// many were refused with each code.
async fn flood(
    addr: std::net::SocketAddr,
    attempts: usize,
    key: impl Fn(usize) -> String + Send + Sync + 'static,
) -> std::collections::BTreeMap<u16, usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let key = Arc::new(key);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (next, key) = (next.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut codes = std::collections::BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= attempts {
                    return codes;
                }
                *codes.entry(refused_code(addr, &key(i)).await).or_insert(0) += 1;
            }
        }));
    }
    let mut all = std::collections::BTreeMap::new();
    for t in tasks {
        for (code, n) in t.await.unwrap() {
            *all.entry(code).or_insert(0) += n;
        }
    }
    all
}

/// Transactions committed in the test's database, as PostgreSQL counts them (its statistics
/// are flushed by each backend within about a second).
async fn commits(db: &TestDb) -> i64 {
    db.scalar(&format!(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = '{}'",
        db.name
    ))
    .await
}

/// 10,000 connection attempts with unknown keys: 5,000 with ten keys asked again and again
/// (each key is queried once: single flight, then the negative cache), 5,000 with a new key
/// each (the per-node lookup budget bounds the queries; beyond it 4100). Counted by herald and
/// by PostgreSQL.
#[tokio::test]
async fn ten_thousand_unknown_keys_cost_a_bounded_number_of_queries() {
    let db = TestDb::create(Kind::Pg).await;
    db.soketi_table().await;
    let mut c = config();
    let mut st = db.store_config();
    st.cache_ttl_seconds = 120;
    st.negative_ttl_seconds = 120;
    st.lookups_per_second = 20;
    c.app_store = Some(st);
    let s = start_with(c).await;
    // the startup probe (one query) has run
    let deadline = tokio::time::Instant::now() + WAIT;
    let before = loop {
        let n = metric(&metrics_text(&s).await, "herald_app_store_queries_total");
        if n >= 1 {
            break n;
        }
        assert!(tokio::time::Instant::now() < deadline, "no startup probe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let db_before = commits(&db).await;

    let codes = flood(s.addr, 5_000, |i| format!("unknown-{}", i % 10)).await;
    assert_eq!(codes.get(&4001), Some(&5_000), "{codes:?}");
    let text = metrics_text(&s).await;
    let repeated = metric(&text, "herald_app_store_queries_total") - before;
    assert_eq!(repeated, 10, "one query per unknown key");

    let started = std::time::Instant::now();
    let codes = flood(s.addr, 5_000, |i| {
        format!("random-{i}-{:x}", rand::random::<u32>())
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(codes.values().sum::<usize>(), 5_000);
    assert!(codes.keys().all(|c| *c == 4001 || *c == 4100), "{codes:?}");
    let text = metrics_text(&s).await;
    let distinct = metric(&text, "herald_app_store_queries_total") - before - repeated;
    // the budget: a burst of 20, then 20 per second
    let bound = 20 + (20.0 * secs).ceil() as u64;
    assert!(
        distinct <= bound,
        "{distinct} queries for 5,000 new keys in {secs:.1} s (bound {bound})"
    );
    assert_eq!(
        codes.get(&4001).copied().unwrap_or(0) as u64,
        distinct,
        "{codes:?}"
    );
    assert_eq!(
        codes.get(&4100).copied().unwrap_or(0) as u64,
        5_000 - distinct
    );
    assert_eq!(
        metric(&text, "herald_app_store_over_budget_total"),
        5_000 - distinct
    );

    // PostgreSQL's own count: every query herald sent is a committed transaction in this
    // database; the rest are the pool's connection setup and this test's own reads.
    let queries = repeated + distinct;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let db_delta = loop {
        let d = commits(&db).await - db_before;
        if d >= queries as i64 || tokio::time::Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        db_delta >= queries as i64,
        "PostgreSQL counted {db_delta} < herald's {queries}"
    );
    assert!(
        db_delta <= (queries + 40) as i64,
        "PostgreSQL counted {db_delta} transactions for {queries} lookups"
    );
    s.server.shutdown().await;
}
