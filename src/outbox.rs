//! A connection's bounded queue of outgoing frames, shared with the hub, and the signal that
//! tells the connection to close (slow consumer, terminated user, draining).
//!
//! A plain `VecDeque` behind a short mutex plus two `Notify`s: nothing is allocated until the
//! first frame and the buffer shrinks back after bursts, so idle connections stay small.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::protocol::codes::CloseReason;
use crate::protocol::SocketId;

/// Queue capacity kept after a burst has been written; larger buffers are released.
const KEEP_CAPACITY: usize = 16;

/// The sending half of a connection, as the hub sees it.
#[derive(Debug)]
pub struct Outbox {
    /// The connection's socket id (for `except` and bookkeeping).
    pub id: SocketId,
    queue: Mutex<VecDeque<Utf8Bytes>>,
    capacity: usize,
    /// Frames were queued.
    readable: Notify,
    /// Set once: why the connection must close.
    closing: OnceLock<CloseReason>,
    wake: Notify,
}

impl Outbox {
    /// A new, empty outbox holding at most `capacity` frames.
    pub fn new(id: SocketId, capacity: usize) -> Outbox {
        Outbox {
            id,
            queue: Mutex::new(VecDeque::new()),
            capacity,
            readable: Notify::new(),
            closing: OnceLock::new(),
            wake: Notify::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Utf8Bytes>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame without waiting. A full queue closes the connection with a reconnect code
    /// (slow consumer) rather than silently losing the frame.
    pub fn push(&self, frame: Utf8Bytes) {
        let was_empty = {
            let mut q = self.queue();
            if q.len() >= self.capacity {
                drop(q);
                self.close(CloseReason::SlowConsumer);
                return;
            }
            q.push_back(frame);
            q.len() == 1
        };
        if was_empty {
            self.readable.notify_one();
        }
    }

    /// Takes up to `max` queued frames, oldest first, into `out`.
    pub fn take(&self, max: usize, out: &mut Vec<Utf8Bytes>) {
        let mut q = self.queue();
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        if q.is_empty() && q.capacity() > KEEP_CAPACITY {
            q.shrink_to(KEEP_CAPACITY);
        }
    }

    /// Takes the oldest queued frame; releases a large buffer once it is empty.
    pub fn pop(&self) -> Option<Utf8Bytes> {
        let mut q = self.queue();
        let f = q.pop_front();
        if q.is_empty() && q.capacity() > KEEP_CAPACITY {
            q.shrink_to(KEEP_CAPACITY);
        }
        f
    }

    /// Frames waiting to be written.
    pub fn len(&self) -> usize {
        self.queue().len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once at least one frame is queued.
    pub async fn readable(&self) {
        loop {
            if !self.is_empty() {
                return;
            }
            self.readable.notified().await;
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
        let outbox = Outbox::new(SocketId { node: 1, seq: 1 }, 2);
        outbox.push("a".into());
        outbox.push("b".into());
        assert_eq!(outbox.closing(), None);
        outbox.readable().await;
        outbox.push("c".into());
        assert_eq!(outbox.closed().await, CloseReason::SlowConsumer);
        // a later reason does not replace the first
        outbox.close(CloseReason::Terminated);
        assert_eq!(outbox.closing(), Some(CloseReason::SlowConsumer));
        let mut out = Vec::new();
        outbox.take(10, &mut out);
        assert_eq!(
            out.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(outbox.is_empty());
    }

    #[test]
    fn buffer_shrinks_after_a_burst() {
        let outbox = Outbox::new(SocketId { node: 1, seq: 1 }, 1000);
        for _ in 0..500 {
            outbox.push("x".into());
        }
        let mut out = Vec::new();
        outbox.take(1000, &mut out);
        assert_eq!(out.len(), 500);
        assert!(outbox.queue().capacity() <= KEEP_CAPACITY);
    }
}
