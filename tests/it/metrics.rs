//! `/metrics` after real traffic.

use std::collections::HashMap;

use serde_json::json;

use crate::common::*;

pub async fn scrape(t: &TestServer) -> (String, HashMap<String, f64>) {
    let addr = t.server.metrics_addr().expect("metrics served");
    let r = request(addr, "GET", "/metrics", b"", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("text/plain; version=0.0.4"));
    let values = r
        .raw
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            l.rsplit_once(' ')
                .and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        })
        .collect();
    (r.raw, values)
}

#[tokio::test]
async fn metrics_count_real_traffic() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    let (mut b, sb) = connect(t.addr, "key1").await;
    subscribe_private(&mut a, &sa, "private-m").await;
    subscribe_private(&mut b, &sb, "private-m").await;
    subscribe_presence(
        &mut a,
        &sa,
        "presence-m",
        json!("u1"),
        serde_json::Value::Null,
    )
    .await;
    for i in 0..3 {
        assert_eq!(
            trigger(
                t.addr,
                json!({"name": "e", "channel": "private-m", "data": i.to_string()})
            )
            .await
            .status,
            200
        );
    }
    let bad = request(
        t.addr,
        "POST",
        "/apps/1/events?auth_key=key1&auth_timestamp=1&auth_version=1.0&auth_signature=00",
        b"",
        &[],
    )
    .await;
    assert_eq!(bad.status, 401);
    send(
        &mut a,
        json!({"event": "client-x", "channel": "private-m", "data": {}}),
    )
    .await;
    for _ in 0..4 {
        recv(&mut b).await;
    }
    for _ in 0..3 {
        recv(&mut a).await;
    }
    b.close(None).await.unwrap();
    drop(b);
    let state = t.server.state().clone();
    eventually("b to be gone", || state.connection_count() == 1).await;
    assert_nothing_queued(&mut a).await;
    let (raw, m) = scrape(&t).await;
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing in:\n{raw}"))
    };
    assert_eq!(get("herald_connections"), 1.0);
    assert_eq!(get("herald_app_connections{app=\"1\"}"), 1.0);
    assert_eq!(get("herald_connections_opened_total"), 2.0);
    assert_eq!(get("herald_connections_closed_total{code=\"0\"}"), 1.0);
    assert_eq!(get("herald_broadcasts_total{source=\"rest\"}"), 3.0);
    assert_eq!(get("herald_broadcasts_total{source=\"client_event\"}"), 1.0);
    assert_eq!(
        get("herald_rest_requests_total{endpoint=\"events\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        get("herald_rest_requests_total{endpoint=\"events\",status=\"401\"}"),
        1.0
    );
    assert_eq!(
        get("herald_rest_request_seconds_count{endpoint=\"events\"}"),
        4.0
    );
    assert_eq!(get("herald_channels"), 2.0);
    assert_eq!(get("herald_presence_members"), 1.0);
    assert_eq!(get("herald_adapter_up"), 1.0);
    // a: established, 2 subscription answers, 3 events, pong; b: established, 1, 3 events + client event
    assert_eq!(get("herald_messages_out_total"), 7.0 + 6.0);
    // a: 2 subscribes, client event, ping; b: 1 subscribe
    assert_eq!(get("herald_messages_in_total"), 5.0);
    assert_eq!(get("herald_outbox_evictions_total"), 0.0);
    assert_eq!(get("herald_webhook_queue"), 0.0);
    assert_eq!(get("herald_adapter_publish_pipelines_total"), 0.0);
    assert_eq!(get("herald_adapter_dropped_total"), 0.0);
    let r = request(t.server.metrics_addr().unwrap(), "GET", "/other", b"", &[]).await;
    assert_eq!(r.status, 404);
}

/// The `herald_connections_closed_total` samples, by code.
async fn closed_by_code(t: &TestServer) -> Vec<(String, f64)> {
    let (_, m) = scrape(t).await;
    let mut closed: Vec<(String, f64)> = m
        .into_iter()
        .filter(|(k, _)| k.starts_with("herald_connections_closed_total"))
        .collect();
    closed.sort_by(|a, b| a.0.cmp(&b.0));
    closed
}

#[tokio::test]
async fn a_vanished_client_is_1006_and_a_protocol_violation_1002() {
    let t = start().await;
    let state = t.server.state().clone();
    // end of stream without a close frame
    let mut gone = raw_connect(t.addr, "/app/key1?protocol=7").await;
    raw_frame(&mut gone).await;
    drop(gone);
    eventually("the vanished socket to be gone", || {
        state.connection_count() == 0
    })
    .await;
    // a reset (SO_LINGER 0) without a close frame
    let mut reset = raw_connect(t.addr, "/app/key1?protocol=7").await;
    raw_frame(&mut reset).await;
    // Deprecated because a non-zero linger blocks on drop; zero resets at once, which is the point.
    #[allow(deprecated)]
    reset.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(reset);
    eventually("the reset socket to be gone", || {
        state.connection_count() == 0
    })
    .await;
    // an unmasked client frame breaks RFC 6455
    let mut rude = raw_connect(t.addr, "/app/key1?protocol=7").await;
    raw_frame(&mut rude).await;
    raw_send_frame(&mut rude, 1, br#"{"event":"pusher:ping"}"#, false).await;
    assert_eq!(raw_close_code(&mut rude).await, 1002);
    drop(rude);
    eventually("the rude socket to be gone", || {
        state.connection_count() == 0
    })
    .await;
    // a clean close by the client
    let (mut polite, _) = connect(t.addr, "key1").await;
    polite.close(None).await.unwrap();
    eventually("the polite socket to be gone", || {
        state.connection_count() == 0
    })
    .await;
    assert_eq!(
        closed_by_code(&t).await,
        [
            (
                "herald_connections_closed_total{code=\"0\"}".to_string(),
                1.0
            ),
            (
                "herald_connections_closed_total{code=\"1002\"}".to_string(),
                1.0
            ),
            (
                "herald_connections_closed_total{code=\"1006\"}".to_string(),
                2.0
            ),
        ]
    );
}
