//! Sizing from the model: how many herald nodes (CPU and RAM at a planned share) and how many
//! Redis Cluster shards a workload needs, and which Redis resource runs out first.

use crate::client::Error;
use crate::model::{node, predict, Cost, Costs, Prediction, Workload};

/// Limits a deployment is sized against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Cores per herald node.
    pub node_cores: f64,
    /// RAM per herald node, bytes.
    pub node_ram: f64,
    /// Share of a resource planned for (the rest is headroom).
    pub headroom: f64,
    /// One Redis server's network, bytes/s each way.
    pub redis_net: f64,
}

/// What a workload needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    pub nodes: f64,
    /// Cluster masters needed, or None when one shard's state alone is over the limit.
    pub shards: Option<usize>,
    /// What runs out first on Redis as load grows.
    pub redis_limit: &'static str,
    /// What sets the node count: "CPU" or "memory".
    pub node_limit: &'static str,
    /// The prediction at that node count.
    pub prediction: Prediction,
}

/// Nodes for CPU and memory (the node count changes the Redis cost, so this iterates until
/// it settles), then the fewest shards keeping every shard's CPU and network under the limit
/// (a single Redis counts as one shard).
pub fn size(w: &Workload, c: &Costs, l: &Limits) -> Result<Sizing, Error> {
    let mut w = w.clone();
    let mut p = predict(&w, c)?;
    let mut node_limit = "CPU";
    for _ in 0..20 {
        let by_cpu = p.node_cpu * w.nodes / (l.node_cores * l.headroom);
        let rss_total = p.node_rss * w.nodes;
        // Each node's base RSS comes with it: solve n × base + per-connection ≤ n × cap.
        let per_conn_total = rss_total - node::BASE_RSS * w.nodes;
        let by_ram = per_conn_total / (l.node_ram * l.headroom - node::BASE_RSS).max(1.0);
        node_limit = if by_ram.max(by_cpu) <= 1.0 {
            "neither: one node is enough"
        } else if by_ram > by_cpu {
            "memory"
        } else {
            "CPU"
        };
        let nodes = by_cpu.max(by_ram).ceil().max(1.0);
        if nodes == w.nodes {
            break;
        }
        w.nodes = nodes;
        p = predict(&w, c)?;
    }
    let cpu_cap = l.headroom * 1e6;
    let net_cap = l.headroom * l.redis_net;
    let over = |s: &Cost| s.cpu_us > cpu_cap || s.bytes_out.max(s.bytes_in) > net_cap;
    let shards = (1..=1024).find(|n| !p.redis.shards(*n).iter().any(over));
    let s = p.redis.state + p.redis.pubsub;
    let mut state_alone = p.redis.state;
    state_alone.cpu_us += p.redis.idle_cpu_us;
    let redis_limit = if over(&state_alone) {
        "the state shard (one hash tag) alone"
    } else if s.cpu_us / cpu_cap >= s.bytes_out.max(s.bytes_in) / net_cap {
        "CPU"
    } else {
        "network"
    };
    Ok(Sizing {
        nodes: w.nodes,
        shards,
        redis_limit,
        node_limit,
        prediction: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::costs;

    #[test]
    fn sizing_finds_shards_and_reports_a_state_bottleneck() {
        let c = costs();
        let limits = Limits {
            node_cores: 4.0,
            node_ram: 1e12,
            headroom: 0.5,
            redis_net: 1e12,
        };
        // 200,000 triggers/s × 5 µs = 1 core of pub/sub: 3 shards at 50 %.
        let w = Workload {
            triggers_per_s: 200_000.0,
            fanout: Some(0.0),
            heartbeat_ms: 1e12,
            ..Workload::default()
        };
        let s = size(&w, &c, &limits).expect("costs");
        assert_eq!(s.shards, Some(3));
        assert_eq!(s.redis_limit, "CPU");
        // Churn whose state alone needs more than half a core: no shard count helps.
        let w = Workload {
            churn_per_s: 10_000.0,
            channels: 1e9,
            ..Workload::default()
        };
        let s = size(&w, &c, &limits).expect("costs");
        assert_eq!(s.shards, None);
        assert_eq!(s.redis_limit, "the state shard (one hash tag) alone");
    }

    #[test]
    fn sizing_counts_nodes_for_memory_when_connections_dominate() {
        let c = costs();
        let gib = 1024.0 * 1024.0 * 1024.0;
        let limits = Limits {
            node_cores: 4.0,
            node_ram: gib,
            headroom: 0.5,
            redis_net: 1e12,
        };
        let w = Workload {
            connections: 1e6,
            channels: 1e5,
            ..Workload::default()
        };
        let s = size(&w, &c, &limits).expect("costs");
        let want = (1e6 * node::RSS_PER_CONNECTION / (0.5 * gib - node::BASE_RSS)).ceil();
        assert_eq!(s.nodes, want);
        assert_eq!(s.node_limit, "memory");
        assert!(s.prediction.node_rss <= 0.5 * gib);
    }
}
