//! `xhr_streaming` receive requests served straight on the socket: the request head is parsed
//! here with httparse, then the socket goes to the session, whose task writes the chunked
//! response ([`super::sink`]); an idle streaming session holds no HTTP/1.1 connection state
//! (hyper keeps two 8 KiB buffers per connection for its whole life) and no task of its own.
//! Plain-TCP connections whose first request is such a POST come here; every other connection,
//! and every TLS one, is served by hyper ([`super::handle`]) with the same answers.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{target, Kind, Sink};
use crate::http::DrainGuard;
use crate::state::State;

/// Largest request head accepted here (431 above).
const MAX_HEAD: usize = 16 * 1024;
/// Largest body of a streaming request (pusher-js sends none; 413 above).
const MAX_BODY: usize = 4 * 1024;
/// Bytes looked at, without consuming them, to recognise a streaming request.
const PEEK: usize = 512;

/// Whether the request line in `head` (possibly cut short) is `POST …/xhr_streaming`.
fn streaming_request_line(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"POST ") else {
        return false;
    };
    let Some(end) = rest.iter().position(|&c| c == b' ') else {
        return false;
    };
    let target = &rest[..end];
    let path = target
        .iter()
        .position(|&c| c == b'?')
        .map_or(target, |q| &target[..q]);
    path.ends_with(b"/xhr_streaming")
}

/// Waits for the connection's first bytes and tells whether they start an `xhr_streaming`
/// request; `None` when nothing arrived within the handshake timeout (or the peer left).
pub async fn first_request_is_streaming(stream: &TcpStream, within: Duration) -> Option<bool> {
    let mut buf = [0u8; PEEK];
    match tokio::time::timeout(within, stream.peek(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(streaming_request_line(&buf[..n])),
        _ => None,
    }
}

/// What the request head says.
struct Head {
    path: String,
    query: String,
    origin: Option<HeaderValue>,
    content_length: usize,
    chunked: bool,
    /// Body bytes read along with the head.
    extra: usize,
}

enum HeadError {
    TooLarge,
    Malformed,
    Gone,
}

async fn read_head(stream: &mut TcpStream) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let find = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| h.value)
                };
                let content_length = match find("content-length") {
                    None => 0,
                    Some(v) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or(HeadError::Malformed)?,
                };
                return Ok(Head {
                    path: path.to_string(),
                    query: query.to_string(),
                    origin: find("origin").and_then(|v| HeaderValue::from_bytes(v).ok()),
                    content_length,
                    chunked: find("transfer-encoding").is_some(),
                    extra: buf.len() - n,
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(HeadError::Malformed),
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(HeadError::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads and drops the rest of a small body.
async fn skip_body(stream: &mut TcpStream, mut left: usize) -> std::io::Result<()> {
    let mut chunk = [0u8; 1024];
    while left > 0 {
        let n = stream.read(&mut chunk[..left.min(1024)]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(())
}

/// The bytes of a response head.
fn head_bytes(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// A whole short answer, as the hyper path gives it, then the connection closes.
async fn answer(
    stream: &mut TcpStream,
    status: StatusCode,
    text: &str,
    origin: Option<&HeaderValue>,
) {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    super::cors(&mut headers, origin);
    let mut out = head_bytes(status, &headers);
    out.extend_from_slice(text.as_bytes());
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// Serves the `xhr_streaming` request this connection starts with, then closes it.
pub async fn serve(mut stream: TcpStream, state: Arc<State>, guard: DrainGuard) {
    let within = Duration::from_secs(state.config.server.handshake_timeout);
    let head = match tokio::time::timeout(within, Box::pin(read_head(&mut stream))).await {
        Ok(Ok(head)) => head,
        Ok(Err(HeadError::TooLarge)) => {
            tracing::debug!("xhr_streaming request head too large");
            let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return answer(&mut stream, status, "Request head too large\n", None).await;
        }
        Ok(Err(HeadError::Malformed)) => {
            tracing::debug!("malformed xhr_streaming request head");
            return answer(&mut stream, StatusCode::BAD_REQUEST, "Bad request\n", None).await;
        }
        Ok(Err(HeadError::Gone)) | Err(_) => return,
    };
    let origin = head.origin.as_ref();
    if head.chunked {
        let text = "Chunked request bodies are not accepted here\n";
        return answer(&mut stream, StatusCode::BAD_REQUEST, text, origin).await;
    }
    if head.content_length > MAX_BODY {
        return answer(
            &mut stream,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Body too large\n",
            origin,
        )
        .await;
    }
    let rest = head.content_length.saturating_sub(head.extra);
    if Box::pin(skip_body(&mut stream, rest)).await.is_err() {
        return;
    }
    let prefix = state.config.server.path_prefix.as_str();
    let path = match head.path.strip_prefix(prefix) {
        Some(p) if !prefix.is_empty() && p.starts_with('/') => p,
        _ => head.path.as_str(),
    };
    let Some(target) = target(path).filter(|t| t.kind == Kind::Streaming) else {
        return answer(
            &mut stream,
            StatusCode::NOT_FOUND,
            "{\"error\":\"Not found\"}",
            origin,
        )
        .await;
    };
    let protocol = crate::http::query_param(&head.query, "protocol");
    let mut headers = HeaderMap::new();
    super::receive_headers(&mut headers, origin);
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    // From here on the session's own task writes the response on this socket, head first: no
    // task, buffer or channel stays behind for the stream.
    let sink = Sink::socket(stream, head_bytes(StatusCode::OK, &headers));
    drop(headers);
    let attached = Box::pin(super::attach(&target, protocol, sink, true, state, guard)).await;
    if let Err(Some(sink)) = attached {
        if let Some(mut stream) = sink.into_unused_socket() {
            let text = "Unknown session\n";
            answer(&mut stream, StatusCode::NOT_FOUND, text, origin).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_streaming_request_lines() {
        assert!(streaming_request_line(
            b"POST /pusher/app/key/123/abcd/xhr_streaming?protocol=7&t=1 HTTP/1.1\r\n"
        ));
        assert!(streaming_request_line(
            b"POST /app/k/1/s/xhr_streaming HTTP/1.1"
        ));
        for other in [
            &b"GET /pusher/app/key/123/abcd/xhr_streaming HTTP/1.1\r\n"[..],
            b"POST /pusher/app/key/123/abcd/xhr HTTP/1.1\r\n",
            b"POST /pusher/app/key/123/abcd/xhr_send HTTP/1.1\r\n",
            b"POST /pusher/app/key/123/abcd/xhr_streaming",
            b"POST /x?y=/xhr_streaming HTTP/1.1",
            b"POS",
        ] {
            assert!(!streaming_request_line(other), "{other:?}");
        }
    }

    #[test]
    fn heads() {
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        assert_eq!(
            head_bytes(StatusCode::OK, &h),
            b"HTTP/1.1 200 OK\r\nvary: Origin\r\nconnection: close\r\n\r\n"
        );
    }
}
