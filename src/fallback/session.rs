//! An HTTP session as a [`Transport`]: receive requests (`xhr_streaming`, `xhr`) carry the
//! outbox out as frames, `xhr_send` bodies come in as messages, and a session with no receive
//! request open for the configured time ends like a vanished WebSocket (1006).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames;
use super::inbox::{self, Receiver, Sender};
use super::sink::Sink;
use crate::connection::{Event, Transport, WriteResult};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::{pusher_error_code, CloseReason};
use crate::protocol::outbound;

/// Frames written per receive response chunk when the outbox has a backlog.
const WRITE_BATCH: usize = 64;
/// pusher-js aborts and reopens a stream once its body passes this many UTF-16 units; a
/// stream past it gets nothing more (what it would get could be lost in the abort).
const STREAM_LIMIT: usize = 256 * 1024;
/// How long a closing session waits for a receive request to carry its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Requests queued for one session before their handlers wait.
const REQUEST_QUEUE: usize = 8;

/// What an HTTP request hands to its session.
#[derive(Debug)]
pub enum Request {
    /// A receive request: frames go into `body` (`streaming`: until the client reopens it;
    /// polling: one chunk, then the response ends).
    Receive {
        /// Where the response's chunks go.
        body: Sink,
        /// `xhr_streaming` rather than `xhr`.
        streaming: bool,
    },
    /// The messages of an `xhr_send` body (empty: a heartbeat).
    Send(Vec<String>),
    /// An `xhr_send` message above the size limit: the session ends with 1009.
    TooBig,
}

impl Request {
    /// The response body of a receive request.
    pub fn into_body(self) -> Option<Sink> {
        match self {
            Request::Receive { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// This node's HTTP sessions by `{key}/{server}/{session}`.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, (u64, Sender<Request>)>>,
    next: AtomicU64,
}

impl Sessions {
    fn map(&self) -> MutexGuard<'_, HashMap<String, (u64, Sender<Request>)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request queue of a live session.
    pub fn get(&self, key: &str) -> Option<Sender<Request>> {
        self.map().get(key).map(|(_, tx)| tx.clone())
    }

    /// Sessions open on this node.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a new session under `key` (replacing none: the caller checked) and returns its
    /// transport and request queue.
    pub fn open(self: &Arc<Self>, key: String, timing: Timing) -> (HttpSession, Sender<Request>) {
        let (tx, rx) = inbox::inbox(REQUEST_QUEUE);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map().insert(key.clone(), (id, tx.clone()));
        let now = Instant::now();
        let session = HttpSession {
            registration: Registration {
                sessions: self.clone(),
                key,
                id,
            },
            requests: rx,
            inbound: VecDeque::new(),
            receive: None,
            pending: String::new(),
            opened: false,
            timing,
            idle_since: now,
            last_write: now,
        };
        (session, tx)
    }
}

/// Removes the session from the registry when its transport is dropped.
#[derive(Debug)]
struct Registration {
    sessions: Arc<Sessions>,
    key: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.sessions.map();
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
        }
    }
}

/// A session's timers.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Without a receive request open this long, the session ends (1006).
    pub expiry: Duration,
    /// An open receive request gets `h` after this long without a frame.
    pub heartbeat: Duration,
}

#[derive(Debug)]
struct Receive {
    body: Sink,
    streaming: bool,
    /// UTF-16 units written to this stream.
    written: usize,
}

impl Receive {
    fn full(&self) -> bool {
        self.streaming && self.written > STREAM_LIMIT
    }
}

impl Drop for Receive {
    /// However the request ends (answered, replaced, the session over), its response ends.
    fn drop(&mut self) {
        self.body.finish();
    }
}

/// One HTTP session's transport.
#[derive(Debug)]
pub struct HttpSession {
    registration: Registration,
    requests: Receiver<Request>,
    /// Messages of `xhr_send` bodies not yet handed to the connection loop.
    inbound: VecDeque<String>,
    receive: Option<Receive>,
    /// Frames of the transport's own (open, greeting, heartbeat, close) waiting for a receive.
    pending: String,
    opened: bool,
    timing: Timing,
    /// When the last receive request ended (or the session started).
    idle_since: Instant,
    /// When a receive request last got a chunk (or opened).
    last_write: Instant,
}

impl HttpSession {
    fn end_receive(&mut self) {
        if self.receive.take().is_some() {
            self.idle_since = Instant::now();
        }
    }

    fn attach(&mut self, body: Sink, streaming: bool) {
        // A second receive request replaces the first (pusher-js aborted it or lost it); the
        // old response ends.
        self.end_receive();
        self.receive = Some(Receive {
            body,
            streaming,
            written: 0,
        });
        self.last_write = Instant::now();
    }

