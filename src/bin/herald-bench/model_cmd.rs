//! The `herald-bench model` subcommand: reads a workload (TOML, flags) and the measured costs,
//! prints the prediction and the sizing, and with `--measure` runs the workload and prints
//! predicted next to measured.

use std::path::PathBuf;

use clap::Args;

use crate::client::Error;
use crate::model::{predict, remote_nodes, Cost, Costs, Workload};
use crate::sizing::{size, Limits};
use crate::Target;

/// `herald-bench model`.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Workload TOML (fields of `Workload`); flags below override it.
    #[arg(long)]
    workload: Option<PathBuf>,
    /// The JSON line of a `herald-bench costs` run.
    #[arg(long, default_value = "bench/costs.json")]
    costs: PathBuf,
    #[arg(long)]
    nodes: Option<f64>,
    #[arg(long)]
    connections: Option<f64>,
    #[arg(long)]
    churn: Option<f64>,
    #[arg(long)]
    subs: Option<f64>,
    #[arg(long)]
    channels: Option<f64>,
    #[arg(long)]
    presence_share: Option<f64>,
    #[arg(long)]
    triggers: Option<f64>,
    #[arg(long)]
    fanout: Option<f64>,
    #[arg(long)]
    shards: Option<f64>,
    /// Cores per herald node, for sizing.
    #[arg(long, default_value_t = 4.0)]
    node_cores: f64,
    /// RAM per herald node, GiB, for sizing.
    #[arg(long, default_value_t = 8.0)]
    node_ram_gib: f64,
    /// Planned share of each resource.
    #[arg(long, default_value_t = 0.7)]
    headroom: f64,
    /// Bytes/s of one Redis server's network (default 10 Gbit/s).
    #[arg(long, default_value_t = 1.25e9)]
    redis_net: f64,
    /// Run the workload against these nodes (host:port, comma separated) and measure it.
    #[arg(long, value_delimiter = ',')]
    measure: Vec<String>,
    /// Redis servers to read while measuring (every master of a cluster).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6390/0"
    )]
    redis: Vec<String>,
    /// Seconds of measured steady load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Pids of the nodes, to read their CPU and RSS while measuring.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    #[command(flatten)]
    target: Target,
}

impl ModelArgs {
    /// The workload: the file, then the flags.
    fn workload(&self) -> Result<Workload, Error> {
        let mut w = match &self.workload {
            Some(p) => toml::from_str(&std::fs::read_to_string(p)?)?,
            None => Workload::default(),
        };
        let set = |f: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *f = v;
            }
        };
        set(&mut w.nodes, self.nodes);
        set(&mut w.connections, self.connections);
        set(&mut w.churn_per_s, self.churn);
        set(&mut w.subs_per_connection, self.subs);
        set(&mut w.channels, self.channels);
        set(&mut w.presence_share, self.presence_share);
        set(&mut w.triggers_per_s, self.triggers);
        set(&mut w.shards, self.shards);
        if self.fanout.is_some() {
            w.fanout = self.fanout;
        }
        if !self.measure.is_empty() {
            w.nodes = self.measure.len() as f64;
            w.shards = self.redis.len() as f64;
        }
        Ok(w)
    }
}

/// Prints one shard's figures.
fn print_cost(label: &str, c: &Cost) {
    println!(
        "  {label:<22} {:>12.0} cmd/s {:>10.0} rtrips/s {:>7.3} cores {:>12.0} B/s in {:>12.0} B/s out",
        c.commands,
        c.round_trips,
        c.cpu_us / 1e6,
        c.bytes_in,
        c.bytes_out
    );
}

