//! The scale model: a workload (nodes, connections, churn, subscriptions, presence, triggers,
//! webhooks) times the per-operation Redis costs measured by `costs`, giving the load on each
//! Redis server or Cluster shard and on each herald node. Pure arithmetic; `sizing` turns it
//! into nodes and shards, `model_cmd` is the subcommand, `validate` runs a workload for real.

use serde::Deserialize;

use crate::client::Error;
pub use crate::cost_table::{Cost, Costs};

/// Per-node figures from the single-node benchmarks (BENCHMARKS.md, Results 2026-11-22).
pub mod node {
    /// RSS of a fresh server with no connections, bytes (idle run: 6,252 KiB).
    pub const BASE_RSS: f64 = 6_252.0 * 1024.0;
    /// RSS per idle subscribed WebSocket connection, bytes (idle run: 3.95 KiB).
    pub const RSS_PER_CONNECTION: f64 = 3.95 * 1024.0;
    /// CPU per delivery sent as its own write, µs (fanout: 66 % of a core for 100,000/s).
    pub const CPU_PER_DELIVERY_US: f64 = 6.6;
    /// CPU per signed REST trigger, µs (trigger: 85 % of a core for 50,729/s).
    pub const CPU_PER_REST_US: f64 = 16.8;
}

/// A workload. Rates are per second over the whole cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    pub nodes: f64,
    pub connections: f64,
    /// Connections that leave and are replaced per second (each re-subscribes).
    pub churn_per_s: f64,
    pub subs_per_connection: f64,
    pub channels: f64,
    /// Share of subscriptions that are to presence channels (the rest: public/private).
    pub presence_share: f64,
    /// Share of connections that sign in.
    pub signin_share: f64,
    pub triggers_per_s: f64,
    /// Subscribers of a triggered channel; unset: connections × subscriptions / channels.
    pub fanout: Option<f64>,
    pub payload_bytes: f64,
    pub client_events_per_s: f64,
    pub webhooks_per_s: f64,
    /// Redis Cluster masters; 1 is one Redis server.
    pub shards: f64,
    pub heartbeat_ms: f64,
    /// The nodes' `[redis] replay_ms`: how long each message stays in its channel's log.
    pub replay_ms: f64,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            nodes: 1.0,
            connections: 1000.0,
            churn_per_s: 0.0,
            subs_per_connection: 1.0,
            channels: 100.0,
            presence_share: 0.0,
            signin_share: 0.0,
            triggers_per_s: 0.0,
            fanout: None,
            payload_bytes: 100.0,
            client_events_per_s: 0.0,
            webhooks_per_s: 0.0,
            shards: 1.0,
            heartbeat_ms: 1000.0,
            replay_ms: 10_000.0,
        }
    }
}

impl Workload {
    pub fn subscriptions(&self) -> f64 {
        self.connections * self.subs_per_connection
    }

    pub fn fanout(&self) -> f64 {
        self.fanout
            .unwrap_or_else(|| self.subscriptions() / self.channels.max(1.0))
    }
}

/// Redis load split by where it lands on a Cluster: the state (one hash tag, one shard) and
/// pub/sub traffic (sharded by channel, spread evenly).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RedisLoad {
    /// Rates per second of the state commands (scripts, hashes, heartbeats, webhooks).
    pub state: Cost,
    /// Rates per second of publishes and their delivery to nodes.
    pub pubsub: Cost,
    /// used_memory, bytes (all on the state shard).
    pub memory: f64,
    /// CPU µs per second every server uses by itself.
    pub idle_cpu_us: f64,
}

impl RedisLoad {
    /// The load of each shard: the first holds the state.
    pub fn shards(&self, shards: usize) -> Vec<Cost> {
        let n = shards.max(1);
        (0..n)
            .map(|i| {
                let mut spread = self.pubsub * (1.0 / n as f64);
                spread.cpu_us += self.idle_cpu_us;
                if i == 0 {
                    self.state + spread
                } else {
                    spread
                }
            })
            .collect()
    }

    /// All shards together.
    pub fn total(&self, shards: usize) -> Cost {
        self.shards(shards)
            .into_iter()
            .fold(Cost::default(), |a, b| a + b)
    }
}

/// A prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub redis: RedisLoad,
    /// Per herald node: CPU in cores and RSS in bytes.
    pub node_cpu: f64,
    pub node_rss: f64,
}

