//! Runs a model workload for real against running nodes (connections spread over the nodes,
//! churn, presence and public channels, REST triggers) and measures what Redis and the nodes
//! did, to set next to the model's prediction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{watch, Notify, Semaphore};

use crate::client::{self, Error};
use crate::model::{Cost, Prediction, Workload};
use crate::pusher_ops::{join_all, open_id, Rest};
use crate::redis_stats::{self, Delta};
use crate::Target;

/// What a run measured: per Redis server, rates per second and used_memory at the end; per
/// node, CPU (cores) and RSS (bytes).
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub redis: Vec<Cost>,
    pub node_cpu: Vec<f64>,
    pub node_rss: Vec<f64>,
    pub triggers: u64,
    pub churned: u64,
    /// Seconds measured.
    pub secs: f64,
}

/// The channels connection `i` subscribes to.
fn channels_of(w: &Workload, i: usize) -> Vec<String> {
    let h = (w.channels as usize).max(1);
    let presence = (w.presence_share * h as f64).round() as usize;
    let s = w.subs_per_connection.round().max(0.0) as usize;
    (0..s)
        .map(|j| {
            let c = (i * s + j) % h;
            if c < presence {
                format!("presence-v-{c}")
            } else {
                format!("v-{c}")
            }
        })
        .collect()
}

/// Runs `w` for `seconds` after setting it up and measures it.
pub async fn run(
    t: &Target,
    nodes: &[String],
    redis: &[String],
    pids: &[u32],
    w: &Workload,
    seconds: u64,
) -> Result<Measured, Error> {
    let addrs = nodes
        .iter()
        .map(|a| client::loopback(a))
        .collect::<Result<Vec<_>, _>>()?;
    let conns = w.connections as usize;
    let (stop_tx, stop_rx) = watch::channel(false);
    let kicks: Vec<Arc<Notify>> = (0..conns).map(|_| Arc::new(Notify::new())).collect();
    let churned = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Semaphore::new(0));
    let opening = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for (i, kick) in kicks.iter().enumerate() {
        let (addr, key, t) = (addrs[i % addrs.len()], t.key.clone(), t.clone());
        let chans = channels_of(w, i);
        let (kick, mut stop, ready, opening) = (
            kick.clone(),
            stop_rx.clone(),
            ready.clone(),
            opening.clone(),
        );
        let churned = churned.clone();
        tasks.push(tokio::spawn(async move {
            let mut first = true;
            loop {
                let permit = opening.acquire().await?;
                let mut s = open_id(addr, i, &key).await?;
                join_all(&t, &mut s, &chans, &format!("u{i}")).await?;
                drop(permit);
                if first {
                    ready.add_permits(1);
                    first = false;
                } else {
                    churned.fetch_add(1, Ordering::Relaxed);
                }
                let close = loop {
                    tokio::select! {
                        m = s.ws.next() => if !matches!(m, Some(Ok(_))) {
                            return Err::<(), Error>(format!("connection {i} ended: {m:?}").into());
                        },
                        () = kick.notified() => break false,
                        _ = stop.wait_for(|s| *s) => break true,
                    }
                };
                let _ = s.ws.close(None).await;
                if close {
                    return Ok(());
                }
            }
        }));
    }
    let setup = Instant::now();
    let all = ready
        .acquire_many(u32::try_from(conns).unwrap_or(u32::MAX))
        .await?;
    all.forget();
    println!(
        "validate: {conns} connections on {} node(s) subscribed in {:.1} s",
        addrs.len(),
        setup.elapsed().as_secs_f64()
    );

    // Churn: kick connections round robin at the rate.
    let churner = {
        let kicks = kicks.clone();
        let rate = w.churn_per_s;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            if rate <= 0.0 || kicks.is_empty() {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut next = 0usize;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                kicks[next % kicks.len()].notify_one();
                next += 1;
            }
        })
    };
    // Triggers: one keep-alive REST connection per node, channels round robin.
    let sent = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    let h = (w.channels as usize).max(1);
    let presence = (w.presence_share * h as f64).round() as usize;
    for (n, addr) in addrs.iter().enumerate() {
        let rate = w.triggers_per_s / addrs.len() as f64;
        if rate <= 0.0 {
            break;
        }
        let mut rest = Rest::connect(t, *addr).await?;
        let mut stop = stop_rx.clone();
        let sent = sent.clone();
        let data = "x".repeat(w.payload_bytes as usize);
        let nodes = addrs.len();
        publishers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = n;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return Ok::<(), Error>(()),
                }
                let c = i % h;
                let ch = if c < presence {
                    format!("presence-v-{c}")
                } else {
                    format!("v-{c}")
                };
                rest.post(
                    "events",
                    &serde_json::json!({"name": "e", "channel": ch, "data": data}),
                )
                .await?;
                sent.fetch_add(1, Ordering::Relaxed);
                i += nodes;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = redis_stats::all(redis).await?;
    let cpu0: Vec<Option<f64>> = pids
        .iter()
        .map(|p| crate::measure::cpu_secs(Some(*p)))
        .collect();
    let (sent0, churn0) = (
        sent.load(Ordering::Relaxed),
        churned.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = redis_stats::all(redis).await?;
    let secs = started.elapsed().as_secs_f64();
    let node_cpu = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| {
            crate::measure::cpu_secs(Some(*p))
                .zip(*c0)
                .map_or(f64::NAN, |(a, b)| (a - b) / secs)
        })
        .collect();
    let node_rss = pids
        .iter()
        .map(|p| crate::measure::rss_kib(*p).map_or(f64::NAN, |k| k as f64 * 1024.0))
        .collect();
    let triggers = sent.load(Ordering::Relaxed) - sent0;
    let churned_n = churned.load(Ordering::Relaxed) - churn0;
    let _ = stop_tx.send(true);
    churner.abort();
    for p in publishers {
        p.await??;
    }
    for task in tasks {
        task.await??;
    }
    let per_s = |d: &Delta, a: &redis_stats::Stats| Cost {
        commands: d.commands() / secs,
        round_trips: d.reads / secs,
        bytes_in: d.net_in / secs,
        bytes_out: d.net_out / secs,
        cpu_us: d.cpu_us / secs,
        memory: a.used_memory as f64,
        node_cpu_us: 0.0,
    };
    let redis = Delta::each(&before, &after)
        .iter()
        .zip(&after)
        .map(|(d, a)| per_s(d, a))
        .collect();
    Ok(Measured {
        redis,
        node_cpu,
        node_rss,
        triggers,
        churned: churned_n,
        secs,
    })
}

