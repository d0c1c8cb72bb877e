//! Ping/pong and the activity timeout (§15 items 20–26). Timeouts are shortened to 1 s in config
//! and every wait is an awaited frame with a deadline.

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test]
async fn pusher_ping_gets_pong_with_and_without_data() {
    let t = start().await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"event": "pusher:pong", "data": "{}"})
    );
    send_text(&mut ws, r#"{"event": "pusher:ping"}"#).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"event": "pusher:pong", "data": "{}"})
    );
}

#[tokio::test]
async fn websocket_ping_gets_pong_frame() {
    let t = start().await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let msg = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg, Message::Pong(b"hi".to_vec().into()));
}

fn short_timeouts() -> herald::config::Config {
    let mut c = config();
    c.server.activity_timeout = 1;
    c.server.pong_timeout = 1;
    c
}

/// Reads the next frame and asserts it is the server's Ping.
async fn await_server_ping(ws: &mut Ws) {
    let msg = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("ping in time")
        .unwrap()
        .unwrap();
    assert!(
        matches!(msg, Message::Ping(_)),
        "expected a ping, got {msg:?}"
    );
}

#[tokio::test]
async fn silent_client_is_pinged_then_closed_with_4201() {
    let t = start_with(short_timeouts()).await;
    let mut s = raw_connect(t.addr, "/app/key1?protocol=7").await;
    let (op, hello) = raw_frame(&mut s).await;
    assert_eq!(op, 1);
    let hello: serde_json::Value = serde_json::from_slice(&hello).unwrap();
    assert_eq!(data_of(&hello)["activity_timeout"], 1);
    let (op, _) = raw_frame(&mut s).await;
    assert_eq!(op, 9, "a WebSocket Ping frame");
    // We never answer: the server gives up after the pong wait.
    let (op, err) = raw_frame(&mut s).await;
    assert_eq!(op, 1);
    let err: serde_json::Value = serde_json::from_slice(&err).unwrap();
    expect_error(&err, Some(4201), "Pong reply not received");
    let (op, close) = raw_frame(&mut s).await;
    assert_eq!(op, 8);
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4201);
    assert_eq!(&close[2..], b"Pong reply not received");
}

#[tokio::test]
async fn answering_pings_keeps_the_connection() {
    let t = start_with(short_timeouts()).await;
    let (mut ws, _) = connect(t.addr, "key1").await;
    for _ in 0..3 {
        await_server_ping(&mut ws).await;
        ws.send(Message::Pong(Vec::new().into())).await.unwrap();
    }
    // Still open: a pusher:ping is answered.
    send(&mut ws, json!({"event": "pusher:ping"})).await;
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Text(t) => {
                assert_eq!(t.as_str(), r#"{"event":"pusher:pong","data":"{}"}"#);
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}