    /// Writes the pending frames and, if given, a batch of the outbox into the open receive
    /// request as one chunk. Without one, everything stays pending.
    async fn deliver(&mut self, outbox: Option<(&Outbox, &Metrics)>) -> WriteResult {
        let Some(receive) = self.receive.as_mut().filter(|r| !r.full()) else {
            return Ok(());
        };
        let mut chunk = String::new();
        if !self.opened {
            chunk.push_str(frames::OPEN);
            self.opened = true;
        }
        chunk.push_str(&self.pending);
        self.pending.clear();
        if let Some((outbox, metrics)) = outbox {
            let mut batch = Vec::new();
            outbox.take(WRITE_BATCH, &mut batch);
            if !batch.is_empty() {
                frames::push_messages(&mut chunk, &batch);
                let bytes: usize = batch.iter().map(|f| f.len()).sum();
                metrics
                    .messages_out
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                metrics.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
            }
        }
        if chunk.is_empty() && !receive.body.wants_write() {
            return Ok(());
        }
        let units = frames::utf16_len(&chunk);
        match receive.body.send(Bytes::from(chunk)).await {
            Ok(()) => {
                self.last_write = Instant::now();
                if receive.streaming {
                    receive.written += units;
                } else {
                    // A poll answers once.
                    self.end_receive();
                }
            }
            Err(unsent) => {
                // The request ended before this chunk: keep it for the next one, in order.
                let unsent = String::from_utf8_lossy(&unsent).into_owned();
                self.pending = unsent + &self.pending;
                self.end_receive();
            }
        }
        Ok(())
    }
}

impl Transport for HttpSession {
    async fn recv(&mut self) -> Event {
        loop {
            if let Some(m) = self.inbound.pop_front() {
                return Event::Text(m.into());
            }
            let open = self.receive.is_some();
            let receive = &self.receive;
            let receive_ended = async {
                match receive {
                    Some(r) => r.body.ended().await,
                    None => std::future::pending().await,
                }
            };
            // A stream past pusher-js's limit gets nothing more, heartbeats included: it waits
            // for the client to reopen it.
            let beats = self.writable() && self.pending.is_empty();
            let heartbeat_at = self.last_write + self.timing.heartbeat;
            let expires_at = self.idle_since + self.timing.expiry;
            tokio::select! {
                req = self.requests.recv() => match req {
                    Request::Send(messages) => {
                        if messages.is_empty() {
                            return Event::Activity;
                        }
                        self.inbound.extend(messages);
                    }
                    Request::TooBig => return Event::End(Some(CloseReason::MessageTooBig)),
                    Request::Receive { body, streaming } => {
                        self.attach(body, streaming);
                        return Event::Activity;
                    }
                },
                () = receive_ended => self.end_receive(),
                () = tokio::time::sleep_until(heartbeat_at), if beats => {
                    self.pending.push_str(frames::HEARTBEAT);
                    return Event::Idle;
                }
                () = tokio::time::sleep_until(expires_at), if !open => {
                    tracing::debug!(session = %self.registration.key, "HTTP session expired");
                    return Event::End(Some(CloseReason::Abnormal));
                }
            }
        }
    }

    fn writable(&self) -> bool {
        self.receive.as_ref().is_some_and(|r| !r.full())
    }

    fn wants_write(&self) -> bool {
        self.receive.as_ref().is_some_and(|r| {
            !r.full() && (!self.opened || !self.pending.is_empty() || r.body.wants_write())
        })
    }

    async fn write(&mut self, outbox: &Outbox, metrics: &Metrics) -> WriteResult {
        self.deliver(Some((outbox, metrics))).await
    }

    async fn send_text(&mut self, text: Utf8Bytes) -> WriteResult {
        frames::push_messages(&mut self.pending, [&text]);
        self.deliver(None).await
    }

    async fn ping(&mut self) -> WriteResult {
        if self.pending.is_empty() {
            self.pending.push_str(frames::HEARTBEAT);
        }
        self.deliver(None).await
    }

    /// Sends `pusher:error` and `c[code,"reason"]` on the open receive request, or on the next
    /// one within [`CLOSE_WAIT`]; the response then ends.
    async fn close(&mut self, code: u16, message: &str) {
        let error: Utf8Bytes = outbound::error(pusher_error_code(code), message, None).into();
        frames::push_messages(&mut self.pending, [&error]);
        frames::push_close(&mut self.pending, code, message);
        let closing = async {
            loop {
                if self.writable() {
                    let _ = self.deliver(None).await;
                    if self.pending.is_empty() {
                        return;
                    }
                }
                if let Request::Receive { body, streaming } = self.requests.recv().await {
                    self.attach(body, streaming);
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, closing).await;
        self.end_receive();
    }
}
