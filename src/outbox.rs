//! A connection's bounded queue of outgoing frames, shared with the hub, the signal that tells
//! the connection to close (slow consumer, terminated user, draining), and the direct path: a
//! frame offered while nothing is queued and the connection's task is not writing goes straight
//! to the socket from the caller (the fan-out), without waking the task.
//!
//! A plain `VecDeque` behind a short mutex plus two `Notify`s: nothing is allocated until the
//! first queued frame and the buffer shrinks back after bursts, so idle connections stay small.
//! The socket's byte stream has two writers (the task through tungstenite, the direct path), so
//! the same mutex decides who may write: the direct path only while the queue is empty, no
//! partly written frame is left and the task is not inside a write ([`Outbox::begin_write`] …
//! [`Outbox::end_write`]). Order is kept: a frame is either written now, before anything queued
//! later, or queued behind what is already queued.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;
use crate::protocol::codes::CloseReason;
use crate::protocol::SocketId;

/// Queue capacity kept after a burst has been written; larger buffers are released.
const KEEP_CAPACITY: usize = 16;

/// A frame for one or many outboxes: the text, and its WebSocket encoding built on the first
/// direct write (once per broadcast, not per subscriber).
#[derive(Debug)]
pub struct Outgoing {
    text: Utf8Bytes,
    wire: OnceLock<Bytes>,
}

impl Outgoing {
    /// A frame carrying `text`.
    pub fn new(text: Utf8Bytes) -> Outgoing {
        Outgoing {
            text,
            wire: OnceLock::new(),
        }
    }

    /// The frame's text.
    pub fn text(&self) -> &Utf8Bytes {
        &self.text
    }

    /// The unmasked server-to-client WebSocket text frame carrying the text.
    pub fn wire(&self) -> &Bytes {
        self.wire
            .get_or_init(|| Bytes::from(text_frame(self.text.as_bytes())))
    }
}

/// The unmasked server-to-client WebSocket text frame (RFC 6455 §5.2) carrying `payload`.
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    text_header(payload.len(), &mut f);
    f.extend_from_slice(payload);
    f
}

/// Appends the header of an unmasked WebSocket text frame of `len` payload bytes (2 to 10
/// bytes: FIN and opcode, then the length in its smallest form).
pub fn text_header(len: usize, out: &mut Vec<u8>) {
    out.push(0x81); // FIN, text
    match len {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
}

/// A connection's socket as the direct path writes it, and where those writes are counted.
#[derive(Debug)]
pub struct Direct {
    /// The socket under the connection's WebSocket.
    pub socket: Arc<TcpStream>,
    /// `messages_out` / `bytes_out` of the direct writes.
    pub metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Utf8Bytes>,
    /// The rest of a frame the direct path wrote in part: the task writes it before anything.
    partial: Option<Bytes>,
    /// The task is writing: the socket may hold part of a frame only it can finish.
    writing: bool,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.partial.is_none()
    }
}

/// The sending half of a connection, as the hub sees it.
#[derive(Debug)]
pub struct Outbox {
    /// The connection's socket id (for `except` and bookkeeping).
    pub id: SocketId,
    queue: Mutex<Queue>,
    capacity: usize,
    /// Frames were queued.
    readable: Notify,
    /// Set once: why the connection must close.
    closing: OnceLock<CloseReason>,
    wake: Notify,
    /// Set once the connection is established on a plain TCP WebSocket.
    direct: OnceLock<Direct>,
}

