//! REST endpoints and delivery (§15 items 56–63, 109–135).

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn trigger_delivers_exact_data_to_each_channel_once() {
    let t = start().await;
    let (mut a, _) = connect(t.addr, "key1").await;
    let (mut b, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "ch-1").await;
    subscribe_public(&mut a, "ch-2").await;
    subscribe_public(&mut b, "ch-3").await;
    let r = trigger(t.addr, json!({"name": "my-event", "channels": ["ch-1", "ch-2", "ch-3"], "data": "{\"message\":\"hello\"}"})).await;
    assert_eq!((r.status, r.body), (200, json!({})));
    let mut got = [recv(&mut a).await, recv(&mut a).await];
    got.sort_by_key(|v| v["channel"].as_str().unwrap().to_string());
    assert_eq!(
        got[0],
        json!({"event": "my-event", "channel": "ch-1", "data": "{\"message\":\"hello\"}"})
    );
    assert_eq!(
        got[1],
        json!({"event": "my-event", "channel": "ch-2", "data": "{\"message\":\"hello\"}"})
    );
    assert_eq!(
        recv(&mut b).await,
        json!({"event": "my-event", "channel": "ch-3", "data": "{\"message\":\"hello\"}"})
    );
    assert_nothing_queued(&mut a).await;
    assert_nothing_queued(&mut b).await;
}

#[tokio::test]
async fn data_forms_and_unicode() {
    let t = start().await;
    let (mut a, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "c").await;
    for data in [
        json!("not json at all"),
        json!("caf\u{e9} \u{1F600} \"quoted\" \\ back"),
        json!(""),
    ] {
        assert_eq!(
            trigger(t.addr, json!({"name": "e", "channel": "c", "data": data}))
                .await
                .status,
            200
        );
        assert_eq!(recv(&mut a).await["data"], data);
    }
    // non-string data is serialized to a string
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "e", "channel": "c", "data": {"a": [1, true]}})
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut a).await["data"], "{\"a\":[1,true]}");
    // Laravel-style names
    let r = trigger(
        t.addr,
        json!({"name": "App\\Events\\OrderShipped", "channel": "c", "data": "{}"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(recv(&mut a).await["event"], "App\\Events\\OrderShipped");
}

#[tokio::test]
async fn socket_id_excludes_exactly_that_connection_on_every_channel() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    let (mut b, _) = connect(t.addr, "key1").await;
    for ch in ["x", "y"] {
        subscribe_public(&mut a, ch).await;
        subscribe_public(&mut b, ch).await;
    }
    let r = trigger(
        t.addr,
        json!({"name": "e", "channels": ["x", "y"], "data": "d", "socket_id": sa}),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut chans = vec![
        recv(&mut b).await["channel"].as_str().unwrap().to_string(),
        recv(&mut b).await["channel"].as_str().unwrap().to_string(),
    ];
    chans.sort();
    assert_eq!(chans, ["x", "y"]);
    assert_nothing_queued(&mut a).await;
}

#[tokio::test]
async fn events_arrive_in_publish_order_for_every_subscriber() {
    let t = start().await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = connect(t.addr, "key1").await;
        subscribe_public(&mut ws, "ordered").await;
        subs.push(ws);
    }
    for i in 0..50 {
        assert_eq!(
            trigger(
                t.addr,
                json!({"name": "n", "channel": "ordered", "data": i.to_string()})
            )
            .await
            .status,
            200
        );
    }
    for ws in subs.iter_mut() {
        for i in 0..50 {
            assert_eq!(recv(ws).await["data"], i.to_string());
        }
    }
}

#[tokio::test]
async fn encrypted_payload_is_relayed_untouched() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    subscribe_private(&mut a, &sa, "private-encrypted-x").await;
    let data = r#"{"nonce":"aGVsbG8gd29ybGQgbm9uY2UgMjQh","ciphertext":"c2VjcmV0IGJ5dGVz"}"#;
    assert_eq!(
        trigger(
            t.addr,
            json!({"name": "e", "channel": "private-encrypted-x", "data": data})
        )
        .await
        .status,
        200
    );
    assert_eq!(recv(&mut a).await["data"], data);
}