/// The expected cost of one subscribe and one unsubscribe of `kind` when a channel has on
/// average `per_channel` subscribers spread over `nodes` (Poisson: the chance that a joiner is
/// the channel's first is e^-λ, the first on its node e^-λ/nodes; leaves mirror joins).
pub fn churn_pair(c: &Costs, kind: &str, per_channel: f64, nodes: f64) -> Result<Cost, Error> {
    let p_new = (-per_channel).exp();
    let p_node = (-per_channel / nodes.max(1.0)).exp().max(p_new);
    let g = |what: &str, fallback: &str| {
        c.first(&[
            &format!("{what}.{kind}.{fallback}"),
            &format!("{what}.{kind}.new"),
            &format!("{what}.{kind}.vacate"),
        ])
    };
    let sub = c.get(&format!("subscribe.{kind}.new"))? * p_new
        + g("subscribe", "node_new")? * (p_node - p_new)
        + c.get(&format!("subscribe.{kind}.node_has"))? * (1.0 - p_node);
    let unsub = c.get(&format!("unsubscribe.{kind}.vacate"))? * p_new
        + g("unsubscribe", "node_last")? * (p_node - p_new)
        + c.get(&format!("unsubscribe.{kind}.node_keeps"))? * (1.0 - p_node);
    Ok(sub + unsub + per_member(c, kind)? * (per_channel - NODE_HAS_MEMBERS))
}

/// Members a `node_has` join finds (the channel's holder and the subscriber on another node).
pub const NODE_HAS_MEMBERS: f64 = 2.0;

/// What one more member adds to a presence join + leave (the member list goes back to the
/// joiner), from the `presence.many` rows against the `node_has`/`node_keeps` ones; zero for
/// other kinds or when not measured.
pub fn per_member(c: &Costs, kind: &str) -> Result<Cost, Error> {
    if kind != "presence" || c.many_members <= NODE_HAS_MEMBERS {
        return Ok(Cost::default());
    }
    let (Some(join), Some(leave)) = (
        c.ops.get("subscribe.presence.many"),
        c.ops.get("unsubscribe.presence.many"),
    ) else {
        return Ok(Cost::default());
    };
    let base = c.get("subscribe.presence.node_has")? + c.get("unsubscribe.presence.node_keeps")?;
    let mut slope = (*join + *leave - base) * (1.0 / (c.many_members - NODE_HAS_MEMBERS));
    // Memory is held per member already (node_has); commands do not depend on the members.
    slope.memory = 0.0;
    slope.commands = 0.0;
    slope.round_trips = 0.0;
    Ok(slope)
}

/// Expected number of nodes other than the publishing one with a subscriber of a channel of
/// `fanout` subscribers spread evenly over `nodes`.
pub fn remote_nodes(fanout: f64, nodes: f64) -> f64 {
    if nodes <= 1.0 || fanout <= 0.0 {
        return 0.0;
    }
    (nodes - 1.0) * (1.0 - (-fanout / nodes).exp())
}

/// The cost of one publish (trigger or client event) to `k` other nodes, with `payload` bytes.
pub fn publish_cost(c: &Costs, prefix: &str, k: f64, payload: f64) -> Result<Cost, Error> {
    let (kmax, widest) = c.widest("trigger")?;
    let base = c.get("trigger.k0")?;
    let per_node = if kmax > 0.0 {
        (widest - base) * (1.0 / kmax)
    } else {
        Cost::default()
    };
    let mut cost = base + per_node * k;
    if prefix != "trigger" {
        // Another path into the same publish: its measured difference at its own k.
        let (ke, e) = c.widest(prefix)?;
        cost = cost + e - (base + per_node * ke);
    }
    cost.bytes_in += payload - 100.0;
    cost.bytes_out += (payload - 100.0) * k;
    Ok(cost)
}

/// Bytes a channel log holds per message beyond its payload (the broadcast's JSON envelope,
/// stream entry and allocator overhead), fitted to the used_memory of validation runs v1 and
/// v2 (411 and 431 B per logged message at 100 B payloads); v3 is the independent check.
pub const LOG_ENTRY_OVERHEAD_B: f64 = 320.0;

