//! The HTTP fallback of pusher-js (`xhr_streaming`, `xhr_polling`; PROTOCOL.md §6): requests under
//! `{httpPath}/app/{key}/{server}/{session}/…` find or start the session's connection, which
//! runs the same connection loop as a WebSocket with an [`HttpSession`] as its transport.

pub mod frames;
mod inbox;
mod session;
mod sink;
pub mod stream;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;

use crate::connection::{self, Upgrade};
use crate::http::DrainGuard;
use crate::state::State;
pub use session::{HttpSession, Request as SessionRequest, Sessions, Timing};
pub use sink::Sink;

/// pusher-js's default `httpPath`.
pub const HTTP_PATH: &str = "/pusher";

/// A response body of the fallback (a whole answer, or a receive request's stream).
pub type Body = BoxBody<Bytes, Infallible>;

/// Which request of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Streaming,
    Polling,
    Send,
}

/// A parsed fallback path.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    key: &'a str,
    /// `{key}/{server}/{session}`: the registry key.
    session: String,
    kind: Kind,
}

/// Parses `[/pusher]/app/{key}/{server 0-999}/{session}/{xhr_streaming|xhr|xhr_send}`.
fn target(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix(HTTP_PATH).unwrap_or(path);
    let mut parts = rest.strip_prefix("/app/")?.split('/');
    let (key, server, session, kind) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || key.is_empty() {
        return None;
    }
    let server_ok = (1..=3).contains(&server.len()) && server.bytes().all(|b| b.is_ascii_digit());
    let session_ok =
        (1..=32).contains(&session.len()) && session.bytes().all(|b| b.is_ascii_alphanumeric());
    if !server_ok || !session_ok {
        return None;
    }
    let kind = match kind {
        "xhr_streaming" => Kind::Streaming,
        "xhr" => Kind::Polling,
        "xhr_send" => Kind::Send,
        _ => return None,
    };
    Some(Target {
        key,
        session: format!("{key}/{server}/{session}"),
        kind,
    })
}

/// Whether a path belongs to the fallback.
pub fn is_fallback(path: &str) -> bool {
    target(path).is_some()
}

/// The CORS headers of every fallback response: the page calling is on the app's own origin.
fn cors(headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
    match origin {
        Some(o) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        None => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
}

fn answer(status: StatusCode, text: &'static str, origin: Option<&HeaderValue>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    cors(r.headers_mut(), origin);
    r
}

/// A receive request's body: the chunks its session writes, until the session lets go.
struct ChunkBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// Serves one fallback request; `None` if the path is not the fallback's.
pub async fn handle(
    req: Request<Incoming>,
    path: &str,
    state: Arc<State>,
    guard: DrainGuard,
) -> Option<Response<Body>> {
    let target = target(path)?;
    let origin = req.headers().get(header::ORIGIN).cloned();
    let origin = origin.as_ref();
    if req.method() == Method::OPTIONS {
        let mut r = answer(StatusCode::NO_CONTENT, "", origin);
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        let asked = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(HeaderValue::from_static("Content-Type"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return Some(r);
    }
    if req.method() != Method::POST {
        let mut r = answer(StatusCode::METHOD_NOT_ALLOWED, "Use POST\n", origin);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return Some(r);
    }
    let r = match target.kind {
        Kind::Send => send(req, &target, &state, origin).await,
        Kind::Streaming | Kind::Polling => receive(req, &target, state, guard, origin).await,
    };
    Some(r)
}

async fn send(
    req: Request<Incoming>,
    target: &Target<'_>,
    state: &State,
    origin: Option<&HeaderValue>,
) -> Response<Body> {
    let Some(tx) = state.sessions.get(&target.session) else {
        return answer(StatusCode::NOT_FOUND, "Unknown session\n", origin);
    };
    let max = state.config.limits.max_message_bytes;
    let request = match crate::api::read_body(req, frames::max_send_body(max)).await {
        Ok(body) => match frames::parse_send(&body, max) {
            Ok(messages) => SessionRequest::Send(messages),
            Err(frames::SendError::TooBig) => SessionRequest::TooBig,
            Err(frames::SendError::Malformed) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    "Body must be a JSON array of strings\n",
                    origin,
                )
            }
        },
        Err(crate::api::ApiError::TooLarge(_)) => SessionRequest::TooBig,
        Err(_) => return answer(StatusCode::BAD_REQUEST, "Unreadable body\n", origin),
    };
    let too_big = matches!(request, SessionRequest::TooBig);
    if tx.send(request).await.is_err() {
        return answer(StatusCode::NOT_FOUND, "Unknown session\n", origin);
    }
    if too_big {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "Message too big\n", origin);
    }
    answer(StatusCode::NO_CONTENT, "", origin)
}

