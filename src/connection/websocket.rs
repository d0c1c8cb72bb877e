//! The WebSocket transport: tungstenite frames in and out, pings for liveness, the closing
//! handshake.

use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::ProtocolError as WsProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::transport::{Event, Transport, WriteResult};
use crate::metrics::Metrics;
use crate::outbox::{text_header, Direct, Outbox};
use crate::protocol::codes::{pusher_error_code, CloseReason};
use crate::protocol::outbound;

/// Frames written per flush when the outbox has a backlog.
const WRITE_BATCH: usize = 64;
/// How long a closing handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read per socket read. Clients send small frames (subscribe, pings, client events), and
/// the buffer is allocated up front for every connection, so it is kept small.
const READ_BUFFER: usize = 128;

/// WebSocket settings for small idle connections with bounded inbound messages.
pub fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// A WebSocket carrying one connection.
pub struct WebSocket<S> {
    ws: WebSocketStream<S>,
    /// tungstenite queued a control reply (pong, close) that needs a flush.
    flush: bool,
    /// The socket under `ws`, until handed to the outbox's direct path.
    socket: Option<Arc<TcpStream>>,
    /// The outbox whose direct path shares the socket: every write here is announced to it.
    shared: Option<Arc<Outbox>>,
}

impl<S> WebSocket<S> {
    /// Wraps an accepted WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> WebSocket<S> {
        WebSocket {
            ws,
            flush: false,
            socket: None,
            shared: None,
        }
    }

    /// Wraps an accepted WebSocket over `socket`, which the outbox may then write directly.
    pub fn with_direct(ws: WebSocketStream<S>, socket: Arc<TcpStream>) -> WebSocket<S> {
        WebSocket {
            socket: Some(socket),
            ..WebSocket::new(ws)
        }
    }

    /// The outbox's direct path may write again (after a completed, flushed write).
    fn release(&self) {
        if let Some(o) = &self.shared {
            o.end_write();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Takes the socket from the outbox's direct path for a write, first finishing a frame it
    /// wrote in part. Progress is recorded after every write, so being cancelled (eviction,
    /// stall) never loses or repeats a byte of that frame.
    async fn own(&mut self) -> WriteResult {
        let Some(outbox) = self.shared.clone() else {
            return Ok(());
        };
        while let Some(rest) = outbox.begin_write() {
            match self.ws.get_mut().write(&rest).await {
                Ok(n) if n > 0 => outbox.wrote_partial(n),
                _ => return Err(Some(CloseReason::Abnormal)),
            }
        }
        Ok(())
    }
}

/// Writes `frames` as WebSocket text frames with one vectored write (each frame's header and
/// its text, no copy). Bytes the socket does not take are left to the outbox as the rest of a
/// partial write, for [`WebSocket::own`] to finish before anything else.
async fn write_frames<W: AsyncWrite + Unpin>(
    socket: &mut W,
    outbox: &Outbox,
    frames: &[Utf8Bytes],
) -> WriteResult {
    if frames.is_empty() {
        return Ok(());
    }
    let mut headers = Vec::with_capacity(frames.len() * 4);
    let mut ends = Vec::with_capacity(frames.len());
    for f in frames {
        text_header(f.len(), &mut headers);
        ends.push(headers.len());
    }
    let mut start = 0;
    let mut slices = Vec::with_capacity(frames.len() * 2);
    for (f, &end) in frames.iter().zip(&ends) {
        slices.push(IoSlice::new(&headers[start..end]));
        slices.push(IoSlice::new(f.as_bytes()));
        start = end;
    }
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let written = match socket.write_vectored(&slices).await {
        Ok(n) if n > 0 => n,
        _ => return Err(Some(CloseReason::Abnormal)),
    };
    if written < total {
        let mut rest = Vec::with_capacity(total - written);
        let mut skip = written;
        for s in &slices {
            if skip >= s.len() {
                skip -= s.len();
            } else {
                rest.extend_from_slice(&s[skip..]);
                skip = 0;
            }
        }
        outbox.left_partial(Bytes::from(rest));
    }
    Ok(())
}

/// A write error as the connection loop sees it.
fn write_error(e: WsError) -> Option<CloseReason> {
    match e {
        // The peer vanished under a write (reset, broken pipe).
        WsError::Io(_) => Some(CloseReason::Abnormal),
        _ => None,
    }
}

impl<S> Transport for WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn recv(&mut self) -> Event {
        let msg = match self.ws.next().await {
            None => return Event::End(None),
            Some(Ok(m)) => m,
            Some(Err(WsError::Capacity(e))) => {
                tracing::debug!(error = %e, "inbound message too big");
                return Event::End(Some(CloseReason::MessageTooBig));
            }
            Some(Err(WsError::Utf8(e))) => {
                tracing::debug!(error = %e, "text frame is not UTF-8");
                return Event::End(Some(CloseReason::InvalidUtf8));
            }
            Some(Err(
                e @ (WsError::Io(_)
                | WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake)),
            )) => {
                tracing::debug!(error = %e, "client vanished");
                return Event::End(Some(CloseReason::Abnormal));
            }
            Some(Err(WsError::Protocol(e))) => {
                tracing::debug!(error = %e, "WebSocket protocol error");
                return Event::End(Some(CloseReason::ProtocolViolation));
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "socket error");
                return Event::End(None);
            }
        };
        match msg {
            Message::Text(t) => Event::Text(t),
            Message::Binary(_) => {
                tracing::debug!("binary frame ignored");
                Event::Activity
            }
            // tungstenite queued the Pong reply; it is sent with the next flush.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                self.flush = true;
                Event::Activity
            }
            Message::Close(_) => {
                self.flush = true;
                Event::End(None)
            }
        }
    }

    fn writable(&self) -> bool {
        true
    }

    fn wants_write(&self) -> bool {
        self.flush
    }

    fn attach(&mut self, outbox: &Arc<Outbox>, metrics: &Arc<Metrics>) -> bool {
        let Some(socket) = self.socket.take() else {
            return false;
        };
        outbox.attach(Direct {
            socket,
            metrics: metrics.clone(),
        });
        self.shared = Some(outbox.clone());
        true
    }

    /// Writes what is queued (up to [`WRITE_BATCH`] frames), then flushes once.
    async fn write(&mut self, outbox: &Outbox, metrics: &Metrics) -> WriteResult {
        self.own().await?;
        if self.shared.is_some() {
            // A control reply tungstenite holds (a pong) goes first.
            if std::mem::take(&mut self.flush) {
                self.ws.flush().await.map_err(write_error)?;
            }
            let mut frames = Vec::new();
            outbox.take(WRITE_BATCH, &mut frames);
            let bytes = frames.iter().map(|f| f.len() as u64).sum::<u64>();
            write_frames(self.ws.get_mut(), outbox, &frames).await?;
            // What the socket did not take is finished before the direct path may write.
            self.own().await?;
            metrics
                .messages_out
                .fetch_add(frames.len() as u64, Ordering::Relaxed);
            metrics.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            self.release();
            return Ok(());
        }
        self.flush = false;
        let (mut frames, mut bytes) = (0u64, 0u64);
        for _ in 0..WRITE_BATCH {
            match outbox.pop() {
                Some(f) => {
                    frames += 1;
                    bytes += f.len() as u64;
                    self.ws.feed(Message::Text(f)).await.map_err(write_error)?;
                }
                None => break,
            }
        }
        metrics.messages_out.fetch_add(frames, Ordering::Relaxed);
        metrics.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.ws.flush().await.map_err(write_error)?;
        self.release();
        Ok(())
    }

    async fn send_text(&mut self, text: Utf8Bytes) -> WriteResult {
        self.own().await?;
        self.ws
            .send(Message::Text(text))
            .await
            .map_err(write_error)?;
        self.release();
        Ok(())
    }

    async fn ping(&mut self) -> WriteResult {
        self.own().await?;
        self.ws
            .send(Message::Ping(Default::default()))
            .await
            .map_err(write_error)?;
        self.release();
        Ok(())
    }

    /// Sends `pusher:error` (with the code when it is a Pusher code), then a close frame with
    /// the code, and waits (bounded) for the client's close reply.
    async fn close(&mut self, code: u16, message: &str) {
        let closing = async {
            // The socket stays the task's: nothing may follow the close frame.
            if self.own().await.is_err() {
                return;
            }
            let ws = &mut self.ws;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::text_frame;
    use crate::protocol::SocketId;
    use tokio::io::AsyncReadExt;

    /// The frames' bytes as one WebSocket stream.
    fn wire(frames: &[Utf8Bytes]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| text_frame(f.as_bytes()))
            .collect()
    }

    #[tokio::test]
    async fn a_batch_goes_out_as_consecutive_frames() {
        let outbox = Outbox::new(SocketId { node: 1, seq: 1 }, 8);
        let frames: Vec<Utf8Bytes> = vec!["a".into(), "x".repeat(300).into(), "".into()];
        let (mut w, mut r) = tokio::io::duplex(4096);
        outbox.begin_write();
        write_frames(&mut w, &outbox, &frames).await.unwrap();
        assert_eq!(outbox.begin_write(), None);
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, wire(&frames));
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_is_left_to_finish() {
        let outbox = Outbox::new(SocketId { node: 1, seq: 1 }, 8);
        let frames: Vec<Utf8Bytes> = vec!["first".into(), "second".into(), "third".into()];
        // The pipe takes 4 bytes: part of the first frame's header and text.
        let (mut w, mut r) = tokio::io::duplex(4);
        outbox.begin_write();
        write_frames(&mut w, &outbox, &frames).await.unwrap();
        let mut taken = [0u8; 4];
        let n = r.read(&mut taken).await.unwrap();
        let rest = outbox.begin_write().unwrap();
        let mut all = taken[..n].to_vec();
        all.extend_from_slice(&rest);
        assert_eq!(all, wire(&frames));
        // Recorded progress shortens the rest; nothing else is queued meanwhile.
        outbox.wrote_partial(rest.len() - 1);
        assert_eq!(outbox.begin_write().map(|b| b.len()), Some(1));
    }

    #[tokio::test]
    async fn a_closed_socket_ends_the_connection() {
        let outbox = Outbox::new(SocketId { node: 1, seq: 1 }, 8);
        let (mut w, r) = tokio::io::duplex(64);
        drop(r);
        outbox.begin_write();
        let frames: Vec<Utf8Bytes> = vec!["a".into()];
        assert_eq!(
            write_frames(&mut w, &outbox, &frames).await,
            Err(Some(CloseReason::Abnormal))
        );
    }
}