/// Memory of the channel logs: every message between nodes (triggers, client events, presence
/// member events) stays `replay_ms` in its channel's stream. On a Cluster it spreads with the
/// channels; it is counted with the rest here.
pub fn log_memory(w: &Workload) -> f64 {
    let member_events = w.churn_per_s * w.subs_per_connection * w.presence_share * 2.0;
    let logged = w.triggers_per_s + w.client_events_per_s + member_events;
    logged * w.replay_ms / 1000.0 * (w.payload_bytes + LOG_ENTRY_OVERHEAD_B)
}

/// Predicts the load of `w` from `c`.
pub fn predict(w: &Workload, c: &Costs) -> Result<Prediction, Error> {
    let per_channel = w.fanout();
    let subs_pair = churn_pair(c, "public", per_channel, w.nodes)? * (1.0 - w.presence_share)
        + churn_pair(c, "presence", per_channel, w.nodes)? * w.presence_share;
    let mut one_churn =
        c.get("connect")? + c.get("disconnect")? + subs_pair * w.subs_per_connection;
    if w.signin_share > 0.0 {
        one_churn = one_churn
            + (c.get("signin")? + c.get("disconnect.signed_in")? - c.get("disconnect")?)
                * w.signin_share;
    }
    let beats = w.nodes * 1000.0 / w.heartbeat_ms.max(1.0);
    let mut state = one_churn * w.churn_per_s + c.get("heartbeat")? * beats;
    if w.webhooks_per_s > 0.0 {
        state = state + c.get("webhook")? * w.webhooks_per_s;
    }
    let k = remote_nodes(per_channel, w.nodes);
    let trigger = if per_channel > 0.0 {
        publish_cost(c, "trigger", k, w.payload_bytes)?
    } else {
        c.get("trigger.none")?
    };
    let mut pubsub = trigger * w.triggers_per_s;
    if w.client_events_per_s > 0.0 {
        pubsub =
            pubsub + publish_cost(c, "client_event", k, w.payload_bytes)? * w.client_events_per_s;
    }
    state.memory = 0.0;
    pubsub.memory = 0.0;

    // Memory: channels, node-channel pairs and subscriptions the state holds.
    let occupied = w.channels * (1.0 - (-per_channel).exp());
    let node_pairs =
        (w.channels * w.nodes * (1.0 - (-per_channel / w.nodes.max(1.0)).exp())).max(occupied);
    let mem = |kind: &str| -> Result<f64, Error> {
        let node_new = c
            .first(&[
                &format!("subscribe.{kind}.node_new"),
                &format!("subscribe.{kind}.new"),
            ])?
            .memory;
        Ok(c.get(&format!("subscribe.{kind}.new"))?.memory * occupied
            + node_new * (node_pairs - occupied)
            + c.get(&format!("subscribe.{kind}.node_has"))?.memory
                * (w.subscriptions() - node_pairs).max(0.0))
    };
    let mut memory = c.base_memory
        + mem("public")? * (1.0 - w.presence_share)
        + mem("presence")? * w.presence_share;
    if w.signin_share > 0.0 {
        memory += c.get("signin")?.memory * w.connections * w.signin_share;
    }
    memory += log_memory(w);

    // Node CPU: publishes at the busy-node figures of the single-node throughput benchmarks
    // (a node at high load amortises the wake-ups the paced `costs` run pays per operation);
    // churn, heartbeats and webhooks at their measured node CPU.
    let deliveries = (w.triggers_per_s + w.client_events_per_s) * per_channel;
    let node_cpu = (state.node_cpu_us
        + w.triggers_per_s * node::CPU_PER_REST_US
        + deliveries * node::CPU_PER_DELIVERY_US)
        / 1e6
        / w.nodes.max(1.0);
    let node_rss = node::BASE_RSS + node::RSS_PER_CONNECTION * w.connections / w.nodes.max(1.0);
    Ok(Prediction {
        redis: RedisLoad {
            state,
            pubsub,
            memory,
            idle_cpu_us: c.idle_cpu_us,
        },
        node_cpu,
        node_rss,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(crate) fn cost(commands: f64, cpu_us: f64, memory: f64) -> Cost {
        Cost {
            commands,
            round_trips: commands / 2.0,
            bytes_in: commands * 10.0,
            bytes_out: commands * 20.0,
            cpu_us,
            memory,
            node_cpu_us: cpu_us * 2.0,
        }
    }

    pub(crate) fn costs() -> Costs {
        let mut ops = BTreeMap::new();
        for kind in ["public", "presence"] {
            let m = if kind == "presence" { 2.0 } else { 1.0 };
            ops.insert(format!("subscribe.{kind}.new"), cost(4.0 * m, 40.0, 300.0));
            ops.insert(
                format!("subscribe.{kind}.node_new"),
                cost(3.0 * m, 30.0, 100.0),
            );
            ops.insert(
                format!("subscribe.{kind}.node_has"),
                cost(2.0 * m, 20.0, 10.0),
            );
            ops.insert(
                format!("unsubscribe.{kind}.vacate"),
                cost(4.0 * m, 40.0, -300.0),
            );
            ops.insert(
                format!("unsubscribe.{kind}.node_last"),
                cost(3.0 * m, 30.0, -100.0),
            );
            ops.insert(
                format!("unsubscribe.{kind}.node_keeps"),
                cost(2.0 * m, 20.0, -10.0),
            );
        }
        ops.insert("connect".into(), Cost::default());
        ops.insert("disconnect".into(), Cost::default());
        ops.insert("heartbeat".into(), cost(5.0, 50.0, 0.0));
        ops.insert("trigger.none".into(), cost(1.0, 5.0, 0.0));
        ops.insert("trigger.k0".into(), cost(1.0, 5.0, 0.0));
        ops.insert("trigger.k2".into(), cost(1.0, 9.0, 0.0));
        ops.insert("client_event.k2".into(), cost(1.0, 10.0, 0.0));
        Costs {
            ops,
            base_memory: 1000.0,
            idle_cpu_us: 0.0,
            many_members: 0.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn churn_pair_weights_the_cases_by_occupancy() {
        let c = costs();
        // Nobody else: every join is a channel's first, every leave vacates.
        let lone = churn_pair(&c, "public", 0.0, 3.0).expect("costs");
        assert!(close(lone.commands, 8.0));
        // Crowded channels: every join finds the node already subscribed.
        let crowd = churn_pair(&c, "public", 1e6, 3.0).expect("costs");
        assert!(close(crowd.commands, 4.0));
        // λ = 3 on 3 nodes: e^-3 new, e^-1 - e^-3 new on the node, the rest already there.
        let mid = churn_pair(&c, "presence", 3.0, 3.0).expect("costs");
        let (pn, pd) = ((-3.0f64).exp(), (-1.0f64).exp());
        let want = 2.0 * (8.0 * pn + 6.0 * (pd - pn) + 4.0 * (1.0 - pd));
        assert!(close(mid.commands, want), "{} vs {want}", mid.commands);
    }

    #[test]
    fn presence_joins_grow_with_the_members() {
        let mut c = costs();
        // Measured at 52 members: join + leave 100 µs dearer than at 2 → 2 µs per member.
        c.many_members = 52.0;
        let join = c.ops["subscribe.presence.node_has"] + cost(0.0, 60.0, 0.0);
        let leave = c.ops["unsubscribe.presence.node_keeps"] + cost(0.0, 40.0, 0.0);
        c.ops.insert("subscribe.presence.many".into(), join);
        c.ops.insert("unsubscribe.presence.many".into(), leave);
        let slope = per_member(&c, "presence").expect("costs");
        assert!(close(slope.cpu_us, 2.0));
        assert_eq!(slope.commands, 0.0);
        assert_eq!(per_member(&c, "public").expect("costs"), Cost::default());
        // 12 members per channel: 10 more than the node_has case.
        let at12 = churn_pair(&c, "presence", 12.0, 1.0).expect("costs");
        let flat = churn_pair(&costs(), "presence", 12.0, 1.0).expect("costs");
        assert!(close(at12.cpu_us - flat.cpu_us, 20.0));
        assert!(close(flat.commands, at12.commands));
    }

    #[test]
    fn remote_nodes_grow_with_fanout_up_to_the_other_nodes() {
        assert_eq!(remote_nodes(10.0, 1.0), 0.0);
        assert_eq!(remote_nodes(0.0, 5.0), 0.0);
        assert!(close(remote_nodes(3.0, 3.0), 2.0 * (1.0 - (-1.0f64).exp())));
        assert!(remote_nodes(1e6, 20.0) > 18.999);
    }

    #[test]
    fn publish_cost_interpolates_per_other_node_and_payload() {
        let c = costs();
        let p = publish_cost(&c, "trigger", 1.0, 100.0).expect("costs");
        assert!(close(p.cpu_us, 7.0));
        let big = publish_cost(&c, "trigger", 1.0, 1100.0).expect("costs");
        assert!(close(big.bytes_in - p.bytes_in, 1000.0));
        assert!(close(big.bytes_out - p.bytes_out, 1000.0));
        // A client event keeps its own measured extra (10 - 9 µs at k = 2).
        let ce = publish_cost(&c, "client_event", 1.0, 100.0).expect("costs");
        assert!(close(ce.cpu_us, 8.0));
    }

    #[test]
    fn predict_adds_churn_heartbeats_and_triggers() {
        let c = costs();
        let w = Workload {
            nodes: 2.0,
            connections: 100.0,
            churn_per_s: 10.0,
            subs_per_connection: 1.0,
            channels: 1e9, // every channel has one subscriber: joins are firsts
            triggers_per_s: 100.0,
            fanout: Some(0.0),
            ..Workload::default()
        };
        let p = predict(&w, &c).expect("costs");
        // 10 churns × 8 commands + 2 beats × 5, and 100 triggers × 1 (no subscribers).
        assert!(close(p.redis.state.commands, 90.0), "{:?}", p.redis.state);
        assert!(close(p.redis.pubsub.commands, 100.0));
        assert!(close(p.redis.pubsub.cpu_us, 500.0));
        // Node: churn and heartbeats at their measured node CPU (2 × their Redis CPU here),
        // 100 REST triggers at the busy figure, no deliveries; over 2 nodes.
        let state_cpu = 2.0 * (10.0 * 80.0 + 2.0 * 50.0);
        let want = (state_cpu + 100.0 * node::CPU_PER_REST_US) / 1e6 / 2.0;
        assert!(close(p.node_cpu, want), "{} vs {want}", p.node_cpu);
        assert!(close(
            p.node_rss,
            node::BASE_RSS + 50.0 * node::RSS_PER_CONNECTION
        ));
    }

    #[test]
    fn memory_counts_channels_node_pairs_and_subscriptions() {
        let c = costs();
        let w = Workload {
            nodes: 1.0,
            connections: 1000.0,
            channels: 10.0,
            replay_ms: 0.0,
            ..Workload::default()
        };
        let p = predict(&w, &c).expect("costs");
        // 100 per channel: 10 channels occupied (300 B), 990 more subscriptions (10 B).
        let occ = 10.0 * (1.0 - (-100.0f64).exp());
        let want = 1000.0 + 300.0 * occ + 10.0 * (1000.0 - occ);
        assert!(close(p.redis.memory, want), "{} vs {want}", p.redis.memory);
    }

    #[test]
    fn channel_logs_hold_every_message_for_the_window() {
        let w = Workload {
            triggers_per_s: 200.0,
            client_events_per_s: 10.0,
            churn_per_s: 10.0,
            presence_share: 0.5,
            payload_bytes: 100.0,
            replay_ms: 10_000.0,
            ..Workload::default()
        };
        // (200 + 10 + 10 joins/leaves × 0.5 presence × 2 events) × 10 s × (100 + 320) B.
        assert!(close(log_memory(&w), 220.0 * 10.0 * 420.0));
        let off = Workload {
            replay_ms: 0.0,
            ..w.clone()
        };
        assert_eq!(log_memory(&off), 0.0);
        let c = costs();
        let with = predict(&w, &c).expect("costs").redis.memory;
        let without = predict(&off, &c).expect("costs").redis.memory;
        assert!(close(with - without, log_memory(&w)));
    }

    #[test]
    fn shards_spread_pubsub_but_not_state() {
        let load = RedisLoad {
            state: cost(100.0, 1000.0, 0.0),
            pubsub: cost(300.0, 3000.0, 0.0),
            memory: 0.0,
            idle_cpu_us: 7.0,
        };
        let s = load.shards(3);
        assert_eq!(s.len(), 3);
        assert!(close(s[0].commands, 200.0));
        assert!(close(s[1].commands, 100.0));
        assert!(close(s[0].cpu_us, 2007.0));
        assert!(close(s[2].cpu_us, 1007.0));
        assert!(close(load.total(3).cpu_us, 4021.0));
    }
}