async fn receive(
    req: Request<Incoming>,
    target: &Target<'_>,
    state: Arc<State>,
    guard: DrainGuard,
    origin: Option<&HeaderValue>,
) -> Response<Body> {
    let protocol = crate::http::query_param(req.uri().query().unwrap_or(""), "protocol");
    let streaming = target.kind == Kind::Streaming;
    let (tx, body) = mpsc::channel(1);
    match attach(target, protocol, Sink::Feed(tx), streaming, state, guard).await {
        Ok(()) => {
            let mut r = Response::new(ChunkBody(body).boxed());
            receive_headers(r.headers_mut(), origin);
            r
        }
        Err(_) => answer(StatusCode::NOT_FOUND, "Unknown session\n", origin),
    }
}

/// Finds the session (or starts it, with the same handshake checks as a WebSocket) and
/// attaches a receive request to it, whose response goes to `body`; gives `body` back when the
/// session ended meanwhile (always `Some`).
async fn attach(
    target: &Target<'_>,
    protocol: Option<String>,
    body: Sink,
    streaming: bool,
    state: Arc<State>,
    guard: DrainGuard,
) -> Result<(), Option<Sink>> {
    let tx = match state.sessions.get(&target.session) {
        Some(tx) => tx,
        None => {
            let key = percent_encoding::percent_decode_str(target.key)
                .decode_utf8_lossy()
                .into_owned();
            let up = Upgrade {
                key: Some(key),
                protocol,
            };
            let server = &state.config.server;
            let timing = Timing {
                expiry: std::time::Duration::from_secs(server.http_session_timeout),
                heartbeat: std::time::Duration::from_secs(server.http_heartbeat),
            };
            let (transport, tx) = state.sessions.open(target.session.clone(), timing);
            let state = state.clone();
            tokio::spawn(connection::serve(transport, up, state, guard));
            tx
        }
    };
    let attach = SessionRequest::Receive { body, streaming };
    tx.send(attach).await.map_err(SessionRequest::into_body)
}

/// The headers of a receive response.
fn receive_headers(h: &mut HeaderMap, origin: Option<&HeaderValue>) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=UTF-8"),
    );
    // Tell nginx not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    cors(h, origin);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = target("/pusher/app/key/123/abcd1234/xhr_streaming");
        assert_eq!(
            t,
            Some(Target {
                key: "key",
                session: "key/123/abcd1234".into(),
                kind: Kind::Streaming
            })
        );
        assert_eq!(
            target("/app/k/0/s/xhr_send").map(|t| t.kind),
            Some(Kind::Send)
        );
        assert_eq!(
            target("/pusher/app/k/0/s/xhr").map(|t| t.kind),
            Some(Kind::Polling)
        );
        for bad in [
            "/pusher/app/k",
            "/app/k",
            "/pusher/app/k/1000/s/xhr",
            "/pusher/app/k/1/s/xhr/x",
            "/pusher/app/k/1/s-t/xhr",
            "/pusher/app//1/s/xhr",
            "/pusher/app/k/1/s/eventsource",
            "/pusher/app/k/x/s/xhr",
        ] {
            assert_eq!(target(bad), None, "{bad}");
        }
    }
}
