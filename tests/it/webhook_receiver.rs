//! A real local HTTP server that records webhook requests and answers with scripted statuses.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::WAIT;

/// One received request.
#[derive(Debug, Clone)]
pub struct Hook {
    pub content_type: Option<String>,
    pub key: Option<String>,
    pub signature: Option<String>,
    pub headers: hyper::HeaderMap,
    pub raw: String,
    pub body: Value,
}

impl Hook {
    /// The event objects of the body.
    pub fn events(&self) -> Vec<Value> {
        self.body["events"].as_array().cloned().unwrap_or_default()
    }

    /// Asserts the headers and signature are what Pusher's SDK validators check.
    pub fn assert_signed(&self, key: &str, secret: &str) {
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        assert_eq!(self.key.as_deref(), Some(key));
        assert_eq!(
            self.signature.as_deref(),
            Some(herald::auth::sign(secret, self.raw.as_bytes()).as_str())
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let t = self.body["time_ms"].as_i64().expect("time_ms");
        assert!((now - t).abs() < 60_000, "time_ms is fresh");
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Hook>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    pub fn start_on(listener: TcpListener) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let statuses: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let st = statuses.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        let st = st.clone();
                        async move {
                            let h = req.headers().clone();
                            let get =
                                |n: &str| h.get(n).map(|v| v.to_str().unwrap_or("").to_string());
                            let (content_type, key, signature) = (
                                get("content-type"),
                                get("x-pusher-key"),
                                get("x-pusher-signature"),
                            );
                            let raw = String::from_utf8(
                                req.into_body().collect().await.unwrap().to_bytes().to_vec(),
                            )
                            .unwrap();
                            let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
                            let _ = tx.send(Hook {
                                content_type,
                                key,
                                signature,
                                headers: h,
                                raw,
                                body,
                            });
                            let status = st.lock().unwrap().pop_front().unwrap_or(200);
                            let mut res = Response::new(Full::new(Bytes::from_static(b"{}")));
                            *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, rx, statuses }
    }

    pub fn url(&self) -> String {
        format!("http://{}/pusher/webhooks", self.addr)
    }

    /// The next requests will be answered with these statuses (then 200).
    pub fn answer(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }

    /// Answers 200 from now on.
    pub fn clear_answers(&self) {
        self.statuses.lock().unwrap().clear();
    }

    pub async fn next(&mut self) -> Hook {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a webhook in time")
            .expect("receiver open")
    }

    /// The next request's single event.
    pub async fn next_event(&mut self) -> Value {
        let h = self.next().await;
        h.assert_signed("key1", "secret1");
        let events = h.events();
        assert_eq!(
            events.len(),
            1,
            "one event per request without batching: {}",
            h.raw
        );
        events[0].clone()
    }

    pub fn try_next(&mut self) -> Option<Hook> {
        self.rx.try_recv().ok()
    }
}