impl Outbox {
    /// A new, empty outbox holding at most `capacity` frames.
    pub fn new(id: SocketId, capacity: usize) -> Outbox {
        Outbox {
            id,
            queue: Mutex::new(Queue::default()),
            capacity,
            readable: Notify::new(),
            closing: OnceLock::new(),
            wake: Notify::new(),
            direct: OnceLock::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enables the direct path to this socket (once; later calls are ignored).
    pub fn attach(&self, direct: Direct) {
        let _ = self.direct.set(direct);
    }

    /// Queues a frame without waiting (or writes it at once on the direct path). A full queue
    /// closes the connection with a reconnect code (slow consumer) rather than silently losing
    /// the frame.
    pub fn push(&self, frame: Utf8Bytes) {
        self.offer(&Outgoing::new(frame), true);
    }

    /// Delivers a frame: straight to the socket when `direct` is allowed, the direct path is
    /// attached, nothing is waiting and the task is not writing; else queued as by
    /// [`Outbox::push`]. A frame the socket takes in part is finished by the task.
    pub fn offer(&self, frame: &Outgoing, direct: bool) {
        let mut q = self.queue();
        if direct && q.is_empty() && !q.writing && self.closing.get().is_none() {
            if let Some(d) = self.direct.get() {
                let wire = frame.wire();
                // A full socket buffer (`WouldBlock`) queues the frame below and wakes the
                // task, which waits for the socket; other errors are the task's to find when it
                // writes the queued frame.
                if let Ok(n) = d.socket.try_write(wire) {
                    d.metrics.messages_out.fetch_add(1, Ordering::Relaxed);
                    d.metrics
                        .messages_out_direct
                        .fetch_add(1, Ordering::Relaxed);
                    d.metrics
                        .bytes_out
                        .fetch_add(frame.text.len() as u64, Ordering::Relaxed);
                    if n < wire.len() {
                        q.partial = Some(wire.slice(n..));
                        drop(q);
                        self.readable.notify_one();
                    }
                    return;
                }
            }
        }
        if q.frames.len() >= self.capacity {
            drop(q);
            self.close(CloseReason::SlowConsumer);
            return;
        }
        q.frames.push_back(frame.text.clone());
        let was_empty = q.frames.len() == 1 && q.partial.is_none();
        drop(q);
        if was_empty {
            self.readable.notify_one();
        }
    }

    /// The task starts writing: no direct write may happen until [`Outbox::end_write`]. Returns
    /// the rest of a partly written frame, which must go out first; it stays here until
    /// [`Outbox::wrote_partial`] says it went out (a write abandoned halfway loses nothing).
    pub fn begin_write(&self) -> Option<Bytes> {
        let mut q = self.queue();
        q.writing = true;
        q.partial.clone()
    }

    /// `n` more bytes of the partly written frame went out.
    pub fn wrote_partial(&self, n: usize) {
        let mut q = self.queue();
        if let Some(rest) = q.partial.as_mut() {
            if n >= rest.len() {
                q.partial = None;
            } else {
                bytes::Buf::advance(rest, n);
            }
        }
    }

    /// The task's own write went out in part: `rest` (the bytes after what the socket took)
    /// must be written before anything else, as a frame the direct path wrote in part is.
    /// Write it with [`Outbox::begin_write`] and [`Outbox::wrote_partial`].
    pub fn left_partial(&self, rest: Bytes) {
        let mut q = self.queue();
        debug_assert!(q.partial.is_none() && q.writing);
        q.partial = Some(rest);
    }

    /// The task's write completed and flushed: the direct path may write again. Not called
    /// after a failed or abandoned write, nor after a close frame.
    pub fn end_write(&self) {
        self.queue().writing = false;
    }

    /// Takes up to `max` queued frames, oldest first, into `out`.
    pub fn take(&self, max: usize, out: &mut Vec<Utf8Bytes>) {
        let mut q = self.queue();
        let n = q.frames.len().min(max);
        out.extend(q.frames.drain(..n));
        if q.frames.is_empty() && q.frames.capacity() > KEEP_CAPACITY {
            q.frames.shrink_to(KEEP_CAPACITY);
        }
    }

    /// Takes the oldest queued frame; releases a large buffer once it is empty.
    pub fn pop(&self) -> Option<Utf8Bytes> {
        let mut q = self.queue();
        let f = q.frames.pop_front();
        if q.frames.is_empty() && q.frames.capacity() > KEEP_CAPACITY {
            q.frames.shrink_to(KEEP_CAPACITY);
        }
        f
    }

    /// Frames waiting to be written.
    pub fn len(&self) -> usize {
        self.queue().frames.len()
    }

    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.queue().is_empty()
    }

    /// Resolves once a frame (or the rest of one) waits to be written.
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

    /// Resolves after [`Outbox::close`] was called (also if that was before this call); check
    /// [`Outbox::closing`] then.
    pub fn wake(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
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
        // The close wakes the connection's task (`must_close` waits on `wake`).
        tokio::time::timeout(std::time::Duration::from_secs(5), outbox.wake())
            .await
            .expect("woken");
        assert_eq!(outbox.closing(), Some(CloseReason::SlowConsumer));
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
    fn text_frames_carry_their_length_in_the_smallest_form() {
        assert_eq!(text_frame(b"hi"), b"\x81\x02hi");
        let mid = text_frame(&[b'x'; 200]);
        assert_eq!(&mid[..4], &[0x81, 126, 0, 200]);
        assert_eq!(mid.len(), 204);
        let big = text_frame(&vec![b'x'; 70_000]);
        assert_eq!(&big[..2], &[0x81, 127]);
        assert_eq!(&big[2..10], &70_000u64.to_be_bytes());
        assert_eq!(big.len(), 70_010);
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
        assert!(outbox.queue().frames.capacity() <= KEEP_CAPACITY);
    }
}
