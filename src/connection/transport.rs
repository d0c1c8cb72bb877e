//! The seam between the one connection loop and what carries its frames: a WebSocket or an
//! HTTP session. A transport moves frames and reports liveness; it never interprets them.

use std::future::Future;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::CloseReason;

/// How a write failed: the reason the connection ends (`None`: the client is gone).
pub type WriteResult = Result<(), Option<CloseReason>>;

/// What the peer did, as the connection loop needs to know it.
#[derive(Debug)]
pub enum Event {
    /// One inbound message (a Pusher JSON text).
    Text(Utf8Bytes),
    /// The peer showed it is alive without sending a message (a WebSocket ping or pong, an
    /// HTTP request); [`Transport::wants_write`] may now be true.
    Activity,
    /// Nothing from the peer, but the transport has something of its own to write (an HTTP
    /// heartbeat): call [`Transport::write`] if [`Transport::wants_write`].
    Idle,
    /// The connection is over: `None` when the client closed it, else why.
    End(Option<CloseReason>),
}

/// A carrier of one connection's frames.
pub trait Transport {
    /// Waits for the next thing the peer does (cancel-safe: the loop races it with the outbox).
    fn recv(&mut self) -> impl Future<Output = Event> + Send;

    /// Whether the outbox can be written now (an HTTP session needs an open receive request).
    fn writable(&self) -> bool;

    /// Whether the transport holds something to write besides the outbox (control replies,
    /// heartbeats, the session's open frame).
    fn wants_write(&self) -> bool;

    /// Writes what the transport holds and a batch of the outbox's frames, then flushes.
    fn write(
        &mut self,
        outbox: &Outbox,
        metrics: &Metrics,
    ) -> impl Future<Output = WriteResult> + Send;

    /// Lets the outbox write frames straight to the socket when the transport can share it (a
    /// plain TCP WebSocket); called once, before anything is sent. Returns whether it did;
    /// other transports ignore it.
    fn attach(&mut self, _outbox: &Arc<Outbox>, _metrics: &Arc<Metrics>) -> bool {
        false
    }

    /// Sends one text frame now (the `pusher:connection_established` greeting).
    fn send_text(&mut self, text: Utf8Bytes) -> impl Future<Output = WriteResult> + Send;

    /// Asks the peer to show it is alive (a WebSocket ping, an HTTP heartbeat).
    fn ping(&mut self) -> impl Future<Output = WriteResult> + Send;

    /// Ends the connection with `code`: a `pusher:error` then the transport's close, waiting
    /// (bounded) for the peer where the transport has a closing handshake.
    fn close(&mut self, code: u16, message: &str) -> impl Future<Output = ()> + Send;
}
