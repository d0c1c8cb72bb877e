//! One WebSocket connection: handshake checks, the read/write loop over socket, outbox and
//! liveness timer, and closing with a Pusher code.

pub mod harness;
mod session;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError as WsProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use std::sync::atomic::Ordering;

use crate::app::App;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::codes::{check_protocol, pusher_error_code, CloseReason};
use crate::protocol::outbound;
use crate::state::State;
use session::Session;

/// Frames written per flush when the outbox has a backlog.
const WRITE_BATCH: usize = 64;
/// How long a closing handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the HTTP layer learned from the upgrade request.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// The app key from `/app/{key}`; `None` if the path did not match.
    pub key: Option<String>,
    /// The `protocol` query value.
    pub protocol: Option<String>,
}

/// Bytes read per socket read. Clients send small frames (subscribe, pings, client events), and
/// the buffer is allocated up front for every connection, so it is kept small.
const READ_BUFFER: usize = 256;

/// WebSocket settings for small idle connections with bounded inbound messages.
pub fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// Runs a connection from upgrade to close.
pub async fn serve<S>(mut ws: WebSocketStream<S>, up: Upgrade, state: Arc<State>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let app = match admit(&state, &up) {
        Ok(app) => app,
        Err(reason) => {
            tracing::debug!(code = reason.code(), key = ?up.key, "connection refused");
            Box::pin(close(&mut ws, reason.code(), reason.message())).await;
            return;
        }
    };
    // The upgrade's strings are not needed any more; free them for the connection's lifetime.
    drop(up);
    let app_hub = state.hub.app(&app.id);
    if !app_hub.add_connection(app.max_connections) {
        state.remove_connection();
        let r = CloseReason::OverQuota;
        tracing::warn!(app = %app.id, "app over connection quota");
        Box::pin(close(&mut ws, r.code(), r.message())).await;
        return;
    }
    state
        .metrics
        .connections_opened
        .fetch_add(1, Ordering::Relaxed);
    let id = state.ids.next_id();
    state.dashboard.emit(&app.id, "connection", |e| {
        e.socket_id = Some(id.to_string())
    });
    let outbox = Outbox::new(id, state.config.server.outbox_capacity);
    let outbox = Arc::new(outbox);
    tracing::debug!(app = %app.id, socket_id = %id, "connection opened");
    let mut session = Session::new(state.clone(), app.clone(), outbox.clone());
    let reason = run(&mut ws, &state, &mut session, &outbox, app_hub.removed()).await;
    // Leave every channel before the (possibly slow) closing handshake, so counts and presence
    // are right at once.
    Box::pin(session.close()).await;
    state.metrics.closed(reason.map_or(0, CloseReason::code));
    state.dashboard.emit(&app.id, "disconnection", |e| {
        e.socket_id = Some(id.to_string());
        e.code = reason.map(CloseReason::code);
    });
    if reason == Some(CloseReason::SlowConsumer) {
        state.metrics.evictions.fetch_add(1, Ordering::Relaxed);
    }
    match reason {
        Some(r) if r.sends_close_frame() => {
            tracing::debug!(app = %app.id, socket_id = %id, code = r.code(), "closing connection");
            Box::pin(close(&mut ws, r.code(), r.message())).await;
        }
        Some(_) => tracing::debug!(app = %app.id, socket_id = %id, "connection lost"),
        None => tracing::debug!(app = %app.id, socket_id = %id, "connection closed by client"),
    }
    app_hub.remove_connection();
    state.remove_connection();
}

/// The handshake checks, in PROTOCOL.md §1.2 order. On success the node count includes this one.
fn admit(state: &State, up: &Upgrade) -> Result<Arc<App>, CloseReason> {
    let key = up.key.as_deref().ok_or(CloseReason::PathNotFound)?;
    let app = state.apps.by_key(key).ok_or(CloseReason::AppNotFound)?;
    if !app.enabled {
        return Err(CloseReason::AppDisabled);
    }
    check_protocol(up.protocol.as_deref())?;
    if state.shutting_down() {
        return Err(CloseReason::ShuttingDown);
    }
    if state.draining() {
        return Err(CloseReason::Draining);
    }
    if !state.add_connection() {
        return Err(CloseReason::OverCapacity);
    }
    Ok(app)
}

