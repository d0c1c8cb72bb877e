//! Where a receive request's chunks go: hyper's response body (polls, TLS, anything hyper
//! serves) or, for an `xhr_streaming` request served on its own socket ([`super::stream`]), the
//! socket itself, written by the session's task as a chunked HTTP/1.1 response. The socket
//! sink needs no task, channel or buffer of its own while the stream idles.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The last chunk of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A receive request's way out.
#[derive(Debug)]
pub enum Sink {
    /// The body of a response hyper writes.
    Feed(mpsc::Sender<Bytes>),
    /// The request's own socket (boxed: requests are queued as small values).
    Socket(Box<Socket>),
}

/// A socket answering one `xhr_streaming` request (`connection: close`).
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    /// The response head, until it goes out in front of the first chunk.
    head: Option<Vec<u8>>,
    /// Nothing more may be written: a write was abandoned halfway (the connection was
    /// closing), which broke the chunked framing, or the response was finished.
    torn: bool,
}

/// `data` as one chunk of a chunked body (nothing for no data: an empty chunk ends the body).
pub fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

impl Sink {
    /// The sink of a streaming request answered on `stream`, whose response starts with `head`.
    pub fn socket(stream: TcpStream, head: Vec<u8>) -> Sink {
        Sink::Socket(Box::new(Socket {
            stream,
            head: Some(head),
            torn: false,
        }))
    }

    /// The socket back, if the sink is one and nothing was written to it yet (its request
    /// found no session and is answered otherwise).
    pub fn into_unused_socket(self) -> Option<TcpStream> {
        match self {
            Sink::Socket(s) if s.head.is_some() => Some(s.stream),
            _ => None,
        }
    }

    /// Ends the response: on a socket, the last chunk (after the head, if it never went out),
    /// written without waiting: a client that stopped reading loses only the end marker, and
    /// the socket closes when the sink is dropped either way. A feed ends when dropped.
    pub fn finish(&mut self) {
        if let Sink::Socket(s) = self {
            if !s.torn {
                s.torn = true;
                let mut end = s.head.take().unwrap_or_default();
                end.extend_from_slice(LAST_CHUNK);
                let _ = s.stream.try_write(&end);
            }
        }
    }

    /// Whether the sink holds something of its own to write (the response head).
    pub fn wants_write(&self) -> bool {
        matches!(self, Sink::Socket(s) if s.head.is_some())
    }

    /// Sends one chunk (empty: only what the sink holds). `Err` gives the chunk back when the
    /// request ended before it went out.
    pub async fn send(&mut self, data: Bytes) -> Result<(), Bytes> {
        match self {
            Sink::Feed(tx) => {
                if data.is_empty() {
                    return Ok(());
                }
                tx.send(data).await.map_err(|mpsc::error::SendError(d)| d)
            }
            Sink::Socket(s) => {
                if s.torn {
                    return Err(data);
                }
                let mut out = s.head.take().unwrap_or_default();
                chunk(&mut out, &data);
                if out.is_empty() {
                    return Ok(());
                }
                // Set until the write completes: a write cancelled halfway leaves it set.
                s.torn = true;
                s.stream.write_all(&out).await.map_err(|_| data)?;
                s.torn = false;
                Ok(())
            }
        }
    }

    /// Resolves once the request has ended on the client's side (it aborted the request or
    /// left). Cancel-safe.
    pub async fn ended(&self) {
        match self {
            Sink::Feed(tx) => tx.closed().await,
            Sink::Socket(s) => {
                let mut probe = [0u8; 64];
                loop {
                    if s.stream.readable().await.is_err() {
                        return;
                    }
                    match s.stream.try_read(&mut probe) {
                        // More bytes after the request: ignored (the response closes the
                        // connection).
                        Ok(n) if n > 0 => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        _ => return,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        chunk(&mut out, b"o\n");
        chunk(&mut out, b"");
        chunk(&mut out, &[b'h'; 26]);
        let mut want = b"2\r\no\n\r\n1a\r\n".to_vec();
        want.extend_from_slice(&[b'h'; 26]);
        want.extend_from_slice(b"\r\n");
        assert_eq!(out, want);
    }
}