#[tokio::test]
async fn trigger_validation() {
    let t = start().await;
    let chans = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
    let cases: Vec<(Value, u16)> = vec![
        (json!({"name": "e", "channel": "single", "data": "x"}), 200),
        (
            json!({"name": "e", "channels": chans(100), "data": "x"}),
            200,
        ),
        (
            json!({"name": "e", "channels": chans(101), "data": "x"}),
            400,
        ),
        (
            json!({"name": "e", "channel": "c", "data": "x".repeat(10240)}),
            200,
        ),
        (
            json!({"name": "e", "channel": "c", "data": "x".repeat(10241)}),
            413,
        ),
        (
            json!({"name": "n".repeat(201), "channel": "c", "data": "x"}),
            400,
        ),
        (
            json!({"name": "pusher:foo", "channel": "c", "data": "x"}),
            400,
        ),
        (
            json!({"name": "e", "channel": "c", "data": "x", "socket_id": "nope"}),
            400,
        ),
        (
            json!({"name": "e", "channel": "bad name", "data": "x"}),
            400,
        ),
        (
            json!({"name": "e", "channel": "#server-to-user-5", "data": "x"}),
            200,
        ),
        (json!({"channel": "c", "data": "x"}), 400),
        (json!({"name": "e", "channel": "c"}), 400),
        (json!({"name": "e", "data": "x"}), 400),
        (
            json!({"name": "e", "channels": ["private-encrypted-a", "b"], "data": "x"}),
            400,
        ),
        (
            json!({"name": "e", "channel": "c", "data": "x", "info": "nonsense"}),
            400,
        ),
    ];
    for (body, status) in cases {
        let r = trigger(t.addr, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.raw);
        if status == 200 {
            assert_eq!(r.body, json!({}));
        } else {
            assert!(r.body["error"].is_string(), "{}", r.raw);
        }
    }
    let r = api(t.addr, "POST", "/apps/1/events", &[], b"{not json").await;
    assert_eq!(r.status, 400);
    let r = api(t.addr, "POST", "/apps/1/events", &[], &[0xff, 0xfe]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let t = start().await;
    let body = vec![b' '; 300 * 1024];
    let r = api(t.addr, "POST", "/apps/1/events", &[], &body).await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn batch_events() {
    let t = start().await;
    let (mut a, sa) = connect(t.addr, "key1").await;
    subscribe_public(&mut a, "b1").await;
    subscribe_presence(&mut a, &sa, "presence-b", json!("u"), Value::Null).await;
    let batch = json!({"batch": [
        {"channel": "b1", "name": "e1", "data": "{\"a\":1}"},
        {"channel": "presence-b", "name": "e2", "data": "{\"b\":2}", "info": "user_count"},
    ]});
    let r = api(
        t.addr,
        "POST",
        "/apps/1/batch_events",
        &[],
        batch.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.body),
        (200, json!({"batch": [{}, {"user_count": 1}]}))
    );
    assert_eq!(
        recv(&mut a).await,
        json!({"event": "e1", "channel": "b1", "data": "{\"a\":1}"})
    );
    assert_eq!(
        recv(&mut a).await,
        json!({"event": "e2", "channel": "presence-b", "data": "{\"b\":2}"})
    );
    let plain = json!({"batch": [{"channel": "b1", "name": "e", "data": "x"}]});
    let r = api(
        t.addr,
        "POST",
        "/apps/1/batch_events",
        &[],
        plain.to_string().as_bytes(),
    )
    .await;
    assert_eq!((r.status, r.body), (200, json!({})));
    assert_eq!(recv(&mut a).await["data"], "x");
    // one bad event: nothing is published
    let bad = json!({"batch": [{"channel": "b1", "name": "ok", "data": "x"}, {"channel": "b1", "name": "pusher:no", "data": "x"}]});
    let r = api(
        t.addr,
        "POST",
        "/apps/1/batch_events",
        &[],
        bad.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400);
    let eleven = json!({"batch": vec![json!({"channel": "b1", "name": "e", "data": "x"}); 11]});
    let r = api(
        t.addr,
        "POST",
        "/apps/1/batch_events",
        &[],
        eleven.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_nothing_queued(&mut a).await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let t = start().await;
    assert_eq!(
        api(t.addr, "GET", "/apps/1/events", &[], b"").await.status,
        405
    );
    assert_eq!(
        api(t.addr, "GET", "/apps/1/nope", &[], b"").await.status,
        404
    );
    assert_eq!(api(t.addr, "GET", "/apps/1", &[], b"").await.status, 404);
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let t = start().await;
    let stream = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..5 {
        let body = json!({"name": "e", "channel": "c", "data": i.to_string()}).to_string();
        let q = signed_query(
            "POST",
            "/apps/1/events",
            &[],
            body.as_bytes(),
            "key1",
            "secret1",
            now(),
        );
        let req = hyper::Request::post(format!("/apps/1/events?{q}"))
            .header("host", "x")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let res = tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.status(), 200);
        let _ = res.into_body().collect().await.unwrap();
    }
}

#[tokio::test]
async fn app_rest_rate_limit_answers_429_with_retry_after() {
    let mut c = config();
    c.apps[0].max_requests_per_second = Some(3);
    let t = start_with(c).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let q = signed_query(
            "GET",
            "/apps/1/channels",
            &[],
            b"",
            "key1",
            "secret1",
            now(),
        );
        let stream = tokio::net::TcpStream::connect(t.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("/apps/1/channels?{q}"))
            .header("host", "x")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(retry_after.as_deref(), Some("1"));
    // unauthenticated requests do not spend the quota of another app and are refused first
    let bad = request(
        t.addr,
        "GET",
        "/apps/2/channels?auth_key=key2&auth_timestamp=1&auth_version=1.0&auth_signature=00",
        b"",
        &[],
    )
    .await;
    assert_eq!(bad.status, 401);
}