/// The connection loop; returns why it ended, or `None` if the client closed it.
async fn run<S>(
    ws: &mut WebSocketStream<S>,
    state: &State,
    session: &mut Session,
    outbox: &Arc<Outbox>,
    mut removed: tokio::sync::watch::Receiver<bool>,
) -> Option<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server = &state.config.server;
    let activity = Duration::from_secs(server.activity_timeout);
    // Also the stall limit: no single write may take longer than a ping may go unanswered.
    let pong_wait = Duration::from_secs(server.pong_timeout);
    let mut shutdown = state.shutdown.clone();
    let mut draining = state.draining.clone();
    let drain_window = Duration::from_secs(server.drain_seconds);
    // Created once: re-creating it on every wake-up registered and dropped two waiters per
    // delivered frame (visible in perf as Notify bookkeeping).
    let closing = must_close(
        outbox,
        &mut shutdown,
        &mut draining,
        &mut removed,
        drain_window,
    );
    tokio::pin!(closing);
    // Every write below races the close signal and the stall limit: a client that stops
    // reading can block a write, and eviction, shutdown and the pong timeout must still end it.
    macro_rules! bounded {
        ($write:expr) => {
            match guarded($write, closing.as_mut(), pong_wait, outbox).await {
                Ok(()) => {}
                Err(reason) => return reason,
            }
        };
    }
    let hello = outbound::connection_established(outbox.id, server.activity_timeout);
    state.metrics.messages_out.fetch_add(1, Ordering::Relaxed);
    state
        .metrics
        .bytes_out
        .fetch_add(hello.len() as u64, Ordering::Relaxed);
    bounded!(ws.send(Message::Text(hello.into())));
    let mut last_seen = Instant::now();
    let mut pinged = false;
    let timer = tokio::time::sleep_until(last_seen + activity);
    tokio::pin!(timer);
    // Authorized connections: sign in (or subscribe privately) before this deadline.
    let signin_deadline = session.signin_timeout().map(|d| last_seen + d);
    let signin_timer = tokio::time::sleep_until(signin_deadline.unwrap_or(last_seen));
    tokio::pin!(signin_timer);
    loop {
        tokio::select! {
            biased;
            r = &mut closing => return r,
            () = &mut signin_timer, if signin_deadline.is_some() && !session.is_authorized() => {
                return Some(CloseReason::NotAuthorizedInTime);
            }
            msg = ws.next() => {
                let msg = match msg {
                    None => return None,
                    Some(Ok(m)) => m,
                    Some(Err(WsError::Capacity(e))) => {
                        tracing::debug!(socket_id = %outbox.id, error = %e, "inbound message too big");
                        return Some(CloseReason::MessageTooBig);
                    }
                    Some(Err(WsError::Utf8(e))) => {
                        tracing::debug!(socket_id = %outbox.id, error = %e, "text frame is not UTF-8");
                        return Some(CloseReason::InvalidUtf8);
                    }
                    Some(Err(e @ (WsError::Io(_) | WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake)))) => {
                        tracing::debug!(socket_id = %outbox.id, error = %e, "client vanished");
                        return Some(CloseReason::Abnormal);
                    }
                    Some(Err(WsError::Protocol(e))) => {
                        tracing::debug!(socket_id = %outbox.id, error = %e, "WebSocket protocol error");
                        return Some(CloseReason::ProtocolViolation);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(socket_id = %outbox.id, error = %e, "socket error");
                        return None;
                    }
                };
                last_seen = Instant::now();
                pinged = false;
                match msg {
                    // Boxed: a rare, large state machine that would otherwise sit in every idle task.
                    Message::Text(t) => {
                        state.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
                        state.metrics.bytes_in.fetch_add(t.len() as u64, Ordering::Relaxed);
                        Box::pin(session.handle_text(t.as_str())).await
                    }
                    Message::Binary(_) => tracing::debug!(socket_id = %outbox.id, "binary frame ignored"),
                    // tungstenite queued the Pong reply; send it now.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => bounded!(ws.flush()),
                    Message::Close(_) => {
                        bounded!(ws.flush());
                        return None;
                    }
                }
            }
            _ = outbox.readable() => bounded!(write_batch(ws, outbox, &state.metrics)),
            () = &mut timer => {
                let idle = last_seen.elapsed();
                if idle < activity {
                    timer.as_mut().reset(last_seen + activity);
                } else if !pinged {
                    pinged = true;
                    bounded!(ws.send(Message::Ping(Default::default())));
                    timer.as_mut().reset(Instant::now() + pong_wait);
                } else {
                    return Some(CloseReason::PongTimeout);
                }
            }
        }
    }
}

