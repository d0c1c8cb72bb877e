//! A raw HTTP client of the fallback, as pusher-js speaks it: receive requests read frame by
//! frame, `xhr_send` bodies, session paths.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::common::{self, WAIT};

pub const QUERY: &str = "protocol=7&client=js&version=8.4.0&t=1&n=1";

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
pub fn session(n: u32) -> String {
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
