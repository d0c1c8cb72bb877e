//! One client connection, whatever carries it: handshake checks, the loop over transport,
//! outbox and liveness timer, and closing with a Pusher code. The WebSocket and the HTTP
//! session ([`crate::fallback`]) are two [`Transport`]s driving this same loop.

pub mod harness;
mod session;
mod shared_tcp;
mod subscriptions;
pub mod transport;
mod websocket;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::app::{App, Lookup};
use crate::http::DrainGuard;
use crate::hub::{AppSignal, Phase};
use crate::outbox::Outbox;
use crate::protocol::codes::{check_protocol, CloseReason};
use crate::protocol::outbound;
use crate::state::State;
use session::Session;
pub use shared_tcp::SharedTcp;
pub use transport::{Event, Transport, WriteResult};
pub use websocket::{ws_config, WebSocket};

/// What the HTTP layer learned from the upgrade request (or from an HTTP session's first
/// receive request).
#[derive(Debug, Clone, Default)]
pub struct Upgrade {
    /// The app key from `/app/{key}`; `None` if the path did not match.
    pub key: Option<String>,
    /// The `protocol` query value.
    pub protocol: Option<String>,
}

/// Runs a connection from its first request to close; `guard` is held until then. Spawn the
/// returned future itself as the connection's task: it is the largest thing an idle connection
/// holds, and a wrapper moving these arguments into it would keep a second copy of them.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
pub fn serve<T: Transport + Send + 'static>(
    mut transport: T,
    mut up: Upgrade,
    state: Arc<State>,
    guard: DrainGuard,
) -> impl std::future::Future<Output = ()> + Send {
    // Not an `async fn`: its arguments would be copied into the body's own locals, and the
    // coroutine keeps both copies for its whole life.
    async move {
        serve_inner(&mut transport, &mut up, &state).await;
        drop(guard);
    }
}

async fn serve_inner<T: Transport>(transport: &mut T, up: &mut Upgrade, state: &Arc<State>) {
    let app = match admit(state, up).await {
        Ok(app) => app,
        Err(reason) => {
            tracing::debug!(code = reason.code(), key = ?up.key, "connection refused");
            Box::pin(transport.close(reason.code(), reason.message())).await;
            return;
        }
    };
    // The upgrade's strings are not needed any more; free them for the connection's lifetime.
    *up = Upgrade::default();
    let app_hub = state.hub.app(&app.id);
    if !app_hub.add_connection(app.max_connections) {
        state.remove_connection();
        let r = CloseReason::OverQuota;
        tracing::warn!(app = %app.id, "app over connection quota");
        Box::pin(transport.close(r.code(), r.message())).await;
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
    let reason = run(transport, state, &mut session, &outbox, app_hub.signal()).await;
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
            Box::pin(transport.close(r.code(), r.message())).await;
        }
        Some(_) => tracing::debug!(app = %app.id, socket_id = %id, "connection lost"),
        None => tracing::debug!(app = %app.id, socket_id = %id, "connection closed by client"),
    }
    app_hub.remove_connection();
    state.remove_connection();
}

