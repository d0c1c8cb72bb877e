//! Signed Pusher operations for the scale scenarios (`costs`, `model --measure`): WebSockets
//! that know their socket id, awaited subscribes (public, private, presence), sign-in frames and
//! signed REST POSTs over one keep-alive connection.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Error, Publisher, Ws};
use crate::Target;

/// A socket and its id.
pub(crate) struct Sock {
    pub(crate) ws: Ws,
    pub(crate) id: String,
}

/// Opens a WebSocket to `to` and reads `connection_established` for the socket id.
pub(crate) async fn open_id(to: SocketAddr, i: usize, key: &str) -> Result<Sock, Error> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(client::source(i, 4), 0))?;
    let stream = sock.connect(to).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{to}/app/{key}?protocol=7&client=herald-bench&version=1");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    let id = match ws.next().await {
        Some(Ok(Message::Text(t))) => {
            let v: serde_json::Value = serde_json::from_str(t.as_str())?;
            let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap_or("{}"))?;
            data["socket_id"].as_str().unwrap_or_default().to_string()
        }
        other => return Err(format!("no connection_established: {other:?}").into()),
    };
    if id.is_empty() {
        return Err("connection_established without socket_id".into());
    }
    Ok(Sock { ws, id })
}

/// Sends `frame` and waits for a text frame containing `until` (a `pusher:error` fails).
pub(crate) async fn ask(ws: &mut Ws, frame: serde_json::Value, until: &str) -> Result<(), Error> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            () = &mut deadline => return Err(format!("no {until} within 10 s").into()),
        };
        match m {
            Some(Ok(Message::Text(t))) if t.as_str().contains(until) => return Ok(()),
            Some(Ok(Message::Text(t))) if t.as_str().contains("pusher:error") => {
                return Err(t.to_string().into())
            }
            Some(Ok(_)) => continue,
            other => return Err(format!("waiting for {until}: {other:?}").into()),
        }
    }
}

/// The subscribe frame for `channel` (signed for private and presence channels).
pub(crate) fn subscribe_frame(
    t: &Target,
    socket: &str,
    channel: &str,
    user: &str,
) -> serde_json::Value {
    if channel.starts_with("presence-") {
        let cd = serde_json::json!({"user_id": user, "user_info": {"name": user}}).to_string();
        let sig = herald::auth::sign(
            &t.secret,
            herald::auth::presence_string(socket, channel, &cd).as_bytes(),
        );
        serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": format!("{}:{sig}", t.key), "channel_data": cd}})
    } else if channel.starts_with("private-") {
        let sig = herald::auth::sign(
            &t.secret,
            herald::auth::channel_string(socket, channel).as_bytes(),
        );
        serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": format!("{}:{sig}", t.key)}})
    } else {
        serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": ""}})
    }
}

/// Subscribes `s` to every channel in `chans` as `user`, one after the other.
pub(crate) async fn join_all(
    t: &Target,
    s: &mut Sock,
    chans: &[String],
    user: &str,
) -> Result<(), Error> {
    for ch in chans {
        let f = subscribe_frame(t, &s.id, ch, user);
        ask(&mut s.ws, f, "subscription_succeeded").await?;
    }
    Ok(())
}

/// Unsubscribes `s` from every channel in `chans` (no reply in the protocol).
pub(crate) async fn leave_all(s: &mut Sock, chans: &[String]) -> Result<(), Error> {
    for ch in chans {
        let f = serde_json::json!({"event": "pusher:unsubscribe", "data": {"channel": ch}});
        s.ws.send(Message::Text(f.to_string().into())).await?;
    }
    Ok(())
}

/// Reads and discards everything a socket receives, in the background.
pub(crate) fn drain(s: Sock) -> tokio::task::JoinHandle<()> {
    let mut ws = s.ws;
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// Signed REST POSTs over one keep-alive connection that must answer 200.
pub(crate) struct Rest(Publisher);

impl Rest {
    pub(crate) async fn connect(t: &Target, addr: SocketAddr) -> Result<Rest, Error> {
        Ok(Rest(Publisher::connect(t, addr).await?))
    }

    /// POSTs `body` to `/apps/{id}/{what}`; fails unless 200.
    pub(crate) async fn post(&mut self, what: &str, body: &serde_json::Value) -> Result<(), Error> {
        let status = self.0.post(what, body.to_string()).await?;
        if status != 200 {
            return Err(format!("{what}: HTTP {status}").into());
        }
        Ok(())
    }
}
