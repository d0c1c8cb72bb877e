//! The HTTP-fallback scenario: streaming sessions (`xhr_streaming`, as pusher-js opens them) next
//! to WebSocket subscribers of the same channel: idle memory per session, then fan-out latency
//! over both transports in the same run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::client::{self, loopback, Error, Publisher, Seen};
use crate::measure::{check, rss_kib, secs, Latencies};
use crate::Target;

/// pusher-js reopens a stream past this many characters.
const STREAM_LIMIT: usize = 256 * 1024;
/// How long subscribers may keep receiving after the last trigger.
const DRAIN: Duration = Duration::from_secs(3);

/// One streaming session: its path and the open receive response.
struct Session {
    base: String,
    to: SocketAddr,
    from: std::net::IpAddr,
    body: Incoming,
    buf: Vec<u8>,
    read: usize,
}

async fn post<B>(
    to: SocketAddr,
    from: std::net::IpAddr,
    path: &str,
    body: B,
) -> Result<hyper::Response<Incoming>, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync,
{
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    let stream: TcpStream = sock.connect(to).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(body)?;
    Ok(sender.send_request(req).await?)
}

impl Session {
    async fn open(
        to: SocketAddr,
        from: std::net::IpAddr,
        key: &str,
        i: usize,
    ) -> Result<Session, Error> {
        let base = format!("/pusher/app/{key}/{}/b{i:07}", i % 1000);
        let body = Self::receive(to, from, &base).await?;
        let mut s = Session {
            base,
            to,
            from,
            body,
            buf: Vec::new(),
            read: 0,
        };
        match s.line().await? {
            Some(l) if l == "o" => {}
            other => return Err(format!("no open frame: {other:?}").into()),
        }
        match s.line().await? {
            Some(l) if l.contains("connection_established") => Ok(s),
            other => Err(format!("no connection_established: {other:?}").into()),
        }
    }

    async fn receive(
        to: SocketAddr,
        from: std::net::IpAddr,
        base: &str,
    ) -> Result<Incoming, Error> {
        let path = format!("{base}/xhr_streaming?protocol=7&client=herald-bench&version=1");
        let res = post(to, from, &path, Empty::<Bytes>::new()).await?;
        if res.status() != 200 {
            return Err(format!("receive answered {}", res.status()).into());
        }
        Ok(res.into_body())
    }

    /// The next frame line; reopens the stream past pusher-js's limit, as pusher-js does.
    async fn line(&mut self) -> Result<Option<String>, Error> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line[..i]).into_owned();
                self.read += line.encode_utf16().count() + 1;
                if self.read > STREAM_LIMIT && self.buf.is_empty() {
                    self.body = Self::receive(self.to, self.from, &self.base).await?;
                    self.read = 0;
                }
                return Ok(Some(line));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(f) => {
                    if let Ok(d) = f?.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }

    async fn send(&self, message: serde_json::Value) -> Result<(), Error> {
        let body = json!([message.to_string()]).to_string();
        let path = format!("{}/xhr_send", self.base);
        let res = post(self.to, self.from, &path, Full::new(Bytes::from(body))).await?;
        if res.status() != 204 {
            return Err(format!("xhr_send answered {}", res.status()).into());
        }
        Ok(())
    }

    async fn subscribe(&mut self, channel: &str) -> Result<(), Error> {
        self.send(json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": channel}}))
            .await?;
        loop {
            match self.line().await? {
                Some(l) if l.contains("subscription_succeeded") => return Ok(()),
                Some(_) => continue,
                None => return Err("stream ended before subscription_succeeded".into()),
            }
        }
    }

    /// Like [`client::consume`] for a stream: times every `bench` event until `stop`.
    async fn consume(mut self, epoch: Instant, stop: watch::Receiver<bool>) -> Seen {
        let mut seen = Seen::default();
        let mut stop = stop;
        loop {
            let line = tokio::select! {
                l = self.line() => l,
                _ = stop.wait_for(|s| *s) => break,
            };
            let Ok(Some(line)) = line else { break };
            let now = epoch.elapsed().as_micros() as u64;
            let Some(list) = line.strip_prefix('a') else {
                if let Some(c) = line.strip_prefix('c') {
                    seen.closed_with = serde_json::from_str::<(u16, String)>(c).ok().map(|c| c.0);
                    break;
                }
                continue;
            };
            let Ok(messages) = serde_json::from_str::<Vec<String>>(list) else {
                continue;
            };
            for m in messages {
                if let Some(t) = client::stamp_time(&m) {
                    seen.received += 1;
                    seen.latencies_us
                        .push(now.saturating_sub(t).min(u64::from(u32::MAX)) as u32);
                }
            }
        }
        seen
    }
}

