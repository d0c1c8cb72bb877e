//! HTTP-fallback edges over raw HTTP: CORS, bad input, refused sessions, the outbox bound and
//! shutdown.

use std::net::SocketAddr;

use serde_json::json;
use tokio::net::TcpStream;

use crate::common::{self, WAIT};
use crate::fallback_client::*;

#[tokio::test]
async fn cors_preflight_and_headers() {
    let t = common::start().await;
    let s = session(7);
    let r = common::request(
        t.addr,
        "OPTIONS",
        &format!("{s}/xhr_streaming?{QUERY}"),
        b"",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    let mut stream = receive(
        t.addr,
        &format!("{s}/xhr_streaming"),
        Some("https://app.example"),
    )
    .await;
    assert_eq!(
        stream.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(stream.headers["access-control-allow-credentials"], "true");
    assert_eq!(stream.frame().await, "o");
    assert_eq!(
        stream.message().await["event"],
        "pusher:connection_established"
    );
    let preflight = raw_headers(t.addr, &format!("{s}/xhr_send")).await;
    for want in [
        "access-control-allow-origin: https://app.example",
        "access-control-allow-methods: post, options",
        "access-control-allow-headers: content-type",
        "access-control-max-age: 86400",
    ] {
        assert!(preflight.contains(want), "{want} missing in {preflight}");
    }
    let sent = common::request(
        t.addr,
        "POST",
        &format!("{s}/xhr_send"),
        b"[]",
        &[
            ("origin", "https://app.example"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(sent.status, 204);
    let unknown = common::request(
        t.addr,
        "POST",
        "/pusher/app/key1/1/nosuch/xhr_send",
        b"[]",
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(unknown.status, 404);
    // Without an Origin, any origin may read.
    let plain = receive(t.addr, &format!("{s}/xhr_streaming"), None).await;
    assert_eq!(plain.headers["access-control-allow-origin"], "*");
    assert_eq!(
        stream.next().await,
        None,
        "the newer stream replaced this one"
    );
}

/// The head of an OPTIONS answer, lower-cased.
async fn raw_headers(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://app.example\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\
             Connection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.to_ascii_lowercase()
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("answer in time")
}

#[tokio::test]
async fn bad_input() {
    let t = common::start().await;
    let s = session(8);
    let (mut stream, _) = open_stream(t.addr, &s).await;
    // Malformed bodies: 400, the session lives on.
    for body in ["", "{}", "[1]", "not json"] {
        let r = xhr_send(t.addr, &s, body).await;
        assert_eq!(r.status, 400, "{body:?}");
    }
    send(t.addr, &s, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(stream.message().await["event"], "pusher:pong");
    // Wrong method, unknown paths.
    let get = common::request(t.addr, "GET", &format!("{s}/xhr_streaming"), b"", &[]).await;
    assert_eq!(get.status, 405);
    let other = common::request(t.addr, "POST", "/pusher/app/key1/1/s/eventsource", b"", &[]).await;
    assert_eq!(other.status, 404);
    // An oversized message: 413, and the session ends as a WebSocket would (1009).
    let big = json!(["x".repeat(70 * 1024)]).to_string();
    let r = xhr_send(t.addr, &s, &big).await;
    assert_eq!(r.status, 413);
    let error = stream.message().await;
    common::expect_error(&error, None, "Message too big");
    assert_eq!(stream.frame().await, r#"c[1009,"Message too big"]"#);
    assert_eq!(stream.next().await, None);
}

#[tokio::test]
async fn refused_sessions_get_the_websocket_codes() {
    let mut c = common::config();
    c.server.max_connections = 1;
    let t = common::start_with(c).await;
    for (key, code, message) in [
        ("nokey", 4001, "Application does not exist"),
        ("key3", 4003, "Application disabled"),
    ] {
        let mut r = receive(
            t.addr,
            &format!("/pusher/app/{key}/1/abc/xhr_streaming"),
            None,
        )
        .await;
        assert_eq!(r.frame().await, "o");
        let error = r.message().await;
        common::expect_error(&error, Some(code), message);
        assert_eq!(r.frame().await, format!("c[{code},{}]", json!(message)));
        assert_eq!(r.next().await, None);
    }
    // The node's connection limit bounds sessions too.
    let (_held, _) = open_stream(t.addr, &session(9)).await;
    let mut r = receive(t.addr, &format!("{}/xhr_streaming", session(10)), None).await;
    assert_eq!(r.frame().await, "o");
    common::expect_error(&r.message().await, Some(4100), "Over capacity");
    assert_eq!(r.frame().await, r#"c[4100,"Over capacity"]"#);
    assert_eq!(r.next().await, None);
    let state = t.server.state();
    common::eventually("refused sessions unregistered", || {
        state.sessions.len() == 1
    })
    .await;
}

#[tokio::test]
async fn frames_held_without_a_receive_are_bounded_like_any_outbox() {
    let mut c = common::config();
    c.server.outbox_capacity = 4;
    let t = common::start_with(c).await;
    let s = session(12);
    let (stream, _) = open_stream(t.addr, &s).await;
    drop(stream);
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"channel": "flood"}}),
    )
    .await;
    // The subscription reply and three events fill the outbox; the fifth frame overflows it.
    for i in 0..4 {
        common::trigger(
            t.addr,
            json!({"name": "e", "channel": "flood", "data": i.to_string()}),
        )
        .await;
    }
    let mut r = receive(t.addr, &format!("{s}/xhr_streaming"), None).await;
    let error = r.message().await;
    common::expect_error(&error, Some(4200), "could not keep up");
    assert_eq!(
        r.frame().await,
        r#"c[4200,"Connection could not keep up, reconnect immediately"]"#
    );
    assert_eq!(r.next().await, None);
    let state = t.server.state();
    common::eventually("session unregistered", || state.sessions.is_empty()).await;
}

#[tokio::test]
async fn shutdown_closes_a_streaming_session_with_4200() {
    let t = common::start().await;
    let (mut stream, _) = open_stream(t.addr, &session(13)).await;
    // (A polling session between polls cannot be told: the listener is closed. Its client's
    // next poll fails and pusher-js reconnects, as after a vanished WebSocket.)
    let stopping = tokio::spawn(t.server.shutdown());
    let closing = r#"c[4200,"Server is shutting down, reconnect immediately"]"#;
    common::expect_error(&stream.message().await, Some(4200), "shutting down");
    assert_eq!(stream.frame().await, closing);
    assert_eq!(stream.next().await, None);
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task");
}

/// A streaming client that stops reading is evicted like a slow WebSocket: the session's task
/// writes the stream on its socket until the socket takes no more (stall limit) or the stream
/// reaches pusher-js's 256 KiB, then frames wait in the bounded outbox, and its overflow ends the
/// session; the other connections go on.
#[tokio::test]
async fn a_stream_nobody_reads_is_evicted() {
    use std::sync::atomic::Ordering;
    let mut c = common::config();
    c.server.pong_timeout = 1;
    c.server.outbox_capacity = 64;
    let t = common::start_with(c).await;
    let s = session(14);
    let head =
        format!("POST {s}/xhr_streaming?{QUERY} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    let (raw, _) = raw_stream(t.addr, &head).await;
    send(
        t.addr,
        &s,
        json!({"event": "pusher:subscribe", "data": {"channel": "unread"}}),
    )
    .await;
    let (mut ws, _) = common::connect(t.addr, "key1").await;
    common::subscribe_public(&mut ws, "unread").await;
    // A WebSocket subscriber reading all along: it gets every event, in order, until "done".
    let reader = tokio::spawn(async move {
        let mut n = 0;
        loop {
            let m = common::recv(&mut ws).await;
            if m["event"] == "done" {
                return (n, ws);
            }
            let data = m["data"].as_str().expect("string data");
            assert!(data.starts_with(&format!("{n}:")), "event {n} out of order");
            n += 1;
        }
    });
    // From here on `raw` is never read.
    let state = t.server.state();
    let pad = "x".repeat(8000);
    let mut sent = 0;
    while !state.sessions.is_empty() {
        assert!(sent < 2_000, "still not evicted after {sent} events");
        let r = common::trigger(
            t.addr,
            json!({"name": "e", "channel": "unread", "data": format!("{sent}:{pad}")}),
        )
        .await;
        assert_eq!(r.status, 200);
        sent += 1;
        if sent % 100 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(state.metrics.evictions.load(Ordering::Relaxed), 1);
    let r = common::trigger(
        t.addr,
        json!({"name": "done", "channel": "unread", "data": "{}"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let (received, mut ws) = tokio::time::timeout(WAIT * 4, reader)
        .await
        .expect("the reader finishes")
        .expect("reader task");
    assert_eq!(received, sent);
    common::send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(common::recv(&mut ws).await["event"], "pusher:pong");
    drop(raw);
}

/// Sends a streaming request on a fresh connection and reads until `connection_established`
/// arrived: the socket and what it read so far.
async fn raw_stream(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("connection_established") {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("frames in time")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    (s, String::from_utf8_lossy(&got).into_owned())
}

/// What a raw request on a fresh connection gets: (status line, the rest), lower-cased.
async fn raw_answer(addr: SocketAddr, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
        let (status, rest) = out.split_once("\r\n").unwrap_or((out.as_str(), ""));
        (status.to_string(), rest.to_string())
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("answer in time")
}

/// A connection that starts with `xhr_streaming` is answered outside hyper: the same framing
/// and the same codes for bad requests as everywhere else.
#[tokio::test]
async fn streaming_requests_answered_on_the_socket() {
    let t = common::start().await;
    let path = "/pusher/app/key1/123/rawstream/xhr_streaming?protocol=7&t=1";
    // A body of 5 KiB: 413; a chunked body: 400; a malformed head: 400; a head past 16 KiB:
    // 431; an unknown path: 404.
    let big = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5120\r\n\r\n{}",
        "x".repeat(5120)
    );
    assert_eq!(
        raw_answer(t.addr, big.as_bytes()).await.0,
        "http/1.1 413 payload too large"
    );
    let chunked =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(
        raw_answer(t.addr, chunked.as_bytes()).await.0,
        "http/1.1 400 bad request"
    );
    let malformed = format!("POST {path} HTTP/1.1\r\nHost x\r\n\r\n");
    assert_eq!(
        raw_answer(t.addr, malformed.as_bytes()).await.0,
        "http/1.1 400 bad request"
    );
    let huge = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "y".repeat(17 * 1024)
    );
    assert_eq!(
        raw_answer(t.addr, huge.as_bytes()).await.0,
        "http/1.1 431 request header fields too large"
    );
    let unknown = b"POST /pusher/app/key1/1/s-x/xhr_streaming HTTP/1.1\r\nHost: x\r\n\r\n";
    let (status, rest) = raw_answer(t.addr, unknown).await;
    assert_eq!(status, "http/1.1 404 not found");
    assert!(rest.ends_with(r#"{"error":"not found"}"#), "{rest}");
    // A good one with a small body: the open frame and connection_established, chunked, with
    // CORS; closing the socket ends the receive request (the session then expires).
    let good = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nContent-Length: 2\r\n\r\n[]"
    );
    let (_s, text) = raw_stream(t.addr, &good).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\naccess-control-allow-origin: https://app.example\r\n"),
        "{text}"
    );
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    // One chunk (hex length, CRLF) carrying the open frame first.
    let (len, chunk) = body.split_once("\r\n").expect("a chunk");
    assert!(
        usize::from_str_radix(len, 16).is_ok_and(|n| n > 2),
        "{body}"
    );
    assert!(chunk.starts_with("o\na["), "{body}");
}
