//! Test harness: a real `Server` on an ephemeral port, a WebSocket client and a signing
//! REST client. Every await has a timeout so a hung test fails fast.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use herald::config::{AppConfig, Config, LimitsOverride};
use herald::Server;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

pub use crate::raw_ws::*;

pub fn app(id: &str, key: &str, secret: &str) -> AppConfig {
    AppConfig {
        id: id.into(),
        key: key.into(),
        secret: secret.into(),
        enabled: true,
        enable_client_messages: true,
        max_connections: None,
        enable_subscription_count: false,
        enable_watchlist_events: false,
        signin_timeout: None,
        max_requests_per_second: None,
        webhooks: Vec::new(),
        limits: LimitsOverride::default(),
    }
}

/// App 1 (`key1`/`secret1`, client events on), app 2 (client events off),
/// app 3 (disabled), app 4 (one connection max).
pub fn config() -> Config {
    let mut c = Config::development();
    c.server.port = 0;
    c.metrics.port = 0;
    let mut a2 = app("2", "key2", "secret2");
    a2.enable_client_messages = false;
    let mut a3 = app("3", "key3", "secret3");
    a3.enabled = false;
    let mut a4 = app("4", "key4", "secret4");
    a4.max_connections = Some(1);
    c.apps = vec![app("1", "key1", "secret1"), a2, a3, a4];
    c
}

pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
}

pub async fn start() -> TestServer {
    start_with(config()).await
}

pub async fn start_with(config: Config) -> TestServer {
    let server = Server::start(config).await.expect("server starts");
    let addr = server.local_addr();
    TestServer { server, addr }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `path_and_query` without reading anything.
pub async fn open(addr: SocketAddr, path_and_query: &str) -> Ws {
    let url = format!("ws://{addr}{path_and_query}");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("upgrade succeeds");
    ws
}

/// Connects as pusher-js does and returns the socket and its socket_id.
pub async fn connect(addr: SocketAddr, key: &str) -> (Ws, String) {
    let mut ws = open(
        addr,
        &format!("/app/{key}?protocol=7&client=js&version=8.4.0&flash=false"),
    )
    .await;
    let hello = recv(&mut ws).await;
    assert_eq!(hello["event"], "pusher:connection_established");
    let data: Value =
        serde_json::from_str(hello["data"].as_str().expect("data is a string")).unwrap();
    let sid = data["socket_id"]
        .as_str()
        .expect("socket_id string")
        .to_string();
    (ws, sid)
}

/// The next text frame as JSON (control frames are skipped; tungstenite answers pings).
pub async fn recv(ws: &mut Ws) -> Value {
    let text = recv_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub async fn recv_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame ok");
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    send_text(ws, &v.to_string()).await;
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    tokio::time::timeout(WAIT, ws.send(Message::Text(text.into())))
        .await
        .expect("send in time")
        .expect("send ok");
}

/// Sends `pusher:ping` and expects the next frame to be the pong: proves nothing else was queued.
pub async fn assert_nothing_queued(ws: &mut Ws) {
    send(ws, json!({"event": "pusher:ping", "data": {}})).await;
    let next = recv(ws).await;
    assert_eq!(
        next,
        json!({"event": "pusher:pong", "data": "{}"}),
        "unexpected frame before pong"
    );
}

/// Reads until the close frame; returns its code and reason. Text frames before it are returned too.
pub async fn expect_close(ws: &mut Ws) -> (Vec<Value>, u16, String) {
    expect_close_within(ws, WAIT).await
}

/// Like [`expect_close`] with another deadline.
pub async fn expect_close_within(ws: &mut Ws, within: Duration) -> (Vec<Value>, u16, String) {
    let mut texts = Vec::new();
    loop {
        let msg = tokio::time::timeout(within, ws.next())
            .await
            .expect("close in time");
        match msg {
            Some(Ok(Message::Text(t))) => texts.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(Some(f)))) => {
                return (texts, u16::from(f.code), f.reason.to_string())
            }
            Some(Ok(Message::Close(None))) => {
                return (texts, u16::from(CloseCode::Status), String::new())
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Connects and asserts the server refuses with `pusher:error` + close `code`.
pub async fn expect_refused(addr: SocketAddr, path: &str, code: u16) {
    let mut ws = open(addr, path).await;
    let (texts, got, _) = expect_close(&mut ws).await;
    assert_eq!(got, code, "close code for {path}");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["event"], "pusher:error");
    assert_eq!(texts[0]["data"]["code"], code);
    assert!(texts[0]["data"]["message"].is_string());
}

pub fn sign(secret: &str, s: &str) -> String {
    herald::auth::sign(secret, s.as_bytes())
}

pub fn private_auth(key: &str, secret: &str, socket_id: &str, channel: &str) -> String {
    format!("{key}:{}", sign(secret, &format!("{socket_id}:{channel}")))
}

pub fn presence_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    data: &str,
) -> String {
    format!(
        "{key}:{}",
        sign(secret, &format!("{socket_id}:{channel}:{data}"))
    )
}

pub async fn subscribe_public(ws: &mut Ws, channel: &str) {
    send(
        ws,
        json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": channel}}),
    )
    .await;
    let ok = recv(ws).await;
    assert_eq!(
        ok,
        json!({"event": "pusher_internal:subscription_succeeded", "channel": channel, "data": "{}"})
    );
}

pub async fn subscribe_private(ws: &mut Ws, sid: &str, channel: &str) {
    let auth = private_auth("key1", "secret1", sid, channel);
    send(
        ws,
        json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel": channel}}),
    )
    .await;
    let ok = recv(ws).await;
    assert_eq!(
        ok,
        json!({"event": "pusher_internal:subscription_succeeded", "channel": channel, "data": "{}"})
    );
}

/// Subscribes to a presence channel of app 1 and returns the decoded `presence` object.
pub async fn subscribe_presence(
    ws: &mut Ws,
    sid: &str,
    channel: &str,
    user_id: Value,
    info: Value,
) -> Value {
    let data = json!({"user_id": user_id, "user_info": info}).to_string();
    let auth = presence_auth("key1", "secret1", sid, channel, &data);
    send(ws, json!({"event": "pusher:subscribe", "data": {"auth": auth, "channel_data": data, "channel": channel}})).await;
    let ok = recv(ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], channel);
    let payload: Value = serde_json::from_str(ok["data"].as_str().expect("string data")).unwrap();
    payload["presence"].clone()
}

