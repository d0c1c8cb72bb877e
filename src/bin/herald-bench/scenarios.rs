//! The scenarios. Each prints a summary, the figures against their targets, and one JSON line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio::sync::watch;

use crate::client::{self, loopback, Error, Publisher, Seen, Ws};
use crate::measure::{check, secs, CpuMeter, Latencies};
use crate::Target;

/// How long subscribers may keep receiving after the last trigger.
const DRAIN: Duration = Duration::from_secs(3);

async fn open_subscribers(
    to: std::net::SocketAddr,
    key: &str,
    channels: &[String],
    sources: u8,
) -> Result<Vec<Ws>, Error> {
    let key = key.to_string();
    let opened: Vec<Result<Ws, Error>> = stream::iter(channels.iter().cloned().enumerate())
        .map(|(i, ch)| {
            let key = key.clone();
            async move {
                let mut ws = client::connect(to, client::source(i, sources), &key).await?;
                client::subscribe(&mut ws, &ch).await?;
                Ok(ws)
            }
        })
        .buffer_unordered(128)
        .collect()
        .await;
    opened.into_iter().collect()
}

struct Run {
    seen: Vec<Seen>,
    sent: u64,
    send_secs: f64,
    cpu: (Option<f64>, Option<f64>),
    /// Server CPU seconds over the run (sending and draining).
    cpu_secs: Option<f64>,
}

/// Starts consumers for `subs`, runs `publish`, drains, and collects what each saw.
async fn run_with<F, Fut>(
    t: &Target,
    subs: Vec<Ws>,
    total_bound: u64,
    epoch: Instant,
    publish: F,
) -> Result<Run, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<u64, Error>>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|ws| tokio::spawn(client::consume(ws, epoch, total_bound, stop_rx.clone())))
        .collect();
    let cpu = CpuMeter::start(t.pid);
    let started = Instant::now();
    let sent = publish().await?;
    let send_secs = secs(started.elapsed());
    tokio::time::sleep(DRAIN).await;
    let cpu_secs = cpu.server_secs();
    let cpu = cpu.stop();
    let _ = stop_tx.send(true);
    let mut seen = Vec::with_capacity(tasks.len());
    for task in tasks {
        seen.push(task.await?);
    }
    Ok(Run {
        seen,
        sent,
        send_secs,
        cpu,
        cpu_secs,
    })
}

struct Tally {
    received: u64,
    duplicates: u64,
    evicted: usize,
    evicted_missing: u64,
    lat: Latencies,
}

fn tally(run: &mut Run, expected_each: impl Fn(usize) -> u64) -> Tally {
    let mut t = Tally {
        received: 0,
        duplicates: 0,
        evicted: 0,
        evicted_missing: 0,
        lat: Latencies::default(),
    };
    for (i, s) in run.seen.iter_mut().enumerate() {
        t.received += s.received;
        t.duplicates += s.duplicates;
        if matches!(s.closed_with, Some(c) if (4100..4300).contains(&c)) {
            t.evicted += 1;
            t.evicted_missing += expected_each(i).saturating_sub(s.received);
        }
        t.lat.0.append(&mut s.latencies_us);
    }
    t
}

