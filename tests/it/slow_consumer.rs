//! A subscriber that stops reading is evicted with a reconnect code; the others get everything.

use serde_json::json;

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
