//! The HTTP fallback over raw HTTP, as pusher-js speaks it (PROTOCOL.md §6): framing, one
//! session across reopened streams and polls, expiry, CORS and bad input.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::common::{self, WAIT};

const QUERY: &str = "protocol=7&client=js&version=8.4.0&t=1&n=1";

/// A receive request (`xhr_streaming` or `xhr`) read line by line.
pub struct Receive {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    body: Incoming,
    buf: String,
    /// UTF-16 units read so far (what pusher-js compares with 256 KiB).
    pub read: usize,
}

/// Opens a receive request on `path` (`/pusher/app/{key}/{server}/{session}/{kind}`).
pub async fn receive(addr: SocketAddr, path: &str, origin: Option<&str>) -> Receive {
    let fut = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut b = Request::builder()
            .method("POST")
            .uri(format!("{path}?{QUERY}"))
            .header("host", addr.to_string())
            .header("content-type", "application/json");
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        let res = sender
            .send_request(b.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        Receive {
            status,
            headers,
            body: res.into_body(),
            buf: String::new(),
            read: 0,
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("response in time")
}

impl Receive {
    /// The next frame line, or `None` when the response ended.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find('\n') {
                let line: String = self.buf.drain(..=i).collect();
                let line = line.trim_end_matches('\n').to_string();
                self.read += line.encode_utf16().count() + 1;
                return Some(line);
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("a chunk in time");
            match frame {
                None => {
                    assert_eq!(self.buf, "", "the response ended inside a frame");
                    return None;
                }
                Some(f) => {
                    let f = f.expect("body ok");
                    if let Ok(data) = f.into_data() {
                        self.buf
                            .push_str(std::str::from_utf8(&data).expect("UTF-8"));
                    }
                }
            }
        }
    }

    /// The next frame, which must be there.
    pub async fn frame(&mut self) -> String {
        self.next().await.expect("the response goes on")
    }

    /// The next frame, which must be `a[...]`: its messages as JSON.
    pub async fn messages(&mut self) -> Vec<Value> {
        let f = self.frame().await;
        messages(&f)
    }

    /// The next single message.
    pub async fn message(&mut self) -> Value {
        let mut m = self.messages().await;
        assert_eq!(m.len(), 1, "{m:?}");
        m.remove(0)
    }
}

/// The messages of an `a[...]` frame.
pub fn messages(frame: &str) -> Vec<Value> {
    let list = frame
        .strip_prefix('a')
        .unwrap_or_else(|| panic!("expected an a frame, got {frame}"));
    let list: Vec<String> = serde_json::from_str(list).expect("a JSON array of strings");
    list.iter()
        .map(|m| serde_json::from_str(m).expect("each message is JSON"))
        .collect()
}

/// POSTs an `xhr_send` body.
pub async fn xhr_send(addr: SocketAddr, session: &str, body: &str) -> common::Reply {
    common::request(
        addr,
        "POST",
        &format!("{session}/xhr_send?t=2&n=2"),
        body.as_bytes(),
        &[("content-type", "application/json")],
    )
    .await
}

/// Sends messages as pusher-js does (one per request) and expects 204.
pub async fn send(addr: SocketAddr, session: &str, message: Value) {
    let body = json!([message.to_string()]).to_string();
    let r = xhr_send(addr, session, &body).await;
    assert_eq!(r.status, 204, "{}", r.raw);
}

/// A fresh session path of app 1.
fn session(n: u32) -> String {
    format!("/pusher/app/key1/{}/sess{n:04}", n % 1000)
}

/// Opens a streaming session and returns its stream and socket_id.
pub async fn open_stream(addr: SocketAddr, session: &str) -> (Receive, String) {
    let mut r = receive(addr, &format!("{session}/xhr_streaming"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.frame().await, "o");
    let hello = r.message().await;
    assert_eq!(hello["event"], "pusher:connection_established");
    let sid = common::data_of(&hello)["socket_id"]
        .as_str()
        .expect("socket_id")
        .to_string();
    (r, sid)
}

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
}

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
