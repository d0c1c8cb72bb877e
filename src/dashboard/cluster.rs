//! The cluster panel and the charts' data: each node's view (address, connections, view of
//! Redis, chart points) and the cluster's summed points, from this node's view and what the
//! adapter knows of the others. Pure, no I/O.

use serde::{Deserialize, Serialize};

use super::series::{self, Point};
use crate::adapter::{LinkView, NodeSeen};

/// What a node shares about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node id.
    pub node: u32,
    /// Where it serves clients.
    pub address: String,
    /// Seconds per chart point.
    pub interval_seconds: u64,
    /// Its connections when the view was taken.
    pub connections: u64,
    /// Its view of Redis (`None` on the local adapter).
    pub redis: Option<LinkView>,
    /// Its chart points, oldest first.
    pub points: Vec<Point>,
}

/// One row of the cluster panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// Whether its heartbeat is within the node timeout.
    pub alive: bool,
    /// Since its last heartbeat (`None`: this node on the local adapter).
    pub heartbeat_age_ms: Option<u64>,
    /// What it shared (only the node id when its view expired or was never written).
    #[serde(flatten)]
    pub view: NodeView,
}

/// The `/api/cluster` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// The node answering.
    pub node: u32,
    /// The answering node's sample interval.
    pub interval_seconds: u64,
    /// Heartbeats older than this mark a node as gone (`None` on the local adapter).
    pub node_timeout_ms: Option<u64>,
    /// Every node, this one first, then by id.
    pub nodes: Vec<NodeRow>,
    /// The points of the live nodes summed per instant.
    pub cluster: Vec<Point>,
}

/// Puts this node's fresh view together with what the store knows of every node (`None`: this
/// node is alone). Nodes past the timeout are listed as gone and left out of the sum; this
/// node is always listed with its fresh view, even while the store does not answer.
pub fn assemble(
    this: NodeView,
    members: Option<Vec<NodeSeen>>,
    node_timeout_ms: u64,
) -> ClusterView {
    let node = this.node;
    let interval_seconds = this.interval_seconds;
    let timeout = members.is_some().then_some(node_timeout_ms);
    let mut rows = Vec::new();
    let mut own_age = None;
    for m in members.iter().flatten() {
        if m.node == node {
            own_age = Some(m.heartbeat_age_ms);
            continue;
        }
        let mut view = m
            .view
            .as_deref()
            .and_then(|v| serde_json::from_str::<NodeView>(v).ok())
            .filter(|v| v.node == m.node)
            .unwrap_or_default();
        view.node = m.node;
        view.connections = m.connections;
        rows.push(NodeRow {
            alive: m.heartbeat_age_ms <= node_timeout_ms,
            heartbeat_age_ms: Some(m.heartbeat_age_ms),
            view,
        });
    }
    rows.sort_by_key(|r| r.view.node);
    rows.insert(
        0,
        NodeRow {
            alive: true,
            heartbeat_age_ms: own_age,
            view: this,
        },
    );
    let cluster = series::sum(
        rows.iter()
            .filter(|r| r.alive)
            .map(|r| r.view.points.as_slice()),
    );
    ClusterView {
        node,
        interval_seconds,
        node_timeout_ms: timeout,
        nodes: rows,
        cluster,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::series::Totals;

    fn point(t: u64, out: u64) -> Point {
        Point {
            t,
            total: Totals {
                messages_out: out,
                ..Totals::default()
            },
            apps: Default::default(),
        }
    }

    fn view(node: u32, points: Vec<Point>) -> NodeView {
        NodeView {
            node,
            address: format!("10.0.0.{node}:6001"),
            interval_seconds: 10,
            connections: 4,
            redis: Some(LinkView {
                up: true,
                publish_queue: 0,
                dropped: 0,
            }),
            points,
        }
    }

    fn member(node: u32, age: u64, v: Option<&NodeView>) -> NodeSeen {
        NodeSeen {
            node,
            heartbeat_age_ms: age,
            connections: 7,
            view: v.map(|v| serde_json::to_string(v).unwrap()),
        }
    }

    #[test]
    fn alone_on_the_local_adapter() {
        let c = assemble(view(1, vec![point(10, 3)]), None, 5000);
        assert_eq!(c.node_timeout_ms, None);
        assert_eq!(c.nodes.len(), 1);
        assert!(c.nodes[0].alive);
        assert_eq!(c.nodes[0].heartbeat_age_ms, None);
        assert_eq!(c.cluster, vec![point(10, 3)]);
    }

    #[test]
    fn live_nodes_are_summed_and_gone_ones_listed_but_left_out() {
        let other = view(2, vec![point(10, 5), point(20, 1)]);
        let dead = view(9, vec![point(10, 100)]);
        let members = vec![
            member(9, 6000, Some(&dead)),
            member(1, 200, None),
            member(2, 900, Some(&other)),
            // In the heartbeat set but its view expired.
            member(3, 100, None),
        ];
        let c = assemble(view(1, vec![point(10, 3)]), Some(members), 5000);
        assert_eq!(
            c.nodes
                .iter()
                .map(|r| (r.view.node, r.alive))
                .collect::<Vec<_>>(),
            [(1, true), (2, true), (3, true), (9, false)]
        );
        assert_eq!(c.nodes[0].heartbeat_age_ms, Some(200));
        // Connections come from the heartbeat, the rest from the shared view.
        assert_eq!(c.nodes[1].view.connections, 7);
        assert_eq!(c.nodes[1].view.address, "10.0.0.2:6001");
        assert_eq!(c.nodes[2].view.address, "");
        assert_eq!(c.cluster, vec![point(10, 8), point(20, 1)]);
        assert_eq!(c.node_timeout_ms, Some(5000));
    }

    #[test]
    fn a_view_claiming_another_node_or_undecodable_is_ignored() {
        let liar = view(5, vec![point(10, 50)]);
        let mut m = member(4, 10, Some(&liar));
        let mut broken = member(6, 10, None);
        broken.view = Some("{not json".into());
        m.connections = 1;
        let c = assemble(view(1, vec![]), Some(vec![m, broken]), 5000);
        assert_eq!(c.nodes[1].view.node, 4);
        assert!(c.nodes[1].view.points.is_empty());
        assert_eq!(c.nodes[2].view.node, 6);
        assert!(c.cluster.is_empty());
    }
}
