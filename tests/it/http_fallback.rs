//! The HTTP fallback over raw HTTP, as pusher-js speaks it (PROTOCOL.md §6): framing, one
//! session across reopened streams and polls, expiry, metrics.

use serde_json::{json, Value};

use crate::common;
use crate::fallback_client::*;

fn subscribed(channel: &str) -> Value {
    json!({"event": "pusher_internal:subscription_succeeded", "channel": channel, "data": "{}"})
}

#[tokio::test]
async fn streaming_session_subscribes_and_receives() {
    let t = common::start().await;
    let s = session(1);
    let (mut stream, sid) = open_stream(t.addr, &s).await;
    assert_eq!(
        stream.headers["content-type"],
        "application/javascript; charset=UTF-8"
    );
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"channel": "news"}}),
    )
    .await;
    assert_eq!(stream.message().await, subscribed("news"));
    let r = common::trigger(
        t.addr,
        json!({"name": "e", "channel": "news", "data": "hi"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        stream.message().await,
        json!({"event": "e", "channel": "news", "data": "hi"})
    );
    // `[]` is a heartbeat: no answer; a ping is answered on the stream.
    assert_eq!(xhr_send(t.addr, &s, "[]").await.status, 204);
    send(t.addr, &s, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(
        stream.message().await,
        json!({"event": "pusher:pong", "data": "{}"})
    );
    // The REST API sees the session as a connection of the channel.
    let info = common::api(
        t.addr,
        "GET",
        "/apps/1/channels/news",
        &[("info", "subscription_count")],
        b"",
    )
    .await;
    assert_eq!(info.body["subscription_count"], 1, "{}", info.raw);
    assert!(sid.contains('.'));
}

#[tokio::test]
async fn polling_session_continues_across_polls() {
    let t = common::start().await;
    let s = session(2);
    let mut poll = receive(t.addr, &format!("{s}/xhr"), None).await;
    assert_eq!(poll.frame().await, "o");
    let hello = poll.message().await;
    assert_eq!(hello["event"], "pusher:connection_established");
    assert_eq!(poll.next().await, None, "a poll answers once");
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"channel": "p"}}),
    )
    .await;
    let mut poll = receive(t.addr, &format!("{s}/xhr"), None).await;
    assert_eq!(poll.message().await, subscribed("p"), "no second o");
    assert_eq!(poll.next().await, None);
    // Frames queued while no poll is open wait for the next one, in order.
    for i in 0..3 {
        common::trigger(
            t.addr,
            json!({"name": "e", "channel": "p", "data": i.to_string()}),
        )
        .await;
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let mut poll = receive(t.addr, &format!("{s}/xhr"), None).await;
        got.extend(poll.messages().await);
        assert_eq!(poll.next().await, None);
    }
    let data: Vec<&str> = got
        .iter()
        .map(|m| m["data"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(data, ["0", "1", "2"]);
}

#[tokio::test]
async fn idle_poll_gets_a_heartbeat() {
    let mut c = common::config();
    c.server.http_heartbeat = 1;
    let t = common::start_with(c).await;
    let s = session(3);
    let mut poll = receive(t.addr, &format!("{s}/xhr"), None).await;
    assert_eq!(poll.frame().await, "o");
    poll.message().await;
    let mut poll = receive(t.addr, &format!("{s}/xhr"), None).await;
    assert_eq!(poll.frame().await, "h");
    assert_eq!(poll.next().await, None);
}

#[tokio::test]
async fn reopened_stream_continues_the_session() {
    let t = common::start().await;
    let s = session(4);
    let (stream, sid) = open_stream(t.addr, &s).await;
    drop(stream);
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"channel": "r"}}),
    )
    .await;
    let mut stream = receive(t.addr, &format!("{s}/xhr_streaming"), None).await;
    assert_eq!(stream.message().await, subscribed("r"), "no second o");
    let r = common::trigger(
        t.addr,
        json!({"name": "e", "channel": "r", "data": "x", "socket_id": sid}),
    )
    .await;
    assert_eq!(r.status, 200);
    // The session's own socket_id is excluded: a ping proves nothing came.
    send(t.addr, &s, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(stream.message().await["event"], "pusher:pong");
}

#[tokio::test]
async fn stream_stops_past_256_kib_and_the_next_one_continues_in_order() {
    let t = common::start().await;
    let s = session(5);
    let (mut first, _) = open_stream(t.addr, &s).await;
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"channel": "big"}}),
    )
    .await;
    assert_eq!(first.message().await, subscribed("big"));
    let payload = "x".repeat(2000);
    let total = 300;
    for i in 0..total {
        let r = common::trigger(
            t.addr,
            json!({"name": "e", "channel": "big", "data": format!("{i}:{payload}")}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let mut got = Vec::new();
    let mut stream = first;
    let mut streams = 1;
    loop {
        while got.len() < total && stream.read <= 256 * 1024 {
            got.extend(stream.messages().await);
        }
        if got.len() == total {
            break;
        }
        // Past 256 KiB pusher-js reopens; the old stream ends without another byte.
        let crossed_at = stream.read;
        let next = receive(t.addr, &format!("{s}/xhr_streaming"), None).await;
        assert_eq!(stream.next().await, None);
        assert_eq!(stream.read, crossed_at);
        stream = next;
        streams += 1;
    }
    assert!(streams >= 2, "{streams}");
    assert_eq!(got.len(), total);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["data"], format!("{i}:{payload}"));
    }
}

