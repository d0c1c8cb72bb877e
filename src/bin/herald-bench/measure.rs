//! Measurements: latency percentiles, server RSS and CPU from /proc, and the report format.

use std::time::{Duration, Instant};

/// Latency samples in microseconds.
#[derive(Debug, Default)]
pub struct Latencies(pub Vec<u32>);

impl Latencies {
    /// The p-th percentile (0..=100) in milliseconds.
    pub fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let i = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        f64::from(self.0[i.min(self.0.len() - 1)]) / 1000.0
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) of a process; clock ticks assumed 100 Hz (Linux default).
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    let s = std::fs::read_to_string(path).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU use of the server and of this tool over a run, in percent of one core.
pub struct CpuMeter {
    pid: Option<u32>,
    start: Instant,
    server: Option<f64>,
    own: Option<f64>,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            start: Instant::now(),
            server: pid.and_then(|p| cpu_secs(Some(p))),
            own: cpu_secs(None),
        }
    }

    /// Server CPU seconds since the start.
    pub fn server_secs(&self) -> Option<f64> {
        Some(cpu_secs(Some(self.pid?))? - self.server?)
    }

    /// (server %, tool %).
    pub fn stop(&self) -> (Option<f64>, Option<f64>) {
        let wall = self.start.elapsed().as_secs_f64();
        let pct = |before: Option<f64>, after: Option<f64>| Some((after? - before?) / wall * 100.0);
        (
            pct(self.server, self.pid.and_then(|p| cpu_secs(Some(p)))),
            pct(self.own, cpu_secs(None)),
        )
    }
}

/// Prints `name: value (target: …) ok/MISS`.
pub fn check(name: &str, value: f64, unit: &str, target: &str, ok: bool) {
    println!(
        "  {name:<28} {value:>12.2} {unit:<8} target {target:<12} {}",
        if ok { "ok" } else { "MISS" }
    );
}

/// Elapsed seconds as f64.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