/// The handshake checks, in PROTOCOL.md §1.2 order. On success the node count includes this one.
async fn admit(state: &State, up: &Upgrade) -> Result<Arc<App>, CloseReason> {
    let key = up.key.as_deref().ok_or(CloseReason::PathNotFound)?;
    let app = match state.apps.find_by_key(key).await {
        Lookup::Found(app) => app,
        Lookup::Unknown => return Err(CloseReason::AppNotFound),
        Lookup::Unavailable | Lookup::Busy => return Err(CloseReason::StoreUnavailable),
    };
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

/// The connection loop; returns why it ended, or `None` if the client closed it. Not an
/// `async fn`, whose arguments the coroutine would keep twice.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
fn run<'a, T: Transport>(
    transport: &'a mut T,
    state: &'a State,
    session: &'a mut Session,
    outbox: &'a Arc<Outbox>,
    mut signal: tokio::sync::watch::Receiver<AppSignal>,
) -> impl std::future::Future<Output = Option<CloseReason>> + 'a {
    async move {
        let server = &state.config.server;
        let activity = Duration::from_secs(server.activity_timeout);
        // Also the stall limit: no single write may take longer than a ping may go unanswered.
        let pong_wait = Duration::from_secs(server.pong_timeout);
        let drain_window = Duration::from_secs(server.drain_seconds);
        // Created once: re-creating it on every wake-up registered and dropped two waiters per
        // delivered frame (visible in perf as Notify bookkeeping).
        let closing = must_close(outbox, &mut signal, drain_window);
        tokio::pin!(closing);
        // Every write below races the close signal and the stall limit: a client that stops
        // reading can block a write, and eviction, shutdown and the pong timeout must still end it.
        // Boxed: a write future (with its stall timer) only exists while writing, so an idle
        // connection's task does not carry its space.
        macro_rules! bounded {
            ($write:expr) => {
                match Box::pin(guarded($write, closing.as_mut(), pong_wait, outbox)).await {
                    Ok(()) => {}
                    Err(reason) => return reason,
                }
            };
        }
        // From now on frames may be written straight to the socket (plain TCP WebSockets),
        // starting with the greeting: the WebSocket's own write buffer is then never allocated.
        // The outbox counts what it writes; the greeting sent here is counted here. (A block:
        // the greeting's slot is not kept for the connection's life.)
        {
            let hello = outbound::connection_established(outbox.id, server.activity_timeout);
            if transport.attach(outbox, &state.metrics) {
                outbox.push(hello.into());
            } else {
                state.metrics.messages_out.fetch_add(1, Ordering::Relaxed);
                state
                    .metrics
                    .bytes_out
                    .fetch_add(hello.len() as u64, Ordering::Relaxed);
                bounded!(transport.send_text(hello.into()));
            }
        }
        let mut last_seen = Instant::now();
        let mut pinged = false;
        let timer = tokio::time::sleep_until(last_seen + activity);
        tokio::pin!(timer);
        // Authorized connections: sign in (or subscribe privately) before this deadline.
        // Boxed, and only for apps that require signing in: most connections never need it.
        let mut signin_timer = session
            .signin_timeout()
            .map(|d| Box::pin(tokio::time::sleep_until(last_seen + d)));
        loop {
            tokio::select! {
                biased;
                r = &mut closing => return r,
                () = async {
                    match signin_timer.as_mut() {
                        Some(t) => t.await,
                        None => std::future::pending().await,
                    }
                }, if signin_timer.is_some() && !session.is_authorized() => {
                    return Some(CloseReason::NotAuthorizedInTime);
                }
                event = transport.recv() => {
                    let text = match event {
                        Event::End(reason) => {
                            if transport.wants_write() {
                                bounded!(transport.write(outbox, &state.metrics));
                            }
                            return reason;
                        }
                        Event::Idle => None,
                        Event::Activity => {
                            last_seen = Instant::now();
                            pinged = false;
                            None
                        }
                        Event::Text(t) => {
                            last_seen = Instant::now();
                            pinged = false;
                            Some(t)
                        }
                    };
                    if let Some(t) = text {
                        state.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
                        state.metrics.bytes_in.fetch_add(t.len() as u64, Ordering::Relaxed);
                        // Boxed: a rare, large state machine that would otherwise sit in every idle task.
                        Box::pin(session.handle_text(t.as_str())).await;
                    }
                    if transport.wants_write() {
                        bounded!(transport.write(outbox, &state.metrics));
                    }
                }
                _ = outbox.readable(), if transport.writable() => bounded!(transport.write(outbox, &state.metrics)),
                () = &mut timer => {
                    let idle = last_seen.elapsed();
                    if idle < activity {
                        timer.as_mut().reset(last_seen + activity);
                    } else if !pinged {
                        pinged = true;
                        bounded!(transport.ping());
                        timer.as_mut().reset(Instant::now() + pong_wait);
                    } else {
                        return Some(CloseReason::PongTimeout);
                    }
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
    W: std::future::Future<Output = WriteResult>,
    C: std::future::Future<Output = Option<CloseReason>>,
{
    // The write is polled before the stall timer: a write that completes at once (the usual
    // case) never registers the timer.
    tokio::select! {
        biased;
        r = closing => Err(r),
        r = write => r,
        _ = tokio::time::sleep(stall) => {
            tracing::warn!(socket_id = %outbox.id, "write stalled; evicting");
            Err(Some(CloseReason::SlowConsumer))
        }
    }
}

/// Resolves when the connection must close for a reason outside it: eviction, termination,
/// shutdown, removal or disabling of its app (reload, app store), or draining (after a random
/// delay within the drain window, so a node's sockets reconnect elsewhere gradually instead of
/// all at once). One `select!` over two waiters (the outbox's and the app signal's), since
/// every idle connection carries this future (not an `async fn`, which would keep its arguments
/// twice).
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
fn must_close<'a>(
    outbox: &'a Outbox,
    signal: &'a mut tokio::sync::watch::Receiver<AppSignal>,
    drain_window: Duration,
) -> impl std::future::Future<Output = Option<CloseReason>> + Send + 'a {
    async move {
        let outside = |s: &AppSignal| match (s.phase, s.closing) {
            (Phase::ShuttingDown, _) => Some(CloseReason::ShuttingDown),
            (_, Some(reason)) => Some(reason),
            _ => None,
        };
        // Draining: the moment to leave. Boxed: only draining connections need the timer.
        let mut drain: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        // The hub outlives its connections; without it there is nothing more to watch.
        let mut watching = true;
        let r = loop {
            if let Some(r) = outbox.closing() {
                break r;
            }
            if watching {
                // Copied out at once: the guard `borrow_and_update` returns is not `Send`.
                let now = *signal.borrow_and_update();
                if let Some(r) = outside(&now) {
                    break r;
                }
                if now.phase == Phase::Draining && drain.is_none() {
                    let delay = drain_window.mul_f64(rand::random::<f64>());
                    drain = Some(Box::pin(tokio::time::sleep(delay)));
                }
            }
            tokio::select! {
                biased;
                () = outbox.wake() => {}
                changed = signal.changed(), if watching => watching = changed.is_ok(),
                () = async {
                    match drain.as_mut() {
                        Some(d) => d.await,
                        None => std::future::pending().await,
                    }
                }, if drain.is_some() => break CloseReason::Draining,
            }
        };
        if r == CloseReason::SlowConsumer {
            tracing::warn!(socket_id = %outbox.id, "slow consumer evicted");
        }
        Some(r)
    }
}