fn report_latency(name: &str, lat: &mut Latencies, p99_target_ms: f64) -> serde_json::Value {
    let (p50, p90, p99, p999, max) = (
        lat.pct(50.0),
        lat.pct(90.0),
        lat.pct(99.0),
        lat.pct(99.9),
        lat.pct(100.0),
    );
    println!(
        "  latency ms: p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}"
    );
    check(
        &format!("{name} p99 latency"),
        p99,
        "ms",
        &format!("<= {p99_target_ms}"),
        p99 <= p99_target_ms,
    );
    json!({"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "p999_ms": p999, "max_ms": max})
}

fn report_cpu(cpu: (Option<f64>, Option<f64>)) {
    if let Some(s) = cpu.0 {
        println!("  server CPU {s:.0}% of one core");
    }
    if let Some(c) = cpu.1 {
        println!("  herald-bench CPU {c:.0}% of one core (same machine)");
    }
}

/// One fan-out run's figures.
struct FanoutRun {
    sent: u64,
    expected: u64,
    delivered: u64,
    duplicates: u64,
    evicted: usize,
    lat: (f64, f64, f64, f64, f64),
    cpu: (Option<f64>, Option<f64>),
    /// Server CPU time per delivery, in µs (kernel work of the server's sends included).
    cpu_us_per_delivery: Option<f64>,
    /// The latency distribution, for `herald-bench plot`.
    histogram: serde_json::Value,
}

async fn fanout_run(
    t: &Target,
    subscribers: usize,
    rate: u32,
    seconds: u64,
) -> Result<FanoutRun, Error> {
    let to = loopback(&t.addr)?;
    let channel = "bench-fanout".to_string();
    let subs = open_subscribers(to, &t.key, &vec![channel.clone(); subscribers], 4).await?;
    let total = u64::from(rate) * seconds;
    let epoch = Instant::now();
    let tt = t.clone();
    let mut run = run_with(t, subs, total, epoch, || async move {
        let mut p = Publisher::connect(&tt, to).await?;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for seq in 0..total {
            tick.tick().await;
            let status = p.trigger(&channel, &client::stamp(seq, epoch)).await?;
            if status != 200 {
                return Err(format!("trigger answered {status}").into());
            }
        }
        Ok(total)
    })
    .await?;
    let expected = run.sent * subscribers as u64;
    let mut tl = tally(&mut run, |_| total);
    let l = &mut tl.lat;
    let lat = (
        l.pct(50.0),
        l.pct(90.0),
        l.pct(99.0),
        l.pct(99.9),
        l.pct(100.0),
    );
    let histogram = crate::record::latency_histogram(&tl.lat.0);
    let cpu_us_per_delivery = run
        .cpu_secs
        .filter(|_| tl.received > 0)
        .map(|s| s * 1e6 / tl.received as f64);
    Ok(FanoutRun {
        sent: run.sent,
        expected,
        delivered: tl.received,
        duplicates: tl.duplicates,
        evicted: tl.evicted,
        lat,
        cpu: run.cpu,
        cpu_us_per_delivery,
        histogram,
    })
}

impl FanoutRun {
    fn print(&self, name: &str, subscribers: usize, rate: u32) {
        println!(
            "{name}: {subscribers} subscribers x {} triggers at {rate}/s: {} of {} delivered, {} duplicates, {} evicted",
            self.sent, self.delivered, self.expected, self.duplicates, self.evicted
        );
        let (p50, p90, p99, p999, max) = self.lat;
        println!(
            "  latency ms: p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}"
        );
        report_cpu(self.cpu);
        if let Some(us) = self.cpu_us_per_delivery {
            println!("  server CPU per delivery {us:.2} µs");
        }
    }

    fn json(&self) -> serde_json::Value {
        let (p50, p90, p99, p999, max) = self.lat;
        json!({"triggers": self.sent, "expected": self.expected, "delivered": self.delivered, "duplicates": self.duplicates,
               "evicted": self.evicted, "latency": {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "p999_ms": p999, "max_ms": max},
               "server_cpu_pct": self.cpu.0, "tool_cpu_pct": self.cpu.1, "server_cpu_us_per_delivery": self.cpu_us_per_delivery,
               "latency_histogram": self.histogram})
    }
}

/// Triggers at a fixed rate to one channel of `subscribers`. With `floor` (the address and pid
/// of a `herald-bench floor-server`), the same load runs against the floor first and herald's
/// figures are printed as ratios to the floor's.
/// Prints the share of the expected deliveries that arrived (target: all).
fn check_delivered(name: &str, delivered: u64, expected: u64) {
    let pct = delivered as f64 / expected.max(1) as f64 * 100.0;
    check(name, pct, "%", "100", delivered == expected);
}

pub async fn fanout(
    t: Target,
    subscribers: usize,
    rate: u32,
    seconds: u64,
    floor: Option<(String, Option<u32>)>,
) -> Result<(), Error> {
    let floor_run = match floor {
        Some((addr, pid)) => {
            let ft = Target {
                addr,
                pid,
                ..t.clone()
            };
            let f = fanout_run(&ft, subscribers, rate, seconds).await?;
            f.print("floor", subscribers, rate);
            // Let the closed sockets go before the next run opens as many.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some(f)
        }
        None => None,
    };
    let h = fanout_run(&t, subscribers, rate, seconds).await?;
    h.print("fanout", subscribers, rate);
    check_delivered("delivered", h.delivered, h.expected);
    let mut ratios = serde_json::Value::Null;
    match &floor_run {
        Some(f) => {
            let (p50, p99) = (h.lat.0 / f.lat.0, h.lat.2 / f.lat.2);
            check("p50 / floor p50", p50, "x", "", true);
            check("p99 / floor p99", p99, "x", "<= 1.5", p99 <= 1.5);
            let cpu = match (h.cpu_us_per_delivery, f.cpu_us_per_delivery) {
                (Some(a), Some(b)) => {
                    check("CPU per delivery / floor", a / b, "x", "", true);
                    Some(a / b)
                }
                _ => None,
            };
            check_delivered("floor delivered", f.delivered, f.expected);
            ratios = json!({"p50": p50, "p99": p99, "cpu_per_delivery": cpu});
        }
        None => check("fanout p99 latency", h.lat.2, "ms", "<= 2", h.lat.2 <= 2.0),
    }
    println!(
        "{}",
        json!({"scenario": "fanout", "subscribers": subscribers, "rate": rate, "herald": h.json(),
               "floor": floor_run.as_ref().map(FanoutRun::json), "ratio_to_floor": ratios,
               // What `herald-bench plot` reads: herald's own distribution.
               "latency": h.json()["latency"], "latency_histogram": h.histogram})
    );
    Ok(())
}

pub async fn flood(
    t: Target,
    subscribers: usize,
    publishers: usize,
    seconds: u64,
) -> Result<(), Error> {
    let to = loopback(&t.addr)?;
    let channel = "bench-flood".to_string();
    let subs = open_subscribers(to, &t.key, &vec![channel.clone(); subscribers], 4).await?;
    let epoch = Instant::now();
    let bound = 4_000_000u64;
    let tt = t.clone();
    let ch = channel.clone();
    let mut run = run_with(&t, subs, bound, epoch, || async move {
        let seq = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut handles = Vec::new();
        for _ in 0..publishers.max(1) {
            let (seq, tt, ch) = (seq.clone(), tt.clone(), ch.clone());
            handles.push(tokio::spawn(async move {
                let mut p = Publisher::connect(&tt, to).await?;
                while Instant::now() < deadline {
                    let s = seq.fetch_add(1, Ordering::Relaxed);
                    if s >= bound {
                        break;
                    }
                    p.trigger(&ch, &client::stamp(s, epoch)).await?;
                }
                Ok::<(), Error>(())
            }));
        }
        for h in handles {
            h.await??;
        }
        Ok(seq.load(Ordering::Relaxed).min(bound))
    })
    .await?;
    let sent = run.sent;
    let expected = sent * subscribers as u64;
    let mut tl = tally(&mut run, |_| sent);
    let lost = expected - tl.received.min(expected) - tl.evicted_missing;
    let triggers_per_s = sent as f64 / run.send_secs;
    let deliveries_per_s = tl.received as f64 / run.send_secs;
    println!(
        "flood: {subscribers} subscribers, {publishers} publishers, {sent} triggers in {:.2} s: {} of {expected} delivered, {} evicted subscribers (missing {}), {lost} silently lost, {} duplicates",
        run.send_secs, tl.received, tl.evicted, tl.evicted_missing, tl.duplicates
    );
    check("triggers/s", triggers_per_s, "/s", "", true);
    check(
        "deliveries/s",
        deliveries_per_s,
        "/s",
        ">= 300000",
        deliveries_per_s >= 300_000.0,
    );
    check("silently lost", lost as f64, "msgs", "0", lost == 0);
    let lat = report_latency("flood", &mut tl.lat, f64::INFINITY);
    let over_time =
        crate::record::deliveries_over_time(run.seen.iter().map(|s| s.arrivals.as_slice()));
    report_cpu(run.cpu);
    println!(
        "{}",
        json!({"scenario": "flood", "subscribers": subscribers, "publishers": publishers, "triggers": sent, "seconds": run.send_secs, "triggers_per_s": triggers_per_s,
               "deliveries_per_s": deliveries_per_s, "delivered": tl.received, "expected": expected, "evicted": tl.evicted, "evicted_missing": tl.evicted_missing,
               "lost": lost, "duplicates": tl.duplicates, "latency": lat, "server_cpu_pct": run.cpu.0, "tool_cpu_pct": run.cpu.1,
               "deliveries_over_time": over_time})
    );
    Ok(())
}

pub async fn trigger(t: Target, connections: usize, seconds: u64) -> Result<(), Error> {
    let to = loopback(&t.addr)?;
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(t.pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut handles = Vec::new();
    for i in 0..connections.max(1) {
        let (t, count, errors) = (t.clone(), count.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let mut p = Publisher::connect(&t, to).await?;
            let ch = format!("nobody-{i}");
            while Instant::now() < deadline {
                match p.trigger(&ch, "{}").await? {
                    200 => count.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            Ok::<(), Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let elapsed = secs(started.elapsed());
    let cpu = cpu.stop();
    let n = count.load(Ordering::Relaxed);
    let rps = n as f64 / elapsed;
    println!("trigger: {n} signed requests over {connections} keep-alive connections in {elapsed:.2} s ({} errors)", errors.load(Ordering::Relaxed));
    check("requests/s", rps, "/s", ">= 20000", rps >= 20_000.0);
    report_cpu(cpu);
    println!(
        "{}",
        json!({"scenario": "trigger", "connections": connections, "requests": n, "errors": errors.load(Ordering::Relaxed), "per_s": rps, "server_cpu_pct": cpu.0, "tool_cpu_pct": cpu.1})
    );
    Ok(())
}

pub async fn cluster(
    t: Target,
    nodes: Vec<String>,
    channels: usize,
    per_channel: usize,
    rate: u32,
    seconds: u64,
    remote_only: bool,
) -> Result<(), Error> {
    let publish_to = loopback(&t.addr)?;
    let mut all = vec![publish_to];
    for n in &nodes {
        all.push(loopback(n)?);
    }
    // Subscriber k of channel c sits on node (c * per_channel + k) % nodes (of the nodes that
    // take subscribers).
    let sub_nodes: Vec<std::net::SocketAddr> = if remote_only && all.len() > 1 {
        all[1..].to_vec()
    } else {
        all.clone()
    };
    let mut subs = Vec::new();
    let mut sub_channel = Vec::new();
    for c in 0..channels {
        for k in 0..per_channel {
            let node = sub_nodes[(c * per_channel + k) % sub_nodes.len()];
            let mut ws =
                client::connect(node, client::source(c * per_channel + k, 4), &t.key).await?;
            client::subscribe(&mut ws, &format!("cluster-{c}")).await?;
            subs.push(ws);
            sub_channel.push(c);
        }
    }
    let total = u64::from(rate) * seconds;
    let epoch = Instant::now();
    let tt = t.clone();
    let publishers = 4usize;
    let mut run = run_with(&t, subs, total, epoch, || async move {
        let mut handles = Vec::new();
        for p in 0..publishers {
            let tt = tt.clone();
            handles.push(tokio::spawn(async move {
                let mut pubr = Publisher::connect(&tt, publish_to).await?;
                let per = f64::from(rate) / publishers as f64;
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut seq = p as u64;
                while seq < total {
                    tick.tick().await;
                    let ch = format!("cluster-{}", seq % channels as u64);
                    pubr.trigger(&ch, &client::stamp(seq, epoch)).await?;
                    seq += publishers as u64;
                }
                Ok::<(), Error>(())
            }));
        }
        for h in handles {
            h.await??;
        }
        Ok(total)
    })
    .await?;
    let per_channel_count = |c: usize| {
        (0..total)
            .filter(|s| (*s % channels as u64) as usize == c)
            .count() as u64
    };
    let expected_by_channel: Vec<u64> = (0..channels).map(per_channel_count).collect();
    let expected: u64 = sub_channel.iter().map(|c| expected_by_channel[*c]).sum();
    let mut tl = tally(&mut run, |i| expected_by_channel[sub_channel[i]]);
    let lost = expected - tl.received.min(expected) - tl.evicted_missing;
    println!(
        "cluster: {} nodes, {channels} channels x {per_channel} subscribers, {total} triggers at {rate}/s through {publish_to}: {} of {expected} delivered, {lost} lost, {} duplicates",
        all.len(), tl.received, tl.duplicates
    );
    check("lost", lost as f64, "msgs", "0", lost == 0);
    let lat = report_latency("cluster", &mut tl.lat, 5.0);
    report_cpu(run.cpu);
    println!(
        "{}",
        json!({"scenario": "cluster", "nodes": all.len(), "channels": channels, "per_channel": per_channel, "rate": rate, "triggers": total, "expected": expected,
               "delivered": tl.received, "lost": lost, "duplicates": tl.duplicates, "latency": lat, "server_cpu_pct": run.cpu.0, "tool_cpu_pct": run.cpu.1})
    );
    Ok(())
}
