//! A subscriber that stops reading is evicted with a reconnect code; the others get everything.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::common::*;

#[tokio::test]
async fn reader_that_stalls_is_closed_with_4200_and_others_get_everything() {
    let mut c = config();
    c.server.outbox_capacity = 8;
    let t = start_with(c).await;
    let (mut healthy, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut healthy, "flood").await;
    // The stalled client completes the handshake and subscribes, then never reads again.
    let mut stalled = raw_connect(t.addr, "/app/key1?protocol=7").await;
    let _hello = raw_frame(&mut stalled).await;
    raw_send_text(
        &mut stalled,
        r#"{"event":"pusher:subscribe","data":{"channel":"flood"}}"#,
    )
    .await;
    let (_, ok) = raw_frame(&mut stalled).await;
    assert!(String::from_utf8_lossy(&ok).contains("subscription_succeeded"));

    let payload = "x".repeat(10 * 1024);
    let mut sent = 0usize;
    let mut evicted = false;
    // Kernel socket buffers absorb a few MB before the outbox fills; bound the attempt.
    for _ in 0..3000 {
        let body = json!({"name": "e", "channel": "flood", "data": payload});
        assert_eq!(trigger(t.addr, body).await.status, 200);
        sent += 1;
        // Keep the healthy reader drained so only the stalled one falls behind.
        assert_eq!(recv(&mut healthy).await["event"], "e");
        let info = api(
            t.addr,
            "GET",
            "/apps/1/channels/flood",
            &[("info", "subscription_count")],
            b"",
        )
        .await;
        if info.body["subscription_count"] == 1 {
            evicted = true;
            break;
        }
    }
    assert!(
        evicted,
        "the stalled subscriber was not evicted after {sent} events"
    );
    // The stalled client finally reads: queued frames, then pusher:error 4200 and close 4200.
    let mut events = 0usize;
    loop {
        let (op, payload) = raw_frame(&mut stalled).await;
        match op {
            1 => {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                if v["event"] == "pusher:error" {
                    expect_error(&v, Some(4200), "could not keep up");
                } else {
                    assert_eq!(v["event"], "e");
                    events += 1;
                }
            }
            8 => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4200);
                break;
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert!(
        events < sent,
        "eviction happened before everything was written"
    );
    assert_nothing_queued(&mut healthy).await;
}

/// Issue 19 item 4: a client that floods pings and never reads their pongs blocks the server's
/// write of those pongs. That write is bounded like any other: the connection is evicted once
/// it stalls past `pong_timeout`, and its subscriptions go with it.
#[tokio::test]
async fn a_client_that_pings_without_reading_is_evicted() {
    let mut c = config();
    c.server.activity_timeout = 1;
    c.server.pong_timeout = 1;
    let t = start_with(c).await;
    let mut s = raw_connect(t.addr, "/app/key1?protocol=7").await;
    let _hello = raw_frame(&mut s).await;
    raw_send_text(
        &mut s,
        r#"{"event":"pusher:subscribe","data":{"channel":"wedge"}}"#,
    )
    .await;
    let (_, ok) = raw_frame(&mut s).await;
    assert!(String::from_utf8_lossy(&ok).contains("subscription_succeeded"));
    // 200,000 pings with 16-byte payloads (masked, as from a client), in chunks of 10,000.
    let mask = [3u8, 1, 4, 1];
    let mut chunk = Vec::with_capacity(22 * 10_000);
    for _ in 0..10_000 {
        chunk.extend_from_slice(&[0x89, 0x80 | 16]);
        chunk.extend_from_slice(&mask);
        chunk.extend((0..16u8).map(|i| i ^ mask[usize::from(i % 4)]));
    }
    for _ in 0..20 {
        // Once the server stops reading (blocked on our unread pongs), writing blocks too.
        match tokio::time::timeout(Duration::from_secs(1), s.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    // The server must let go of the socket by itself: the channel empties.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = api(t.addr, "GET", "/apps/1/channels/wedge", &[], b"").await;
        if r.body == json!({"occupied": false}) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wedged connection was never closed: {}",
            r.raw
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = t.server.state().clone();
    eventually("the connection to end", || state.connection_count() == 0).await;
}
