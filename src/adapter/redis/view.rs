//! What the dashboard's cluster panel reads: every node in the heartbeat set with its heartbeat
//! age, connections and shared view, and this node's own view of Redis.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{adapter_error, Inner};
use crate::adapter::{AdapterError, LinkView, NodeSeen};

impl Inner {
    /// Up/down, publish queue depth and dropped broadcasts, as this node sees them.
    pub(super) fn link_view(&self) -> LinkView {
        LinkView {
            up: self.healthy.load(Ordering::Acquire),
            publish_queue: self.out.max_capacity() - self.out.capacity()
                + self.held.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Writes this node's view next to its other keys; it expires if the node stops writing.
    pub(super) async fn share_view(&self, view: &str, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut link = self.link();
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.names.node(self.node, "view"))
            .arg(view)
            .arg("PX")
            .arg(ms)
            .query_async(&mut link)
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "dashboard view not shared");
        }
    }

    /// Every node in the heartbeat set, ages by Redis's clock.
    pub(super) async fn members(&self) -> Result<Vec<NodeSeen>, AdapterError> {
        let mut link = self.link();
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut link)
            .await
            .map_err(adapter_error)?;
        let now_ms = secs * 1000 + micros / 1000;
        let nodes: Vec<(u32, f64)> = redis::cmd("ZRANGE")
            .arg(self.names.nodes())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut link)
            .await
            .map_err(adapter_error)?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (node, _) in &nodes {
            pipe.cmd("HVALS").arg(self.names.node(*node, "conns"));
            pipe.cmd("GET").arg(self.names.node(*node, "view"));
        }
        let replies: Vec<redis::Value> =
            pipe.query_async(&mut link).await.map_err(adapter_error)?;
        let mut replies = replies.into_iter();
        let mut out = Vec::with_capacity(nodes.len());
        for (node, score) in nodes {
            let conns: Vec<u64> = replies
                .next()
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or_default();
            let view: Option<String> = replies
                .next()
                .and_then(|v| redis::from_redis_value(v).ok())
                .flatten();
            out.push(NodeSeen {
                node,
                heartbeat_age_ms: now_ms.saturating_sub(score as u64),
                connections: conns.iter().sum(),
                view,
            });
        }
        Ok(out)
    }
}
