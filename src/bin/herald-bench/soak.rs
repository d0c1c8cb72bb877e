//! The soak scenario: hours-long behaviour in minutes. Steady subscribers must receive every
//! message; churners keep connecting and leaving; the server's RSS and open files are sampled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;

use crate::client::{self, loopback, Error, Publisher};
use crate::measure::{check, rss_kib};
use crate::Target;

fn open_files(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

#[allow(clippy::too_many_arguments)]
pub async fn soak(
    t: Target,
    connections: usize,
    churners: usize,
    channels: usize,
    rate: u32,
    seconds: u64,
    sample: u64,
) -> Result<(), Error> {
    let to = loopback(&t.addr)?;
    let pid = t.pid.ok_or("soak needs --pid to sample the server")?;
    let total = u64::from(rate) * seconds + 1;
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Steady subscribers: subscriber i listens to channel i % channels.
    let mut steady = Vec::new();
    for i in 0..connections {
        let mut ws = client::connect(to, client::source(i, 4), &t.key).await?;
        client::subscribe(&mut ws, &format!("soak-{}", i % channels)).await?;
        steady.push(tokio::spawn(client::consume(
            ws,
            epoch,
            total,
            stop_rx.clone(),
        )));
    }
    // Churners: connect, subscribe, stay 1-5 s, leave, again.
    let churned = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut churn_tasks = Vec::new();
    for i in 0..churners {
        let (key, churned, running) = (t.key.clone(), churned.clone(), running.clone());
        churn_tasks.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let Ok(mut ws) = client::connect(to, client::source(i + 7, 4), &key).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                if client::subscribe(&mut ws, &format!("soak-{}", i % channels))
                    .await
                    .is_err()
                {
                    continue;
                }
                let stay = Duration::from_millis(1000 + rand::random::<u64>() % 4000);
                let until = tokio::time::Instant::now() + stay;
                while tokio::time::timeout_at(until, ws.next())
                    .await
                    .is_ok_and(|m| m.is_some())
                {}
                let _ = ws.close(None).await;
                churned.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let rss0 = rss_kib(pid);
    let fd0 = open_files(pid);
    println!("soak: {connections} steady + {churners} churning connections, {channels} channels, {rate} triggers/s for {seconds} s");
    println!(
        "  {:>6}  {:>10}  {:>8}  {:>10}",
        "t (s)", "RSS KiB", "files", "churned"
    );
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let (samples, churned) = (samples.clone(), churned.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(sample.max(1)));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let (r, f) = (rss_kib(pid), open_files(pid));
                let secs = epoch.elapsed().as_secs();
                println!(
                    "  {secs:>6}  {:>10}  {:>8}  {:>10}",
                    r.unwrap_or(0),
                    f.unwrap_or(0),
                    churned.load(Ordering::Relaxed)
                );
                if let Ok(mut s) = samples.lock() {
                    s.push((secs, r.unwrap_or(0), f.unwrap_or(0)));
                }
            }
        })
    };
    // Publisher at a fixed rate.
    let mut p = Publisher::connect(&t, to).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0u64;
    let mut per_channel = vec![0u64; channels];
    while Instant::now() < deadline {
        tick.tick().await;
        let ch = (sent % channels as u64) as usize;
        if p.trigger(&format!("soak-{ch}"), &client::stamp(sent, epoch))
            .await?
            == 200
        {
            per_channel[ch] += 1;
        }
        sent += 1;
    }
    running.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    let mut received = 0u64;
    let mut duplicates = 0u64;
    let mut evicted = 0usize;
    let mut expected = 0u64;
    for (i, task) in steady.into_iter().enumerate() {
        let seen = task.await?;
        received += seen.received;
        duplicates += seen.duplicates;
        evicted += usize::from(seen.closed_with.is_some());
        expected += per_channel[i % channels];
    }
    for c in churn_tasks {
        c.abort();
    }
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let (rss1, fd1) = (rss_kib(pid), open_files(pid));
    let lost = expected.saturating_sub(received);
    println!("  steady subscribers: {received} of {expected} delivered, {lost} lost, {duplicates} duplicates, {evicted} closed by the server");
    println!("  churned connections: {}", churned.load(Ordering::Relaxed));
    check("lost messages", lost as f64, "msgs", "0", lost == 0);
    // Memory is flat when the second half of the run does not grow beyond the first half's peak.
    let half = samples.len() / 2;
    let first_peak = samples[..half].iter().map(|s| s.1).max().unwrap_or(0);
    let second_peak = samples[half..].iter().map(|s| s.1).max().unwrap_or(0);
    let growth = second_peak as f64 / first_peak.max(1) as f64 * 100.0 - 100.0;
    check(
        "RSS growth 2nd half vs 1st",
        growth,
        "%",
        "<= 5",
        growth <= 5.0,
    );
    println!(
        "{}",
        json!({"scenario": "soak", "seconds": seconds, "steady": connections, "churners": churners, "channels": channels, "rate": rate,
               "triggers": sent, "expected": expected, "delivered": received, "lost": lost, "duplicates": duplicates, "evicted": evicted,
               "churned": churned.load(Ordering::Relaxed), "rss_start_kib": rss0, "rss_end_kib": rss1, "rss_first_half_peak_kib": first_peak,
               "rss_second_half_peak_kib": second_peak, "files_start": fd0, "files_end": fd1, "samples": samples})
    );
    Ok(())
}
