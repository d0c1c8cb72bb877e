//! The costs scenario's measuring apparatus: Redis's counters (and the nodes' CPU) read around
//! an operation repeated N times, the nodes' idle rate subtracted, the rest per repetition.

use std::time::{Duration, Instant};

use crate::client::Error;
use crate::redis_stats::{self, Delta, Stats};

/// How long work the nodes do after an operation's reply (pipelines, fire-and-forget leaves)
/// is given to reach Redis before the counters are read.
pub(crate) const SETTLE: Duration = Duration::from_millis(400);

/// The Redis side of the measurement: snapshots, the idle rate, results.
pub(crate) struct Meter {
    pub(crate) redis: Vec<String>,
    /// Background cost per second (all servers summed) with every node idle.
    pub(crate) idle: Delta,
    pub(crate) rows: Vec<(String, usize, Delta)>,
    pub(crate) pids: Vec<u32>,
}

/// Where a measurement started.
pub(crate) struct Mark {
    pub(crate) redis: Vec<Stats>,
    pub(crate) at: Instant,
    node_cpu: f64,
}

impl Meter {
    /// CPU seconds of the nodes together.
    fn node_cpu(&self) -> f64 {
        self.pids
            .iter()
            .filter_map(|p| crate::measure::cpu_secs(Some(*p)))
            .sum()
    }

    pub(crate) async fn start(&self) -> Result<Mark, Error> {
        Ok(Mark {
            redis: redis_stats::all(&self.redis).await?,
            at: Instant::now(),
            node_cpu: self.node_cpu(),
        })
    }

    /// What happened since `from`, all servers summed, nodes' CPU included.
    pub(crate) async fn since(&self, from: &Mark) -> Result<Delta, Error> {
        let after = redis_stats::all(&self.redis).await?;
        let mut d = Delta::sum(&Delta::each(&from.redis, &after));
        d.node_cpu_us = (self.node_cpu() - from.node_cpu) * 1e6;
        Ok(d)
    }

    /// Ends a measurement of `n` repetitions of `name`; `idle_share` is the share of the idle
    /// rate still running (less when a node was killed).
    pub(crate) async fn stop(
        &mut self,
        name: &str,
        n: usize,
        from: Mark,
        idle_share: f64,
    ) -> Result<Delta, Error> {
        tokio::time::sleep(SETTLE).await;
        let secs = from.at.elapsed().as_secs_f64();
        let d = self
            .since(&from)
            .await?
            .minus(&self.idle, secs * idle_share)
            .scaled(1.0 / n.max(1) as f64);
        println!(
            "  {name:<30} {:>6.2} {:>6.2} {:>8.0} {:>8.0} {:>7.1} {:>7.1} {:>7.1}   {}",
            d.commands(),
            d.reads,
            d.net_in,
            d.net_out,
            d.cmd_us,
            d.cpu_us,
            d.node_cpu_us,
            d.calls
                .iter()
                .map(|(c, k)| format!("{c}={k:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.rows.push((name.to_string(), n, d.clone()));
        Ok(d)
    }
}
