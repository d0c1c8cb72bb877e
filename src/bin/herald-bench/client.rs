//! Load clients: WebSocket subscribers that time every event they get, and signed REST
//! publishers over keep-alive HTTP/1.1 connections.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::Target;

pub type Ws = WebSocketStream<TcpStream>;
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Resolves and checks that the target is on loopback.
pub fn loopback(addr: &str) -> Result<SocketAddr, Error> {
    let a: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    if !a.ip().is_loopback() {
        return Err(
            format!("{addr} is not on 127.0.0.0/8: herald-bench only loads loopback").into(),
        );
    }
    Ok(a)
}

/// Source address number `i` of `n` (127.0.0.2 …), so many connections fit in the port range.
pub fn source(i: usize, n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        2 + (i % usize::from(n.max(1))) as u8,
    ))
}

/// Opens a WebSocket from `from` and reads `connection_established`.
pub async fn connect(to: SocketAddr, from: IpAddr, key: &str) -> Result<Ws, Error> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    let stream = sock.connect(to).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("ws://{to}/app/{key}?protocol=7&client=herald-bench&version=1");
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str().contains("connection_established") => Ok(ws),
        other => Err(format!("no connection_established: {other:?}").into()),
    }
}

/// Subscribes to a public channel and waits for the confirmation.
pub async fn subscribe(ws: &mut Ws, channel: &str) -> Result<(), Error> {
    let frame =
        serde_json::json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": channel}});
    ws.send(Message::Text(frame.to_string().into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("subscription_succeeded") => {
                return Ok(())
            }
            Some(Ok(Message::Text(t))) if t.as_str().contains("pusher:error") => {
                return Err(t.to_string().into())
            }
            Some(Ok(_)) => continue,
            other => return Err(format!("subscribe failed: {other:?}").into()),
        }
    }
}

#[derive(Deserialize)]
struct Frame {
    event: String,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
struct Stamp {
    s: u64,
    t: u64,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub received: u64,
    pub duplicates: u64,
    pub latencies_us: Vec<u32>,
    /// Deliveries per time slot since the epoch (for the plots).
    pub arrivals: Vec<u64>,
    /// Close code if the server closed it (e.g. 4200 slow consumer).
    pub closed_with: Option<u16>,
}

/// Reads events named `bench` until `stop` resolves or the socket closes; `total` bounds the
/// sequence numbers (for duplicate detection).
pub async fn consume(
    mut ws: Ws,
    epoch: Instant,
    total: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut bits = vec![0u64; (total as usize).div_ceil(64).max(1)];
    let mut stop = stop;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let now = epoch.elapsed().as_micros() as u64;
                let Ok(f) = serde_json::from_str::<Frame>(t.as_str()) else {
                    continue;
                };
                if f.event != "bench" {
                    continue;
                }
                let Some(stamp) = f.data.and_then(|d| serde_json::from_str::<Stamp>(&d).ok())
                else {
                    continue;
                };
                let (w, b) = ((stamp.s / 64) as usize, stamp.s % 64);
                if let Some(word) = bits.get_mut(w) {
                    if *word & (1 << b) != 0 {
                        seen.duplicates += 1;
                        continue;
                    }
                    *word |= 1 << b;
                }
                seen.received += 1;
                crate::record::arrive(&mut seen.arrivals, now / 1000);
                seen.latencies_us
                    .push(now.saturating_sub(stamp.t).min(u64::from(u32::MAX)) as u32);
            }
            Some(Ok(Message::Close(f))) => {
                seen.closed_with = f.map(|f| u16::from(f.code));
                break;
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    seen
}

/// A keep-alive HTTP/1.1 connection that sends signed triggers.
pub struct Publisher {
    sender: SendRequest<Full<Bytes>>,
    target: Target,
}

impl Publisher {
    pub async fn connect(target: &Target, addr: SocketAddr) -> Result<Publisher, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Publisher {
            sender,
            target: target.clone(),
        })
    }

    /// Sends one trigger; returns the HTTP status.
    pub async fn trigger(&mut self, channel: &str, data: &str) -> Result<u16, Error> {
        let body =
            serde_json::json!({"name": "bench", "channel": channel, "data": data}).to_string();
        self.post("events", body).await
    }

    /// POSTs `body`, signed, to `/apps/{id}/{what}`; returns the HTTP status.
    pub async fn post(&mut self, what: &str, body: String) -> Result<u16, Error> {
        let t = &self.target;
        let path = format!("/apps/{}/{what}", t.app_id);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let query = herald::auth::rest::signed_query(
            "POST",
            &path,
            &[],
            body.as_bytes(),
            &t.key,
            &t.secret,
            now,
        );
        let req = hyper::Request::post(format!("{path}?{query}"))
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let res = self.sender.send_request(req).await?;
        let status = res.status().as_u16();
        let _ = res.into_body().collect().await?;
        Ok(status)
    }
}

/// The send time of a `bench` event given as a Pusher message text.
pub fn stamp_time(message: &str) -> Option<u64> {
    let f = serde_json::from_str::<Frame>(message).ok()?;
    if f.event != "bench" {
        return None;
    }
    serde_json::from_str::<Stamp>(&f.data?).ok().map(|s| s.t)
}

/// The payload carrying a sequence number and the send time.
pub fn stamp(seq: u64, epoch: Instant) -> String {
    format!("{{\"s\":{seq},\"t\":{}}}", epoch.elapsed().as_micros())
}