/// Prints predicted next to measured (per shard and in total) and returns it as JSON.
pub fn report(p: &Prediction, m: &Measured) -> serde_json::Value {
    let shards = p.redis.shards(m.redis.len());
    let mut rows = Vec::new();
    let total_m = m.redis.iter().fold(Cost::default(), |a, b| a + *b);
    let total_p = p.redis.total(m.redis.len());
    let mut sets: Vec<(String, Cost, Cost, f64, f64)> = shards
        .iter()
        .zip(&m.redis)
        .enumerate()
        .map(|(i, (pc, mc))| {
            let pm = if i == 0 { p.redis.memory } else { 0.0 };
            (format!("redis {i}"), *pc, *mc, pm, mc.memory)
        })
        .collect();
    if m.redis.len() > 1 {
        sets.push((
            "redis total".into(),
            total_p,
            total_m,
            p.redis.memory,
            total_m.memory,
        ));
    }
    println!(
        "  measured {} triggers, {} churned connections",
        m.triggers, m.churned
    );
    println!(
        "  {:<12} {:<16} {:>14} {:>14} {:>8}",
        "where", "figure", "predicted", "measured", "diff"
    );
    for (name, pc, mc, pmem, mmem) in &sets {
        for (fig, pv, mv) in [
            ("commands/s", pc.commands, mc.commands),
            ("round trips/s", pc.round_trips, mc.round_trips),
            ("CPU cores", pc.cpu_us / 1e6, mc.cpu_us / 1e6),
            ("bytes in/s", pc.bytes_in, mc.bytes_in),
            ("bytes out/s", pc.bytes_out, mc.bytes_out),
            ("used_memory", *pmem, *mmem),
        ] {
            let diff = (pv - mv) / mv.abs().max(1e-9) * 100.0;
            let mark = if diff.abs() <= 25.0 { "ok" } else { "OUT" };
            println!("  {name:<12} {fig:<16} {pv:>14.3} {mv:>14.3} {diff:>+7.1}% {mark}");
            rows.push(serde_json::json!({"where": name, "figure": fig, "predicted": pv, "measured": mv, "diff_pct": diff}));
        }
    }
    for (i, (cpu, rss)) in m.node_cpu.iter().zip(&m.node_rss).enumerate() {
        println!(
            "  node {i}: CPU {cpu:.3} cores (model {:.3}), RSS {:.1} MiB (model {:.1})",
            p.node_cpu,
            rss / 1048576.0,
            p.node_rss / 1048576.0
        );
    }
    serde_json::json!({"rows": rows, "node_cpu": m.node_cpu, "node_rss": m.node_rss,
        "triggers": m.triggers, "churned": m.churned})
}