#[tokio::test]
async fn expired_session_is_a_closed_connection() {
    let mut c = common::config();
    c.server.http_session_timeout = 1;
    let t = common::start_with(c).await;
    let (mut ws, wsid) = common::connect(t.addr, "key1").await;
    common::subscribe_presence(&mut ws, &wsid, "presence-room", json!("ws"), json!({})).await;
    let s = session(6);
    let (mut stream, sid) = open_stream(t.addr, &s).await;
    let data = json!({"user_id": "http", "user_info": {}}).to_string();
    let auth = common::presence_auth("key1", "secret1", &sid, "presence-room", &data);
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel_data": data, "channel": "presence-room"}}),
    )
    .await;
    assert_eq!(
        stream.message().await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let added = common::recv(&mut ws).await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    drop(stream);
    let removed = common::recv(&mut ws).await;
    assert_eq!(
        removed,
        json!({"event": "pusher_internal:member_removed", "channel": "presence-room", "data": "{\"user_id\":\"http\"}"})
    );
    common::assert_nothing_queued(&mut ws).await;
    let state = t.server.state();
    common::eventually("session unregistered", || state.sessions.is_empty()).await;
    assert_eq!(xhr_send(t.addr, &s, "[]").await.status, 404);
    // Counted like a WebSocket that vanished.
    let (raw, m) = crate::metrics::scrape(&t).await;
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing in:\n{raw}"))
    };
    assert_eq!(get("herald_http_sessions"), 0.0);
    assert_eq!(get("herald_connections"), 1.0, "the WebSocket");
    assert_eq!(get("herald_connections_opened_total"), 2.0);
    assert_eq!(get("herald_connections_closed_total{code=\"1006\"}"), 1.0);
}

#[tokio::test]
async fn client_events_between_http_and_websocket() {
    let t = common::start().await;
    let (mut ws, wsid) = common::connect(t.addr, "key1").await;
    common::subscribe_private(&mut ws, &wsid, "private-chat").await;
    let s = session(11);
    let (mut stream, sid) = open_stream(t.addr, &s).await;
    let auth = common::private_auth("key1", "secret1", &sid, "private-chat");
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel": "private-chat"}}),
    )
    .await;
    assert_eq!(stream.message().await, subscribed("private-chat"));
    send(
        t.addr,
        &s,
        json!({"event": "client-hi", "channel": "private-chat", "data": {"from": "http"}}),
    )
    .await;
    let got = common::recv(&mut ws).await;
    assert_eq!(got["event"], "client-hi");
    assert_eq!(got["data"], json!({"from": "http"}).to_string());
    common::send(
        &mut ws,
        json!({"event": "client-hi", "channel": "private-chat", "data": {"from": "ws"}}),
    )
    .await;
    let got = stream.message().await;
    assert_eq!(got["event"], "client-hi");
    assert_eq!(got["data"], json!({"from": "ws"}).to_string());
}

#[tokio::test]
async fn a_full_stream_gets_no_heartbeats_and_the_next_one_starts_with_messages() {
    let mut c = common::config();
    c.server.http_heartbeat = 1;
    let t = common::start_with(c).await;
    let s = session(15);
    let (mut stream, _) = open_stream(t.addr, &s).await;
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"channel": "full"}}),
    )
    .await;
    assert_eq!(stream.message().await, subscribed("full"));
    let payload = "y".repeat(2000);
    let total = 140;
    for i in 0..total {
        common::trigger(
            t.addr,
            json!({"name": "e", "channel": "full", "data": format!("{i}:{payload}")}),
        )
        .await;
    }
    let mut got = Vec::new();
    while stream.read <= 256 * 1024 {
        got.extend(stream.messages().await);
    }
    assert!(got.len() < total);
    let full_at = stream.read;
    // Two heartbeat intervals pass while the client has not reopened yet.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut next = receive(t.addr, &format!("{s}/xhr_streaming"), None).await;
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.read, full_at, "nothing written past the limit");
    let first = next.frame().await;
    assert!(first.starts_with("a["), "{first}");
    got.extend(messages(&first));
    while got.len() < total {
        got.extend(next.messages().await);
    }
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["data"], format!("{i}:{payload}"));
    }
}
