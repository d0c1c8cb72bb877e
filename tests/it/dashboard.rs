//! The dashboard: every route needs credentials; counts, channels, the live log and the test
//! event form work; no secret is ever served.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const AUTH: &str = "Basic YWRtaW46cHctdGVzdA=="; // admin:pw-test

async fn dashboard() -> (TestServer, std::net::SocketAddr) {
    let mut c = config();
    c.dashboard.enabled = true;
    c.dashboard.port = 0;
    c.dashboard.password = "pw-test".into();
    let t = start_with(c).await;
    let addr = t.server.dashboard_addr().expect("dashboard served");
    (t, addr)
}

#[tokio::test]
async fn every_route_needs_credentials() {
    let (_t, addr) = dashboard().await;
    let routes = [
        ("GET", "/"),
        ("GET", "/api/apps"),
        ("GET", "/api/apps/1/stats"),
        ("GET", "/api/apps/1/channels"),
        ("GET", "/api/apps/1/events"),
        ("POST", "/api/apps/1/events"),
        ("GET", "/nope"),
    ];
    for (method, path) in routes {
        for auth in [
            None,
            Some("Basic YWRtaW46d3Jvbmc="),
            Some("Basic bm9ib2R5OnB3LXRlc3Q="),
            Some("Bearer pw-test"),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
            let r = request(addr, method, path, b"{}", &headers).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
        }
    }
    // the dashboard is off unless enabled
    let t = start().await;
    assert!(t.server.dashboard_addr().is_none());
}

#[tokio::test]
async fn page_counts_channels_log_and_test_events() {
    let (t, addr) = dashboard().await;
    let auth = [("authorization", AUTH)];
    let page = request(addr, "GET", "/", b"", &auth).await;
    assert_eq!(page.status, 200);
    assert!(page.raw.contains("<title>herald dashboard</title>"));
    let apps = request(addr, "GET", "/api/apps", b"", &auth).await;
    assert_eq!(apps.body["apps"], json!(["1", "2", "3", "4"]));
    for r in [&page, &apps] {
        assert!(
            !r.raw.contains("secret1") && !r.raw.contains("pw-test"),
            "no secrets served"
        );
    }
    // open the live log (server-sent events) before anything happens
    let mut sse = tokio::net::TcpStream::connect(addr).await.unwrap();
    sse.write_all(
        format!("GET /api/apps/1/events HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = String::new();
    read_until(&mut sse, &mut seen, "text/event-stream").await;
    // a pusher client appears in the log and in the channel list
    let (mut ws, sid) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, "hotel-grand").await;
    read_until(&mut sse, &mut seen, "\"kind\":\"subscribed\"").await;
    let channels = request(addr, "GET", "/api/apps/1/channels", b"", &auth).await;
    assert_eq!(
        channels.body,
        json!({"channels": [{"name": "hotel-grand", "subscription_count": 1, "user_count": null}]})
    );
    let stats = request(addr, "GET", "/api/apps/1/stats", b"", &auth).await;
    assert_eq!(
        (
            stats.body["connections"].clone(),
            stats.body["channels"].clone()
        ),
        (json!(1), json!(1))
    );
    // the form publishes through the normal path
    let form = json!({"channel": "hotel-grand", "event": "clock-status-updated", "data": "{\"staff\":\"ann\"}"});
    let r = request(
        addr,
        "POST",
        "/api/apps/1/events",
        form.to_string().as_bytes(),
        &auth,
    )
    .await;
    assert_eq!((r.status, r.body), (200, json!({})));
    assert_eq!(
        recv(&mut ws).await,
        json!({"event": "clock-status-updated", "channel": "hotel-grand", "data": "{\"staff\":\"ann\"}"})
    );
    read_until(&mut sse, &mut seen, "\"kind\":\"api_message\"").await;
    // errors are in the log with their code, without signatures
    send(&mut ws, json!({"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": "key1:deadbeef"}})).await;
    recv(&mut ws).await;
    read_until(&mut sse, &mut seen, "\"kind\":\"error\"").await;
    assert!(!seen.contains("deadbeef"));
    assert!(seen.contains(&sid));
    let bad = request(
        addr,
        "POST",
        "/api/apps/1/events",
        br#"{"channel":"bad name","event":"e"}"#,
        &auth,
    )
    .await;
    assert_eq!(bad.status, 400);
}

/// Reads the event stream until `needle` has been seen (bounded).
pub async fn read_until(sse: &mut tokio::net::TcpStream, seen: &mut String, needle: &str) {
    tokio::time::timeout(WAIT, async {
        while !seen.contains(needle) {
            let mut buf = [0u8; 4096];
            let n = sse.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle} not in the log:\n{seen}"));
}
