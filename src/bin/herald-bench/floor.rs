//! The floor: the least work that delivers one small WebSocket frame to N loopback connections.
//! A minimal server speaking just enough of the Pusher protocol for the `fanout` load (greeting,
//! subscription confirmation, REST trigger), which writes each trigger's prebuilt frame straight
//! to every socket from one plain thread per core, with no task, queue or timer per delivery.
//! `fanout --floor ADDR` runs the same load against it and prints herald's figures as ratios.

use std::convert::Infallible;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use herald::outbox::text_frame;

use crate::client::{loopback, Error};

/// A socket's unwritten bytes beyond this mean it stopped reading: it is dropped.
const MAX_PENDING: usize = 1 << 20;

/// What a fan-out thread is told.
enum Cmd {
    /// A subscribed socket to serve from now on.
    Add(std::net::TcpStream),
    /// A complete WebSocket frame for every socket of the thread.
    Frame(Arc<[u8]>),
}

/// The fan-out threads, one per core, each owning a share of the sockets.
struct Floor {
    threads: Vec<Mutex<mpsc::Sender<Cmd>>>,
    next: AtomicUsize,
}

impl Floor {
    fn send(&self, i: usize, cmd: Cmd) {
        let tx = self.threads[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = tx.send(cmd);
    }

    fn add(&self, s: std::net::TcpStream) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        self.send(i, Cmd::Add(s));
    }

    fn broadcast(&self, frame: Arc<[u8]>) {
        for i in 0..self.threads.len() {
            self.send(i, Cmd::Frame(frame.clone()));
        }
    }
}

struct Sub {
    sock: std::net::TcpStream,
    pending: Vec<u8>,
    dead: bool,
}

impl Sub {
    /// Writes `bytes` after what is pending; keeps what the socket does not take.
    fn write(&mut self, bytes: &[u8]) {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(bytes);
            return self.flush();
        }
        match self.sock.write(bytes) {
            Ok(n) if n == bytes.len() => {}
            Ok(n) => self.pending.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.pending.extend_from_slice(bytes),
            Err(_) => self.dead = true,
        }
        self.dead |= self.pending.len() > MAX_PENDING;
    }

    fn flush(&mut self) {
        while !self.pending.is_empty() {
            match self.sock.write(&self.pending) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        self.dead |= self.pending.len() > MAX_PENDING;
    }
}

/// One fan-out thread: writes every frame to each of its sockets in turn.
fn fan_out_thread(rx: mpsc::Receiver<Cmd>) {
    let mut subs: Vec<Sub> = Vec::new();
    loop {
        let backlog = subs.iter().any(|s| !s.pending.is_empty());
        let cmd = if backlog {
            match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        };
        match cmd {
            Some(Cmd::Add(sock)) => subs.push(Sub {
                sock,
                pending: Vec::new(),
                dead: false,
            }),
            Some(Cmd::Frame(f)) => {
                for s in &mut subs {
                    s.write(&f);
                }
            }
            None => {
                for s in &mut subs {
                    s.flush();
                }
            }
        }
        subs.retain(|s| !s.dead);
    }
}

/// Reads one (masked) client frame and discards it.
async fn skip_client_frame(s: &mut TcpStream) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mask = if head[1] & 0x80 != 0 { 4 } else { 0 };
    let mut rest = vec![0u8; (len + mask) as usize];
    s.read_exact(&mut rest).await.map(|_| ())
}

/// After the 101: greet, take the subscribe, confirm it, and hand the socket to a thread.
async fn subscriber(mut s: TcpStream, early: Vec<u8>, floor: Arc<Floor>, id: usize) {
    if !early.is_empty() {
        // The load never sends before the greeting; nothing to replay.
        return;
    }
    let hello = format!(
        r#"{{"event":"pusher:connection_established","data":"{{\"socket_id\":\"1.{id}\",\"activity_timeout\":120}}"}}"#
    );
    if s.write_all(&text_frame(hello.as_bytes())).await.is_err() {
        return;
    }
    if skip_client_frame(&mut s).await.is_err() {
        return;
    }
    let ok = br#"{"event":"pusher_internal:subscription_succeeded","channel":"bench-fanout","data":"{}"}"#;
    if s.write_all(&text_frame(ok)).await.is_err() {
        return;
    }
    if let Ok(std) = s.into_std() {
        floor.add(std);
    }
}

#[derive(Deserialize)]
struct Trigger {
    name: String,
    channel: String,
    data: String,
}

async fn handle(
    mut req: Request<Incoming>,
    floor: Arc<Floor>,
    ids: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(b"{}")));
    if req.uri().path().starts_with("/app/") {
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(res);
        };
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                if let Ok(parts) = up.downcast::<TokioIo<TcpStream>>() {
                    let early = parts.read_buf.to_vec();
                    subscriber(parts.io.into_inner(), early, floor, id).await;
                }
            }
        });
        *res.body_mut() = Full::new(Bytes::new());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        return Ok(res);
    }
    // A trigger: the same frame herald would build, once, then to every socket.
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    match body
        .ok()
        .and_then(|b| serde_json::from_slice::<Trigger>(&b).ok())
    {
        Some(t) => {
            let text =
                herald::protocol::outbound::channel_event(&t.name, &t.channel, &t.data, None);
            floor.broadcast(text_frame(text.as_bytes()).into());
        }
        None => *res.status_mut() = StatusCode::BAD_REQUEST,
    }
    Ok(res)
}

/// Serves the floor on `addr` until killed, with one fan-out thread per core (or `threads`).
pub async fn serve(addr: &str, threads: usize) -> Result<(), Error> {
    let at: SocketAddr = loopback(addr)?;
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        threads
    };
    let mut senders = Vec::new();
    for i in 0..threads {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("floor-{i}"))
            .spawn(move || fan_out_thread(rx))?;
        senders.push(Mutex::new(tx));
    }
    let floor = Arc::new(Floor {
        threads: senders,
        next: AtomicUsize::new(0),
    });
    let ids = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind(at).await?;
    println!(
        "floor: listening on {at}, {threads} fan-out threads, pid {}",
        std::process::id()
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (floor, ids) = (floor.clone(), ids.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, floor.clone(), ids.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}
