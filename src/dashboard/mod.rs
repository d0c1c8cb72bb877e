//! The built-in debug dashboard: a live event bus fed by connections, the REST API and the
//! webhook workers, the last hour of counters for the charts (`history`, `series`), the
//! cluster panel (`cluster`), and a small page served on its own listener (see `server`).

pub mod cluster;
pub mod history;
pub mod series;
pub mod server;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

/// One line of the live event log.
#[derive(Debug, Clone, Serialize)]
pub struct DashEvent {
    /// Node that saw it.
    pub node: u32,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// App id.
    pub app: String,
    /// What happened: `connection`, `disconnection`, `subscribed`, `unsubscribed`,
    /// `client_event`, `api_message`, `webhook_sent`, `webhook_failed`, `error`.
    pub kind: &'static str,
    /// Channel, when it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Event name, for messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Socket id, for connection events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    /// Close or error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Free text (error message, webhook URL, data excerpt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where events are published; nearly free while no dashboard page is watching.
#[derive(Debug, Clone)]
pub struct DashboardBus {
    node: u32,
    tx: broadcast::Sender<Arc<DashEvent>>,
}

/// Data shown in the log is cut to this many bytes.
const DETAIL_MAX: usize = 200;

impl DashboardBus {
    /// A bus for this node.
    pub fn new(node: u32) -> DashboardBus {
        DashboardBus {
            node,
            tx: broadcast::channel(1024).0,
        }
    }

    /// Whether a page is watching (callers skip building events otherwise).
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an event to watching pages.
    pub fn emit(&self, app: &str, kind: &'static str, f: impl FnOnce(&mut DashEvent)) {
        if !self.watched() {
            return;
        }
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut e = DashEvent {
            node: self.node,
            time_ms,
            app: app.to_string(),
            kind,
            channel: None,
            event: None,
            socket_id: None,
            code: None,
            detail: None,
        };
        f(&mut e);
        if let Some(d) = &mut e.detail {
            if d.len() > DETAIL_MAX {
                let mut cut = DETAIL_MAX;
                while !d.is_char_boundary(cut) {
                    cut -= 1;
                }
                d.truncate(cut);
                d.push('…');
            }
        }
        let _ = self.tx.send(Arc::new(e));
    }

    /// A receiver for one page.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DashEvent>> {
        self.tx.subscribe()
    }

    /// This node's id.
    pub fn node(&self) -> u32 {
        self.node
    }
}
