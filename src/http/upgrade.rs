//! The WebSocket upgrade: always completes the handshake (problems are reported with Pusher
//! close codes afterwards) and echoes an offered `pusher-channels-protocol-N` sub-protocol.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::DrainGuard;
use crate::api::json_response;
use crate::connection::{self, Upgrade};
use crate::state::State;

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// The first offered sub-protocol we speak, if any.
fn pusher_subprotocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| {
            p.strip_prefix("pusher-channels-protocol-")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| (4..=7).contains(&n))
        })
        .and_then(|p| HeaderValue::from_str(p).ok())
}

/// Sets up the WebSocket over an upgraded connection and spawns the connection's task.
async fn start(
    upgraded: hyper::upgrade::Upgraded,
    up: Upgrade,
    state: Arc<State>,
    guard: DrainGuard,
    max_message: usize,
) {
    let config = connection::ws_config(max_message);
    // Take the TCP stream back from hyper: this frees hyper's connection buffers (the bulk of
    // an idle connection's memory otherwise) and a layer of indirection.
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            // Shared with the outbox, whose direct path writes broadcasts to it.
            let socket = Arc::new(parts.io.into_inner());
            let stream = connection::SharedTcp(socket.clone());
            // `read_buf` shares hyper's 8 KiB read buffer: copy what the client already sent
            // and let the buffer go before the connection lives on.
            let early = (!parts.read_buf.is_empty()).then(|| parts.read_buf.to_vec());
            drop(parts.read_buf);
            let ws = match early {
                None => WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await,
                Some(early) => {
                    WebSocketStream::from_partially_read(stream, early, Role::Server, Some(config))
                        .await
                }
            };
            let ws = connection::WebSocket::with_direct(ws, socket);
            tokio::spawn(connection::serve(ws, up, state, guard));
        }
        Err(upgraded) => {
            let io = TokioIo::new(upgraded);
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            let ws = connection::WebSocket::new(ws);
            tokio::spawn(connection::serve(ws, up, state, guard));
        }
    }
}

/// Answers the upgrade with 101 and runs the connection on its own task.
pub fn upgrade(
    mut req: Request<Incoming>,
    path: &str,
    state: Arc<State>,
    guard: DrainGuard,
) -> Response<Full<Bytes>> {
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| version_ok)
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13"}),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let subprotocol = pusher_subprotocol(&req);
    let app_key = path
        .strip_prefix("/app/")
        .filter(|k| !k.is_empty() && !k.contains('/'))
        .map(|k| {
            percent_encoding::percent_decode_str(k)
                .decode_utf8_lossy()
                .into_owned()
        });
    let up = Upgrade {
        key: app_key,
        protocol: super::query_param(req.uri().query().unwrap_or(""), "protocol"),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let max_message = state.config.limits.max_message_bytes;
    // The upgrade's task ends once the WebSocket is set up: the connection then runs on a task
    // of its own whose future is `connection::serve`'s alone, nothing of the upgrade around it.
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => Box::pin(start(upgraded, up, state, guard, max_message)).await,
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = subprotocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    res
}
