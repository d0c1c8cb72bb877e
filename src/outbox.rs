//! A connection's bounded queue of outgoing frames, shared with the hub, and its eviction signal.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::SocketId;

/// The sending half of a connection, as the hub sees it.
#[derive(Debug)]
pub struct Outbox {
    /// The connection's socket id (for `except` and bookkeeping).
    pub id: SocketId,
    tx: mpsc::Sender<Utf8Bytes>,
    evicted: AtomicBool,
    evict: Notify,
}

impl Outbox {
    /// A new outbox holding at most `capacity` frames, and its receiving end.
    pub fn new(id: SocketId, capacity: usize) -> (Outbox, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        let outbox = Outbox {
            id,
            tx,
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        };
        (outbox, rx)
    }

    /// Queues a frame without waiting. A full queue marks the connection for eviction: it is
    /// closed with a reconnect code rather than silently losing the frame.
    pub fn push(&self, frame: Utf8Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            if !self.evicted.swap(true, Ordering::AcqRel) {
                self.evict.notify_one();
            }
        }
    }

    /// Whether the connection fell behind and must be closed.
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Resolves once the connection has been marked for eviction.
    pub async fn evicted(&self) {
        if self.is_evicted() {
            return;
        }
        self.evict.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_evicts_instead_of_growing() {
        let (outbox, mut rx) = Outbox::new(SocketId { node: 1, seq: 1 }, 2);
        outbox.push("a".into());
        outbox.push("b".into());
        assert!(!outbox.is_evicted());
        outbox.push("c".into());
        assert!(outbox.is_evicted());
        outbox.evicted().await;
        assert_eq!(rx.recv().await.as_deref(), Some("a"));
        assert_eq!(rx.recv().await.as_deref(), Some("b"));
        assert!(rx.try_recv().is_err());
    }
}