/// Parses a frame's string `data`.
pub fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("string data")).expect("data is JSON")
}

pub fn expect_error(frame: &Value, code: Option<u16>, message_contains: &str) {
    assert_eq!(frame["event"], "pusher:error", "{frame}");
    assert_eq!(
        frame["data"]["code"],
        code.map(Value::from).unwrap_or(Value::Null),
        "{frame}"
    );
    let msg = frame["data"]["message"].as_str().expect("message string");
    assert!(
        msg.contains(message_contains),
        "{msg:?} should contain {message_contains:?}"
    );
}

// ---------- REST ----------

pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Value,
    pub raw: String,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Builds a signed query string for a request (node-SDK style: body_md5 only with a body).
pub fn signed_query(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    key: &str,
    secret: &str,
    ts: u64,
) -> String {
    herald::auth::rest::signed_query(method, path, extra, body, key, secret, ts)
}

/// Sends a raw request and returns the reply.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Reply {
    let fut = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut b = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", addr.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let raw = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            body,
            raw,
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("reply in time")
}

/// A correctly signed request for app 1.
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    api_as(addr, "key1", "secret1", method, path, extra, body).await
}

pub async fn api_as(
    addr: SocketAddr,
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let q = signed_query(method, path, extra, body, key, secret, now());
    request(
        addr,
        method,
        &format!("{path}?{q}"),
        body,
        &[("content-type", "application/json")],
    )
    .await
}

pub async fn trigger(addr: SocketAddr, body: Value) -> Reply {
    api(
        addr,
        "POST",
        "/apps/1/events",
        &[],
        body.to_string().as_bytes(),
    )
    .await
}

/// The `pusher:signin` frame for app 1.
pub fn signin_frame(sid: &str, user_data: &str) -> Value {
    let auth = format!(
        "key1:{}",
        sign("secret1", &format!("{sid}::user::{user_data}"))
    );
    json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})
}

/// Signs in on app 1 and asserts `pusher:signin_success`.
pub async fn signin(ws: &mut Ws, sid: &str, user_data: &str) {
    send(ws, signin_frame(sid, user_data)).await;
    let reply = recv(ws).await;
    assert_eq!(
        reply,
        json!({"event": "pusher:signin_success", "data": {"user_data": user_data}})
    );
}

/// Waits (bounded) for server-side state that has no client-visible event, such as the
/// bookkeeping after a client vanished. Checks often, fails after `WAIT`.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (bounded) until something listens on 127.0.0.1:`port` (a spawned herald binary).
pub async fn wait_listening(port: u16) -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::time::timeout(WAIT, async {
        while TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("herald listens");
    addr
}

/// Writes a config file for a spawned herald binary and returns its path.
pub fn write_config(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, contents).unwrap();
    file
}
