//! A raw WebSocket client that never answers anything: the upgrade by hand, frames read and
//! written as bytes (any opcode, masked or not), for tests of what the server does with peers
//! that misbehave or stop reading.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::WAIT;

/// Completes an upgrade by hand and returns the socket; nothing is ever answered automatically.
pub async fn raw_connect(addr: SocketAddr, path: &str) -> TcpStream {
    // A small, fixed receive buffer (no autotuning) so a client that stops reading
    // pushes back on the server quickly.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(8 * 1024).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, s.read_exact(&mut b))
            .await
            .expect("101 in time")
            .unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads one unmasked server frame: (opcode, payload).
pub async fn raw_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let fut = async {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await.unwrap();
            len = u64::from(u16::from_be_bytes(l));
        } else if len == 127 {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).await.unwrap();
            len = u64::from_be_bytes(l);
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await.unwrap();
        (h[0] & 0x0f, payload)
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("frame in time")
}

/// Sends one masked text frame on a raw socket.
pub async fn raw_send_text(s: &mut TcpStream, text: &str) {
    raw_send_frame(s, 1, text.as_bytes(), true).await;
}

/// Sends one frame with any opcode and payload, masked (as clients must) or not.
pub async fn raw_send_frame(s: &mut TcpStream, opcode: u8, payload: &[u8], masked: bool) {
    let mut frame = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        frame.push(mask_bit | payload.len() as u8);
    } else if payload.len() <= usize::from(u16::MAX) {
        frame.push(mask_bit | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        frame.push(mask_bit | 127);
        frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    if masked {
        let mask = [7u8, 1, 9, 3];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    s.write_all(&frame).await.unwrap();
}

/// Reads raw frames until a close frame; returns its code.
pub async fn raw_close_code(s: &mut TcpStream) -> u16 {
    loop {
        let (op, payload) = raw_frame(s).await;
        if op == 8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}
