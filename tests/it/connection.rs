//! Handshake, close codes, sub-protocols and bad frames (§15 items 1–19).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test]
async fn connection_established_is_first_and_well_formed() {
    let t = start().await;
    let mut ws = open(
        t.addr,
        "/app/key1?protocol=7&client=js&version=8.4.0&flash=false",
    )
    .await;
    let text = recv_text(&mut ws).await;
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(frame["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    let sid = data["socket_id"].as_str().unwrap();
    let (a, b) = sid.split_once('.').unwrap();
    assert!(
        !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()),
        "{sid}"
    );
    assert!(
        !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()),
        "{sid}"
    );
    assert_eq!(data["activity_timeout"], 120);
    assert_eq!(data.as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn socket_ids_differ_per_connection() {
    let t = start().await;
    let (_a, s1) = connect(t.addr, "key1").await;
    let (b, s2) = connect(t.addr, "key1").await;
    drop(b);
    let (_c, s3) = connect(t.addr, "key1").await;
    assert_ne!(s1, s2);
    assert_ne!(s2, s3);
    assert_ne!(s1, s3);
}

#[tokio::test]
async fn protocol_versions_and_extra_params() {
    let t = start().await;
    for q in [
        "protocol=7",
        "protocol=5",
        "protocol=4",
        "protocol=6&client=java-client&version=2.0&foo=bar",
    ] {
        let mut ws = open(t.addr, &format!("/app/key1?{q}")).await;
        assert_eq!(
            recv(&mut ws).await["event"],
            "pusher:connection_established",
            "{q}"
        );
    }
}

#[tokio::test]
async fn refusals_use_the_documented_codes() {
    let t = start().await;
    expect_refused(t.addr, "/app/key1?protocol=3", 4007).await;
    expect_refused(t.addr, "/app/key1?protocol=abc", 4007).await;
    expect_refused(t.addr, "/app/key1?protocol=8", 4007).await;
    expect_refused(t.addr, "/app/key1", 4008).await;
    expect_refused(t.addr, "/app/key1?client=js", 4008).await;
    expect_refused(t.addr, "/app/nope?protocol=7", 4001).await;
    expect_refused(t.addr, "/app/key3?protocol=7", 4003).await;
    expect_refused(t.addr, "/elsewhere?protocol=7", 4005).await;
    expect_refused(t.addr, "/app/?protocol=7", 4005).await;
    // order: path before app, app before protocol
    expect_refused(t.addr, "/app/nope", 4001).await;
    expect_refused(t.addr, "/app/key3", 4003).await;
}

#[tokio::test]
async fn app_connection_quota_closes_with_4004() {
    let t = start().await;
    let (_first, _) = connect(t.addr, "key4").await;
    expect_refused(t.addr, "/app/key4?protocol=7", 4004).await;
    drop(_first);
    // The slot frees once the server has seen the close; wait for the count to drop.
    let hub = t.server.state().hub.app("4");
    eventually("the connection slot to be released", || {
        hub.connection_count() == 0
    })
    .await;
    let (_again, _) = connect(t.addr, "key4").await;
}

#[tokio::test]
async fn node_capacity_closes_with_4100() {
    let mut c = config();
    c.server.max_connections = 1;
    let t = start_with(c).await;
    let (_first, _) = connect(t.addr, "key1").await;
    expect_refused(t.addr, "/app/key1?protocol=7", 4100).await;
}

#[tokio::test]
async fn path_prefix_is_accepted() {
    let mut c = config();
    c.server.path_prefix = "/ws".into();
    let t = start_with(c).await;
    let mut ws = open(t.addr, "/ws/app/key1?protocol=7").await;
    assert_eq!(
        recv(&mut ws).await["event"],
        "pusher:connection_established"
    );
    let mut ws = open(t.addr, "/app/key1?protocol=7").await;
    assert_eq!(
        recv(&mut ws).await["event"],
        "pusher:connection_established"
    );
}

async fn handshake_with(addr: std::net::SocketAddr, offered: Option<&str>) -> Option<String> {
    let mut req = format!("ws://{addr}/app/key1?protocol=7")
        .into_client_request()
        .unwrap();
    if let Some(p) = offered {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let (mut ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("handshake succeeds");
    assert_eq!(
        recv(&mut ws).await["event"],
        "pusher:connection_established"
    );
    res.headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn subprotocol_is_echoed_when_offered() {
    let t = start().await;
    assert_eq!(
        handshake_with(t.addr, Some("pusher-channels-protocol-7"))
            .await
            .as_deref(),
        Some("pusher-channels-protocol-7")
    );
    assert_eq!(handshake_with(t.addr, None).await, None);
}

#[tokio::test]
async fn binary_and_invalid_frames_do_not_close() {
    let t = start().await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    send_text(&mut ws, "this is not json").await;
    expect_error(&recv(&mut ws).await, None, "invalid JSON");
    send_text(&mut ws, "[1,2]").await;
    expect_error(&recv(&mut ws).await, None, "not a JSON object");
    send_text(&mut ws, r#"{"data":{}}"#).await;
    expect_error(&recv(&mut ws).await, None, "missing string 'event'");
    send(&mut ws, json!({"event": "pusher:unknown", "data": {}})).await;
    expect_error(&recv(&mut ws).await, None, "Unsupported event");
    send(
        &mut ws,
        json!({"event": "pusher_internal:subscription_succeeded", "channel": "x", "data": "{}"}),
    )
    .await;
    expect_error(&recv(&mut ws).await, None, "Unsupported event");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    send_text(&mut ws, &deep).await;
    expect_error(&recv(&mut ws).await, None, "invalid JSON");
    assert_nothing_queued(&mut ws).await;
}

#[tokio::test]
async fn oversized_message_closes_with_1009_and_spares_others() {
    let t = start().await;
    let (mut bystander, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut bystander, "room").await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    let big = format!(
        r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let _ = ws.send(Message::Text(big.into())).await;
    let (texts, code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 1009);
    // 1009 is a WebSocket close code, not a Pusher error code (4000–4999): the error has none
    expect_error(&texts[0], None, "too big");
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "e", "channel": "room", "data": "still here"})
        )
        .await
        .status,
        200
    );
    let got = recv(&mut bystander).await;
    assert_eq!(
        got,
        json!({"event": "e", "channel": "room", "data": "still here"})
    );
}

#[tokio::test]
async fn http_upgrade_without_key_is_a_400() {
    let t = start().await;
    let r = request(
        t.addr,
        "GET",
        "/app/key1?protocol=7",
        b"",
        &[("connection", "upgrade"), ("upgrade", "websocket")],
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn health_endpoints() {
    let t = start().await;
    for p in ["/", "/health"] {
        let r = request(t.addr, "GET", p, b"", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.body, json!({"ok": true}));
    }
    assert_eq!(request(t.addr, "GET", "/nope", b"", &[]).await.status, 404);
}

#[tokio::test]
async fn client_close_is_clean() {
    let t = start().await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    ws.close(None).await.unwrap();
    let next = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(
        matches!(next, Some(Ok(Message::Close(_))) | None),
        "{next:?}"
    );
}

#[tokio::test]
async fn request_headers_that_never_finish_are_dropped_after_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = config();
    c.server.handshake_timeout = 1;
    let t = start_with(c).await;
    let mut slow = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    slow.write_all(b"GET /app/key1?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    // The server gives up on the incomplete request: we see EOF (or a 408) well before WAIT.
    let mut buf = Vec::new();
    let n = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf))
        .await
        .expect("server hangs up in time");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        n.is_err() || buf.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Meanwhile others are served normally.
    let (_ws, _) = connect(t.addr, "key1").await;
}
