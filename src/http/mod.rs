//! The HTTP front door: accepting TCP connections, keep-alive HTTP/1.1, and routing each request
//! to the WebSocket upgrade (`/app/{key}`), the HTTP fallback (`/pusher/app/{key}/…`), the REST API (`/apps/{id}/…`) or health checks.

mod upgrade;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::api::{self, json_response};
use crate::state::State;

/// A query parameter's decoded value.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    crate::auth::rest::parse_query(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Held by every connection task; shutdown waits until all of them are dropped.
#[derive(Debug, Clone)]
pub struct DrainGuard(#[allow(dead_code)] mpsc::Sender<()>);

impl DrainGuard {
    /// A guard and the receiver that completes when every clone is gone.
    pub fn new() -> (DrainGuard, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel(1);
        (DrainGuard(tx), rx)
    }
}

/// TCP keepalive on an accepted socket, so a peer that vanished without a FIN (a dropped Wi-Fi,
/// a dead NAT entry) is found by the kernel even while herald has nothing to send; and, on
/// Linux, a user timeout, so data the peer never acknowledges does not keep the socket open.
fn keepalive(stream: &tokio::net::TcpStream, server: &crate::config::ServerConfig) {
    let idle = Duration::from_secs(server.activity_timeout.max(1));
    let probe = Duration::from_secs(server.pong_timeout.max(1));
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(probe)
        .with_retries(3);
    let sock = socket2::SockRef::from(stream);
    if let Err(e) = sock.set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "TCP keepalive not set");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = sock.set_tcp_user_timeout(Some(idle + probe * 3)) {
        tracing::debug!(error = %e, "TCP user timeout not set");
    }
}

/// Accepts connections until shutdown, serving each on its own task (TLS first when an
/// acceptor is given).
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    guard: DrainGuard,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = crate::state::shutdown_started(&mut shutdown) => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        keepalive(&stream, &state.config.server);
        let state = state.clone();
        let guard = guard.clone();
        let shutdown = shutdown.clone();
        match tls.clone() {
            None => {
                tokio::spawn(async move {
                    // A connection that starts with an xhr_streaming request is served outside
                    // hyper, so an idle streaming session holds no HTTP connection buffers.
                    // Each step is boxed: a task's future keeps the size of its largest state
                    // for its whole life, and a streaming session's task lives long.
                    let within = Duration::from_secs(state.config.server.handshake_timeout);
                    let peeked = Box::pin(crate::fallback::stream::first_request_is_streaming(
                        &stream, within,
                    ))
                    .await;
                    match peeked {
                        Some(true) => {
                            Box::pin(crate::fallback::stream::serve(stream, state, guard)).await
                        }
                        Some(false) => {
                            let io = TokioIo::new(stream);
                            Box::pin(serve_http(io, peer, state, guard, shutdown)).await
                        }
                        None => tracing::debug!(%peer, "connection sent nothing"),
                    }
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let limit = Duration::from_secs(state.config.server.handshake_timeout);
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            serve_http(TokioIo::new(tls), peer, state, guard, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Serves one HTTP/1.1 connection (keep-alive, upgrades) until it ends or shutdown.
async fn serve_http<I>(
    io: I,
    peer: std::net::SocketAddr,
    state: Arc<State>,
    guard: DrainGuard,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc_guard = guard.clone();
    let svc_state = state.clone();
    let svc = service_fn(move |req| {
        let state = svc_state.clone();
        let guard = svc_guard.clone();
        async move { Ok::<_, Infallible>(dispatch(req, state, guard).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(state.config.server.handshake_timeout))
        .keep_alive(true)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = crate::state::shutdown_started(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
    drop(guard);
}

async fn dispatch(
    req: Request<Incoming>,
    state: Arc<State>,
    guard: DrainGuard,
) -> Response<crate::fallback::Body> {
    let prefix = state.config.server.path_prefix.as_str();
    let full = req.uri().path().to_string();
    let path = match full.strip_prefix(prefix) {
        Some(p) if !prefix.is_empty() && p.starts_with('/') => p.to_string(),
        _ => full,
    };
    if upgrade::is_websocket(&req) {
        return upgrade::upgrade(req, &path, state, guard).map(BodyExt::boxed);
    }
    if crate::fallback::is_fallback(&path) {
        if let Some(r) = crate::fallback::handle(req, &path, state, guard).await {
            return r;
        }
        return json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "Not found"}),
        )
        .map(BodyExt::boxed);
    }
    let r = match (req.method(), path.as_str()) {
        (&Method::GET, "/" | "/health") => {
            json_response(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
        (&Method::GET, "/ready") => {
            let body = serde_json::json!({
                "ready": state.ready(),
                "draining": state.draining(),
                "adapter": if state.adapter.healthy() { "ok" } else { "unreachable" },
                "app_store": match state.store_up() {
                    None => "none",
                    Some(true) => "ok",
                    Some(false) => "unreachable",
                },
            });
            let status = if state.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, &body)
        }
        (_, p) if p.starts_with("/apps/") || p.starts_with("/users/") => {
            api::handle(req, &path, state).await
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "Not found"}),
        ),
    };
    r.map(BodyExt::boxed)
}

/// Serves `GET /metrics` (Prometheus text format) on its own listener until shutdown.
pub async fn metrics_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = crate::state::shutdown_started(&mut shutdown) => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move {
                    let res = if req.uri().path() == "/metrics" {
                        let mut r =
                            Response::new(Full::new(Bytes::from(state.metrics.render(&state))));
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        r
                    } else {
                        json_response(
                            StatusCode::NOT_FOUND,
                            &serde_json::json!({"error": "Not found"}),
                        )
                    };
                    Ok::<_, Infallible>(res)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