/// Runs one write unless the connection must close first or the write stalls past `stall`.
/// `Err` carries the close reason (`None`: the client is gone).
async fn guarded<W, C>(
    write: W,
    closing: std::pin::Pin<&mut C>,
    stall: Duration,
    outbox: &Outbox,
) -> Result<(), Option<CloseReason>>
where
    W: std::future::Future<Output = Result<(), WsError>>,
    C: std::future::Future<Output = Option<CloseReason>>,
{
    tokio::select! {
        biased;
        r = closing => Err(r),
        _ = tokio::time::sleep(stall) => {
            tracing::warn!(socket_id = %outbox.id, "write stalled; evicting");
            Err(Some(CloseReason::SlowConsumer))
        }
        r = write => r.map_err(|e| match e {
            // The peer vanished under a write (reset, broken pipe).
            WsError::Io(_) => Some(CloseReason::Abnormal),
            _ => None,
        }),
    }
}

/// Resolves when the connection must close for a reason outside it: eviction, termination,
/// shutdown, or draining (after a random delay within the drain window, so a node's sockets
/// reconnect elsewhere gradually instead of all at once).
async fn must_close(
    outbox: &Outbox,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    draining: &mut tokio::sync::watch::Receiver<bool>,
    removed: &mut tokio::sync::watch::Receiver<bool>,
    drain_window: Duration,
) -> Option<CloseReason> {
    let drained = async {
        crate::state::shutdown_started(draining).await;
        tokio::time::sleep(drain_window.mul_f64(rand::random::<f64>())).await;
    };
    let r = tokio::select! {
        biased;
        r = outbox.closed() => r,
        _ = crate::state::shutdown_started(shutdown) => CloseReason::ShuttingDown,
        _ = crate::state::shutdown_started(removed) => CloseReason::AppNotFound,
        _ = drained => CloseReason::Draining,
    };
    if r == CloseReason::SlowConsumer {
        tracing::warn!(socket_id = %outbox.id, "slow consumer evicted");
    }
    Some(r)
}

/// Writes what is queued (up to [`WRITE_BATCH`] frames), then flushes once.
async fn write_batch<S>(
    ws: &mut WebSocketStream<S>,
    outbox: &Outbox,
    metrics: &Metrics,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut frames, mut bytes) = (0u64, 0u64);
    for _ in 0..WRITE_BATCH {
        match outbox.pop() {
            Some(f) => {
                frames += 1;
                bytes += f.len() as u64;
                ws.feed(Message::Text(f)).await?;
            }
            None => break,
        }
    }
    metrics.messages_out.fetch_add(frames, Ordering::Relaxed);
    metrics.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    ws.flush().await
}

/// Sends `pusher:error` (with the code when it is a Pusher code), then a close frame with the
/// code, and waits (bounded) for the client's close reply.
pub async fn close<S>(ws: &mut WebSocketStream<S>, code: u16, message: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let closing = async {
        let _ = ws
            .send(Message::Text(
                outbound::error(pusher_error_code(code), message, None).into(),
            ))
            .await;
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: message.to_string().into(),
        };
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}
