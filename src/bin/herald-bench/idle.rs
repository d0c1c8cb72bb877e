//! The idle scenario: many connections, each subscribed to one channel, then nothing; the
//! server's memory per connection (the measure) and what opening them cost.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::json;

use crate::client::{self, loopback, Error, Ws};
use crate::measure::{check, rss_kib, secs, CpuMeter};
use crate::Target;

/// How the idle scenario spreads its connections.
pub struct Spread {
    /// Channels (one subscription per connection).
    pub channels: usize,
    /// Loopback source addresses.
    pub sources: u8,
    /// Connections opened concurrently.
    pub parallel: usize,
    /// Apps (keys `{key}{i % apps}` when more than 1).
    pub apps: usize,
}

pub async fn idle(t: Target, n: usize, spread: Spread) -> Result<(), Error> {
    let Spread {
        channels,
        sources,
        parallel,
        apps,
    } = spread;
    let to = loopback(&t.addr)?;
    let rss0 = t.pid.and_then(rss_kib);
    let sampler = crate::record::RssSampler::start(t.pid, Duration::from_millis(250));
    // The server's CPU time for opening and subscribing, per connection: steadier than the open
    // rate, which sockets left in TIME_WAIT by an earlier run can slow down many times over.
    let cpu = CpuMeter::start(t.pid);
    let started = Instant::now();
    let opened: Vec<Result<Ws, Error>> = stream::iter(0..n)
        .map(|i| {
            let key = if apps > 1 {
                format!("{}{}", t.key, i % apps)
            } else {
                t.key.clone()
            };
            let open = sampler.open.clone();
            async move {
                let mut ws = client::connect(to, client::source(i, sources), &key).await?;
                client::subscribe(&mut ws, &format!("idle-{}", i % channels.max(1))).await?;
                open.fetch_add(1, Ordering::Relaxed);
                Ok(ws)
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let cpu_us = cpu.server_secs().map(|s| s * 1e6 / (n.max(1) as f64));
    // The measure: RSS 0.5 s after the last subscription was confirmed, minus the RSS
    // before the first connection, over the subscribed connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = t.pid.and_then(rss_kib);
    let failed = opened.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = opened.iter().find(|r| r.is_err()) {
        eprintln!("first failure: {e}");
    }
    let ok = n - failed;
    let rate = ok as f64 / secs(elapsed);
    let rss_samples = sampler.finish(t.pid);
    let per_conn = match (rss0, rss1) {
        (Some(a), Some(b)) if ok > 0 => Some(b.saturating_sub(a) as f64 / ok as f64),
        _ => None,
    };
    println!("idle: {ok} of {n} connections open and subscribed ({failed} failed) in {:.2} s over {sources} source addresses and {apps} app(s)", secs(elapsed));
    check("connections", ok as f64, "", ">= 19000", ok >= 19_000);
    check("open rate", rate, "conn/s", ">= 5000", rate >= 5000.0);
    if let Some(us) = cpu_us {
        check("server CPU per connection", us, "µs", "", true);
    }
    if let (Some(r0), Some(r1), Some(p)) = (rss0, rss1, per_conn) {
        println!("  server RSS {r0} KiB before the first connection, {r1} KiB 0.5 s after the last subscription");
        check("server RSS per connection", p, "KiB", "<= 3", p <= 3.0);
    }
    println!(
        "{}",
        json!({"scenario": "idle", "apps": apps, "connections": ok, "failed": failed, "open_per_s": rate, "rss_before_kib": rss0, "rss_after_kib": rss1, "rss_per_conn_kib": per_conn,
               "server_cpu_us_per_conn": cpu_us,
               "rss_samples": rss_samples})
    );
    drop(opened);
    Ok(())
}
