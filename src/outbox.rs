//! A connection's bounded queue of outgoing frames, shared with the hub, and the signal that
//! tells the connection to close (slow consumer, terminated user).

use std::sync::OnceLock;

use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::codes::CloseReason;
use crate::protocol::SocketId;

/// The sending half of a connection, as the hub sees it.
#[derive(Debug)]
pub struct Outbox {
    /// The connection's socket id (for `except` and bookkeeping).
    pub id: SocketId,
    tx: mpsc::Sender<Utf8Bytes>,
    /// Set once: why the connection must close.
    closing: OnceLock<CloseReason>,
    wake: Notify,
}

impl Outbox {
    /// A new outbox holding at most `capacity` frames, and its receiving end.
    pub fn new(id: SocketId, capacity: usize) -> (Outbox, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        let outbox = Outbox {
            id,
            tx,
            closing: OnceLock::new(),
            wake: Notify::new(),
        };
        (outbox, rx)
    }

    /// Queues a frame without waiting. A full queue closes the connection with a reconnect code
    /// (slow consumer) rather than silently losing the frame.
    pub fn push(&self, frame: Utf8Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            self.close(CloseReason::SlowConsumer);
        }
    }

    /// Asks the connection to close with `reason` (the first reason wins).
    pub fn close(&self, reason: CloseReason) {
        if self.closing.set(reason).is_ok() {
            self.wake.notify_one();
        }
    }

    /// Why the connection must close, if it must.
    pub fn closing(&self) -> Option<CloseReason> {
        self.closing.get().copied()
    }

    /// Resolves once the connection has been asked to close.
    pub async fn closed(&self) -> CloseReason {
        loop {
            if let Some(r) = self.closing() {
                return r;
            }
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_closes_instead_of_growing() {
        let (outbox, mut rx) = Outbox::new(SocketId { node: 1, seq: 1 }, 2);
        outbox.push("a".into());
        outbox.push("b".into());
        assert_eq!(outbox.closing(), None);
        outbox.push("c".into());
        assert_eq!(outbox.closed().await, CloseReason::SlowConsumer);
        // a later reason does not replace the first
        outbox.close(CloseReason::Terminated);
        assert_eq!(outbox.closing(), Some(CloseReason::SlowConsumer));
        assert_eq!(rx.recv().await.as_deref(), Some("a"));
        assert_eq!(rx.recv().await.as_deref(), Some("b"));
        assert!(rx.try_recv().is_err());
    }
}