/// `sessions` streaming sessions and as many WebSocket subscribers on one channel.
pub async fn http(t: Target, sessions: usize, rate: u32, seconds: u64) -> Result<(), Error> {
    let to = loopback(&t.addr)?;
    let channel = "bench-http".to_string();
    let rss0 = t.pid.and_then(rss_kib);
    let opened: Vec<Result<Session, Error>> = stream::iter(0..sessions)
        .map(|i| {
            let (key, channel) = (t.key.clone(), channel.clone());
            async move {
                let mut s = Session::open(to, client::source(i, 4), &key, i).await?;
                s.subscribe(&channel).await?;
                Ok(s)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let streams: Vec<Session> = opened.into_iter().collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = t.pid.and_then(rss_kib);
    let per_session = match (rss0, rss1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / sessions.max(1) as f64),
        _ => None,
    };
    println!("http: {sessions} streaming sessions open and subscribed");
    if let (Some(r0), Some(r1), Some(p)) = (rss0, rss1, per_session) {
        println!("  server RSS {r0} KiB before, {r1} KiB after");
        check(
            "server RSS per idle streaming session",
            p,
            "KiB",
            "<= 8",
            p <= 8.0,
        );
    }
    let wss: Vec<Result<client::Ws, Error>> = stream::iter(0..sessions)
        .map(|i| {
            let (key, channel) = (t.key.clone(), channel.clone());
            async move {
                let mut ws = client::connect(to, client::source(i, 4), &key).await?;
                client::subscribe(&mut ws, &channel).await?;
                Ok(ws)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let wss: Vec<client::Ws> = wss.into_iter().collect::<Result<_, _>>()?;

    let total = u64::from(rate) * seconds;
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let http_tasks: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(s.consume(epoch, stop_rx.clone())))
        .collect();
    let ws_tasks: Vec<_> = wss
        .into_iter()
        .map(|ws| tokio::spawn(client::consume(ws, epoch, total, stop_rx.clone())))
        .collect();
    let mut p = Publisher::connect(&t, to).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for seq in 0..total {
        tick.tick().await;
        let status = p.trigger(&channel, &client::stamp(seq, epoch)).await?;
        if status != 200 {
            return Err(format!("trigger answered {status}").into());
        }
    }
    let send_secs = secs(started.elapsed());
    tokio::time::sleep(DRAIN).await;
    let _ = stop_tx.send(true);
    let mut report = Vec::new();
    for (name, tasks) in [("xhr_streaming", http_tasks), ("websocket", ws_tasks)] {
        let mut lat = Latencies::default();
        let (mut received, mut closed) = (0u64, 0usize);
        for task in tasks {
            let mut s = task.await?;
            received += s.received;
            closed += usize::from(s.closed_with.is_some());
            lat.0.append(&mut s.latencies_us);
        }
        let expected = total * sessions as u64;
        let (p50, p99, max) = (lat.pct(50.0), lat.pct(99.0), lat.pct(100.0));
        println!(
            "  {name}: {received} of {expected} delivered, {closed} closed; latency ms p50 {p50:.3} p99 {p99:.3} max {max:.3}"
        );
        report.push(
            json!({"transport": name, "expected": expected, "delivered": received, "closed": closed,
                           "p50_ms": p50, "p99_ms": p99, "max_ms": max}),
        );
    }
    let p99 = |i: usize| report[i]["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let ratio = p99(0) / p99(1);
    check(
        "xhr_streaming p99 / WebSocket p99",
        ratio,
        "x",
        "<= 2",
        ratio <= 2.0,
    );
    println!(
        "{}",
        json!({"scenario": "http", "sessions": sessions, "rate": rate, "triggers": total, "send_secs": send_secs,
               "rss_before_kib": rss0, "rss_after_kib": rss1, "rss_per_session_kib": per_session, "fanout": report})
    );
    Ok(())
}