/// `herald-bench model`: prints the prediction (and the measurement, with `--measure`).
pub async fn model(a: ModelArgs) -> Result<(), Error> {
    let w = a.workload()?;
    let c = Costs::from_json(&std::fs::read_to_string(&a.costs)?)?;
    let p = predict(&w, &c)?;
    let limits = Limits {
        node_cores: a.node_cores,
        node_ram: a.node_ram_gib * 1024.0 * 1024.0 * 1024.0,
        headroom: a.headroom,
        redis_net: a.redis_net,
    };
    let s = size(&w, &c, &limits)?;
    println!("model: {w:?}");
    println!(
        "  fan-out {:.1}, other nodes per publish {:.2}",
        w.fanout(),
        remote_nodes(w.fanout(), w.nodes)
    );
    let shards = p.redis.shards(w.shards as usize);
    for (i, sh) in shards.iter().enumerate() {
        print_cost(&format!("redis shard {i}"), sh);
    }
    let total = p.redis.total(w.shards as usize);
    print_cost("redis total", &total);
    println!(
        "  redis used_memory      {:>12.1} MiB (state shard)",
        p.redis.memory / 1048576.0
    );
    println!(
        "  per herald node        {:>12.3} cores {:>10.1} MiB RSS",
        p.node_cpu,
        p.node_rss / 1048576.0
    );
    let sp = &s.prediction;
    let n_shards = s.shards.unwrap_or(1);
    let sized = sp.redis.shards(n_shards);
    println!(
        "  sizing ({} cores and {} GiB per node, {:.0} % planned): {} node(s) (set by {}), {} Redis shard(s); Redis limit first: {}",
        a.node_cores,
        a.node_ram_gib,
        a.headroom * 100.0,
        s.nodes,
        s.node_limit,
        s.shards.map_or("no number of".to_string(), |n| n.to_string()),
        s.redis_limit
    );
    println!(
        "    at {} nodes: {:.2} cores and {:.0} MiB per node",
        s.nodes,
        sp.node_cpu,
        sp.node_rss / 1048576.0
    );
    for (i, sh) in sized.iter().enumerate() {
        print_cost(&format!("  sized shard {i}"), sh);
    }
    let mut state = sp.redis.state;
    state.cpu_us += sp.redis.idle_cpu_us;
    println!(
        "    state alone (one hash tag): {:.3} cores, {:.0} cmd/s; one Redis for everything: {:.3} cores",
        state.cpu_us / 1e6,
        state.commands,
        sp.redis.total(1).cpu_us / 1e6
    );
    let json = |c: &Cost| {
        serde_json::json!({"commands_per_s": c.commands, "round_trips_per_s": c.round_trips,
        "cpu_cores": c.cpu_us / 1e6, "bytes_in_per_s": c.bytes_in, "bytes_out_per_s": c.bytes_out})
    };
    let mut out = serde_json::json!({"scenario": "model",
        "predicted": {"shards": shards.iter().map(json).collect::<Vec<_>>(), "total": json(&total),
            "memory": p.redis.memory, "node_cpu_cores": p.node_cpu, "node_rss": p.node_rss},
        "sizing": {"nodes": s.nodes, "node_limit": s.node_limit, "shards": s.shards, "redis_limit": s.redis_limit,
            "node_cpu_cores": sp.node_cpu, "node_rss": sp.node_rss, "state_cpu_cores": state.cpu_us / 1e6,
            "shards_at_size": sized.iter().map(json).collect::<Vec<_>>(), "single_redis_cpu_cores": sp.redis.total(1).cpu_us / 1e6}});
    if !a.measure.is_empty() {
        let m =
            crate::validate::run(&a.target, &a.measure, &a.redis, &a.pids, &w, a.seconds).await?;
        // Predict again for the rates the run achieved (the load tool may fall short).
        let achieved = Workload {
            triggers_per_s: m.triggers as f64 / m.secs,
            churn_per_s: m.churned as f64 / m.secs,
            ..w.clone()
        };
        println!(
            "  achieved {:.1} triggers/s, {:.1} churns/s: predicted for those",
            achieved.triggers_per_s, achieved.churn_per_s
        );
        let p = predict(&achieved, &c)?;
        out["measured"] = crate::validate::report(&p, &m);
        out["achieved"] = serde_json::json!({"triggers_per_s": achieved.triggers_per_s, "churn_per_s": achieved.churn_per_s});
    }
    println!("{out}");
    Ok(())
}
