//! What the scenarios record for the plots beside their figures: a latency histogram, deliveries
//! per time slot, and the server's RSS sampled while connections open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

/// Upper bounds (ms) of the latency histogram's buckets; the last bucket is everything above.
pub const LATENCY_LE_MS: [f64; 14] = [
    0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0,
];

/// Slot length of the deliveries-over-time series, in milliseconds.
pub const SLOT_MS: u64 = 250;

/// Counts per bucket of [`LATENCY_LE_MS`] (one more for the overflow) as JSON.
pub fn latency_histogram(latencies_us: &[u32]) -> Value {
    let mut counts = vec![0u64; LATENCY_LE_MS.len() + 1];
    for &us in latencies_us {
        let ms = f64::from(us) / 1000.0;
        let i = LATENCY_LE_MS
            .iter()
            .position(|le| ms <= *le)
            .unwrap_or(LATENCY_LE_MS.len());
        counts[i] += 1;
    }
    json!({"le_ms": LATENCY_LE_MS, "counts": counts})
}

/// Counts one arrival at `elapsed_ms` since the run's epoch.
pub fn arrive(slots: &mut Vec<u64>, elapsed_ms: u64) {
    let i = (elapsed_ms / SLOT_MS) as usize;
    // Bounded: a run longer than an hour stops recording arrivals.
    if i >= 14_400 {
        return;
    }
    if slots.len() <= i {
        slots.resize(i + 1, 0);
    }
    slots[i] += 1;
}

/// Every subscriber's slots summed, as deliveries per second per slot, in JSON.
pub fn deliveries_over_time<'a>(each: impl IntoIterator<Item = &'a [u64]>) -> Value {
    let mut sum: Vec<u64> = Vec::new();
    for slots in each {
        if sum.len() < slots.len() {
            sum.resize(slots.len(), 0);
        }
        for (s, n) in sum.iter_mut().zip(slots) {
            *s += n;
        }
    }
    json!({"slot_ms": SLOT_MS, "counts": sum})
}

/// Samples the server's RSS against a count of open connections until dropped.
pub struct RssSampler {
    /// Connections open so far (the scenario bumps it).
    pub open: Arc<AtomicUsize>,
    samples: Arc<std::sync::Mutex<Vec<(usize, u64)>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling `pid` every `every` (nothing without a pid).
    pub fn start(pid: Option<u32>, every: Duration) -> RssSampler {
        let open = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = pid.map(|pid| {
            let (open, samples) = (open.clone(), samples.clone());
            tokio::spawn(async move {
                loop {
                    if let Some(kib) = crate::measure::rss_kib(pid) {
                        let n = open.load(Ordering::Relaxed);
                        if let Ok(mut s) = samples.lock() {
                            s.push((n, kib));
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            })
        });
        RssSampler {
            open,
            samples,
            task,
        }
    }

    /// Stops and returns `[[connections, rss_kib], …]`, with a last sample now.
    pub fn finish(mut self, pid: Option<u32>) -> Value {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let mut s = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some(kib) = pid.and_then(crate::measure::rss_kib) {
            s.push((self.open.load(Ordering::Relaxed), kib));
        }
        json!(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets() {
        let h = latency_histogram(&[50, 100, 101, 999, 1000, 2_000_000]);
        let counts: Vec<u64> = serde_json::from_value(h["counts"].clone()).unwrap();
        assert_eq!(counts.len(), 15);
        assert_eq!(counts[0], 2); // <= 0.1 ms
        assert_eq!(counts[1], 1); // 0.101
        assert_eq!(counts[4], 2); // 0.999 and 1.0
        assert_eq!(counts[14], 1); // above 1 s
        assert_eq!(counts.iter().sum::<u64>(), 6);
    }

    #[test]
    fn arrivals_are_slotted_and_summed() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        arrive(&mut a, 0);
        arrive(&mut a, 249);
        arrive(&mut a, 250);
        arrive(&mut b, 800);
        arrive(&mut b, u64::MAX / 2);
        assert_eq!(a, [2, 1]);
        assert_eq!(b, [0, 0, 0, 1]);
        let d = deliveries_over_time([a.as_slice(), b.as_slice()]);
        assert_eq!(d, json!({"slot_ms": 250, "counts": [2, 1, 0, 1]}));
    }
}
