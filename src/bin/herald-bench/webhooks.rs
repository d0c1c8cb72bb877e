//! The webhooks scenario: occupancy transitions on one node, a local receiver counting the
//! webhooks, and (with `--redis`) the Redis commands they cost, from `INFO commandstats`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Error};
use crate::measure::{check, secs};
use crate::Target;

/// Events the receiver got, and when the first and the last arrived.
#[derive(Debug, Default)]
pub(crate) struct Got {
    pub(crate) events: u64,
    requests: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Answers 200 to every request on `port` and counts the events of each body.
pub(crate) async fn receiver(port: u16, got: Arc<Mutex<Got>>) -> Result<(), Error> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let got = got.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let got = got.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let n = body
                            .ok()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                            .and_then(|v| v["events"].as_array().map(Vec::len))
                            .unwrap_or(0);
                        let mut g = got.lock().unwrap_or_else(|e| e.into_inner());
                        let now = Instant::now();
                        g.first.get_or_insert(now);
                        g.last = Some(now);
                        g.events += n as u64;
                        g.requests += 1;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

/// Calls per command from `INFO commandstats`.
async fn commandstats(url: &str) -> Result<BTreeMap<String, u64>, Error> {
    let mut c = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect())
}

/// `connections` sockets each occupy and vacate `per_connection` channels of their own; the
/// server's webhooks (channel_occupied and channel_vacated) go to a receiver on
/// `receiver_port`. Reports webhooks/s at the receiver and, with `redis`, Redis commands per
/// webhook on the whole cluster.
pub async fn webhooks(
    t: Target,
    connections: usize,
    per_connection: usize,
    receiver_port: u16,
    redis: Option<String>,
) -> Result<(), Error> {
    let addr = client::loopback(&t.addr)?;
    let got = Arc::new(Mutex::new(Got::default()));
    receiver(receiver_port, got.clone()).await?;
    let before = match &redis {
        Some(url) => Some(commandstats(url).await?),
        None => None,
    };
    let expected = (connections * per_connection * 2) as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let key = t.key.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = client::connect(addr, client::source(c, 1), &key).await?;
            for i in 0..per_connection {
                let ch = format!("wh-{c}-{i}");
                client::subscribe(&mut ws, &ch).await?;
                let leave =
                    serde_json::json!({"event": "pusher:unsubscribe", "data": {"channel": ch}});
                ws.send(Message::Text(leave.to_string().into())).await?;
            }
            Ok::<_, Error>(ws)
        }));
    }
    let mut sockets = Vec::new();
    for task in tasks {
        sockets.push(task.await??);
    }
    let transitions_done = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = got.lock().unwrap_or_else(|e| e.into_inner()).events;
        if n >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let late duplicates or acknowledgements land before counting commands.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let g = std::mem::take(&mut *got.lock().unwrap_or_else(|e| e.into_inner()));
    let span = match (g.first, g.last) {
        (Some(a), Some(b)) => b.duration_since(a),
        _ => Duration::ZERO,
    };
    let rate = g.events as f64 / secs(span).max(1e-9);
    println!(
        "webhooks: {connections} connections x {per_connection} channels occupied and vacated in {:.2} s: {} of {expected} events in {} requests",
        secs(transitions_done),
        g.events,
        g.requests
    );
    check(
        "events received",
        g.events as f64,
        "events",
        &format!(">= {expected}"),
        g.events >= expected,
    );
    println!("  webhook events/s at the receiver   {rate:.0}");
    let mut per_webhook = serde_json::Map::new();
    if let (Some(url), Some(before)) = (&redis, before) {
        let after = commandstats(url).await?;
        let mut total = 0u64;
        for (name, calls) in &after {
            let d = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            if d > 0 && name != "info" {
                total += d;
                per_webhook.insert(
                    name.clone(),
                    serde_json::json!(d as f64 / g.events.max(1) as f64),
                );
            }
        }
        println!(
            "  Redis commands per webhook event   {:.2} (all commands, scripts' inner calls included; also the joins' own)",
            total as f64 / g.events.max(1) as f64
        );
        for (name, per) in &per_webhook {
            println!("    {name:<24} {:.2}", per.as_f64().unwrap_or(0.0));
        }
    }
    println!(
        "{}",
        serde_json::json!({"scenario": "webhooks", "expected": expected, "events": g.events, "requests": g.requests,
            "events_per_s": rate, "redis_calls_per_event": per_webhook})
    );
    drop(sockets);
    Ok(())
}
