//! Bad input of every kind gets its documented answer, and a healthy client on the same server
//! keeps working throughout.

use serde_json::json;

use crate::common::*;

async fn bystander(t: &TestServer) -> Ws {
    let (mut ws, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut ws, "bystander").await;
    ws
}

/// Reads a raw socket to its close frame: the `pusher:error` before it and the close code. A
/// WebSocket close code is not a Pusher error code, so that error's code is null.
async fn websocket_close(s: &mut tokio::net::TcpStream) -> (serde_json::Value, u16) {
    let (op, text) = raw_frame(s).await;
    assert_eq!(op, 1, "a text frame first");
    let error: serde_json::Value = serde_json::from_slice(&text).unwrap();
    (error, raw_close_code(s).await)
}

async fn still_served(t: &TestServer, ws: &mut Ws, n: usize) {
    let data = format!("still here {n}");
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "e", "channel": "bystander", "data": data})
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(ws).await["data"], data);
}

#[tokio::test]
async fn websocket_frames_that_break_the_rules() {
    let t = start().await;
    let mut ok = bystander(&t).await;
    // invalid UTF-8 in a text frame: 1007
    let mut s = raw_connect(t.addr, "/app/key1?protocol=7").await;
    raw_frame(&mut s).await;
    raw_send_frame(&mut s, 1, &[0x7b, 0xff, 0xfe, 0x7d], true).await;
    let (error, code) = websocket_close(&mut s).await;
    assert_eq!(code, 1007);
    expect_error(&error, None, "UTF-8");
    still_served(&t, &mut ok, 1).await;
    // an unmasked client frame: 1002
    let mut s = raw_connect(t.addr, "/app/key1?protocol=7").await;
    raw_frame(&mut s).await;
    raw_send_frame(&mut s, 1, br#"{"event":"pusher:ping"}"#, false).await;
    let (error, code) = websocket_close(&mut s).await;
    assert_eq!(code, 1002);
    expect_error(&error, None, "protocol error");
    still_served(&t, &mut ok, 2).await;
    // exactly at the limit is fine, one byte over is 1009
    let limit = herald::config::Limits::default().max_message_bytes;
    let (mut at, _) = connect(t.addr, "key1").await;
    let pad = |n: usize| {
        let base = r#"{"event":"pusher:ping","data":""}"#.len();
        format!(
            r#"{{"event":"pusher:ping","data":"{}"}}"#,
            "x".repeat(n - base)
        )
    };
    send_text(&mut at, &pad(limit)).await;
    assert_eq!(recv(&mut at).await["event"], "pusher:pong");
    let mut s = raw_connect(t.addr, "/app/key1?protocol=7").await;
    raw_frame(&mut s).await;
    raw_send_frame(&mut s, 1, pad(limit + 1).as_bytes(), true).await;
    let (error, code) = websocket_close(&mut s).await;
    assert_eq!(code, 1009);
    expect_error(&error, None, "too big");
    still_served(&t, &mut ok, 3).await;
}

#[tokio::test]
async fn data_of_every_wrong_type() {
    let t = start().await;
    let mut ok = bystander(&t).await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    for data in [
        json!(5),
        json!(true),
        json!(null),
        json!([]),
        json!("not json"),
        json!("[1]"),
    ] {
        send(&mut ws, json!({"event": "pusher:subscribe", "data": data})).await;
        expect_error(&recv(&mut ws).await, None, "'data' must be an object");
        send(
            &mut ws,
            json!({"event": "pusher:unsubscribe", "data": data}),
        )
        .await;
        expect_error(&recv(&mut ws).await, None, "'data' must be an object");
        send(&mut ws, json!({"event": "pusher:signin", "data": data})).await;
        expect_error(&recv(&mut ws).await, None, "'data' must be an object");
    }
    for channel in [json!(5), json!(null), json!({"a": 1}), json!(["c"])] {
        send(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        )
        .await;
        expect_error(&recv(&mut ws).await, None, "Missing channel");
    }
    send(&mut ws, json!({"event": "pusher:subscribe", "data": {"channel": "c", "channel_data": {"user_id": 1}}})).await;
    expect_error(
        &recv(&mut ws).await,
        None,
        "'channel_data' must be a string",
    );
    send(&mut ws, json!({"event": 42, "data": {}})).await;
    expect_error(&recv(&mut ws).await, None, "missing string 'event'");
    assert_nothing_queued(&mut ws).await;
    still_served(&t, &mut ok, 1).await;
}

#[tokio::test]
async fn auth_made_for_another_socket_or_app_is_refused() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    let (mut b, _) = connect(t.addr, "key1").await;
    // b replays a's auth
    let auth = private_auth("key1", "secret1", &sa, "private-x");
    send(
        &mut b,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel": "private-x"}}),
    )
    .await;
    expect_error(&recv(&mut b).await, None, "Invalid signature");
    // app 2's valid credentials on app 1's socket
    let auth = private_auth("key2", "secret2", &sa, "private-x");
    send(
        &mut a,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel": "private-x"}}),
    )
    .await;
    expect_error(
        &recv(&mut a).await,
        None,
        "Invalid key in subscription auth data: 'key2'",
    );
    // channels are per app: app 2 cannot see app 1's channel, nor trigger into it
    subscribe_public(&mut a, "shared-name").await;
    let r = api_as(
        t.addr,
        "key2",
        "secret2",
        "GET",
        "/apps/2/channels",
        &[],
        b"",
    )
    .await;
    assert_eq!(r.body, json!({"channels": {}}));
    let body = br#"{"name":"e","channel":"shared-name","data":"from app 2"}"#;
    assert_eq!(
        api_as(
            t.addr,
            "key2",
            "secret2",
            "POST",
            "/apps/2/events",
            &[],
            body
        )
        .await
        .status,
        200
    );
    assert_nothing_queued(&mut a).await;
}

#[tokio::test]
async fn rest_requests_that_are_malformed() {
    let t = start().await;
    let mut ok = bystander(&t).await;
    let body = br#"{"name":"e","channel":"c","data":"x"}"#;
    // wrong content type: the body is still JSON, as Pusher allows
    let q = signed_query(
        "POST",
        "/apps/1/events",
        &[],
        body,
        "key1",
        "secret1",
        now(),
    );
    let r = request(
        t.addr,
        "POST",
        &format!("/apps/1/events?{q}"),
        body,
        &[("content-type", "text/plain")],
    )
    .await;
    assert_eq!((r.status, r.body), (200, json!({})));
    // the same parameter twice
    let r = request(
        t.addr,
        "POST",
        &format!("/apps/1/events?{q}&auth_key=key1"),
        body,
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    // a body shorter than its Content-Length: the server answers 400 once the client gives up
    let r = tokio::time::timeout(WAIT, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
        let head =
            format!("POST /apps/1/events?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(b"{\"name\":").await.unwrap();
        s.shutdown().await.unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).to_string()
    })
    .await
    .expect("answer or close in time");
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    still_served(&t, &mut ok, 1).await;
}
