//! Certificate rotation on the herald binary: SIGHUP and a file change each rotate between two
//! generated certificates while a `wss://` WebSocket stays open; a missing or broken file is
//! refused and the current certificate stays. Each new handshake's certificate is checked.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::spawned::{logged, wait_log};
use crate::tls::{connector, presented, tls_stream, Certs};

/// A generated certificate: its PEM files' contents and its DER.
struct Generated {
    cert_pem: String,
    key_pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn generate() -> Generated {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    Generated {
        cert_pem: ck.cert.pem(),
        key_pem: ck.key_pair.serialize_pem(),
        der: ck.cert.der().clone(),
    }
}

/// Writes `contents` to `path` through a rename, the file carrying `mtime` from the start, so the
/// watcher never sees a half-written file or a modification time other than `mtime`.
fn replace(path: &Path, contents: &str, mtime: SystemTime) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Wss) -> Value {
    let m = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame in time")
        .expect("the WebSocket is open")
        .expect("a frame");
    match m {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("unexpected frame {other:?}"),
    }
}

/// The open WebSocket still answers: pusher:ping gets pusher:pong.
async fn still_open(ws: &mut Wss) {
    ws.send(Message::Text(
        json!({"event": "pusher:ping", "data": {}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_json(ws).await,
        json!({"event": "pusher:pong", "data": "{}"})
    );
}

fn hup(child: &std::process::Child) {
    assert!(Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

#[tokio::test]
async fn certificates_rotate_on_sighup_and_on_file_change_with_a_websocket_open() {
    let (a, b) = (generate(), generate());
    let dir = std::env::temp_dir().join(format!("herald-tls-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let start = SystemTime::now() - Duration::from_secs(60);
    replace(&cert, &a.cert_pem, start);
    replace(&key, &a.key_pem, start);
    let port = crate::redis_server::free_port();
    let file = write_config(
        "tls-rotation.toml",
        &format!(
            "[metrics]\nenabled = false\n[server]\nport = {port}\n[server.tls]\ncert = {:?}\nkey = {:?}\nwatch_seconds = 1\n[[apps]]\nid = \"1\"\nkey = \"key1\"\nsecret = \"secret1\"\n",
            cert.to_string_lossy(),
            key.to_string_lossy()
        ),
    );
    let (mut child, mut logs) = logged(&[], &file, Some("info"));
    wait_log(&mut logs, "herald listening").await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The client trusts both; `presented` says which one a new handshake got.
    let trusted = |g: &Generated| Certs {
        cert: String::new(),
        key: String::new(),
        der: g.der.clone(),
    };
    let (ta, tb) = (trusted(&a), trusted(&b));
    let both = [&ta, &tb];
    assert_eq!(presented(addr, &both).await, a.der.to_vec());

    // The WebSocket kept open throughout, over a handshake that got certificate A.
    let stream = tls_stream(addr, &connector(&a.der)).await;
    let (mut ws, _) =
        tokio_tungstenite::client_async("wss://localhost/app/key1?protocol=7", stream)
            .await
            .unwrap();
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher:connection_established"
    );

    // 1. SIGHUP: A → B. The files keep A's modification time, so only the signal can be why.
    replace(&cert, &b.cert_pem, start);
    replace(&key, &b.key_pem, start);
    hup(child.child());
    let line = wait_log(&mut logs, "TLS certificate reload").await;
    assert!(line.ends_with("TLS certificate reloaded"), "{line}");
    wait_log(&mut logs, "configuration reloaded").await;
    assert_eq!(presented(addr, &both).await, b.der.to_vec());
    still_open(&mut ws).await;

    // 2. A file change, no signal: B → A (a certbot-style renewal, seen by the watcher).
    let renewed = start + Duration::from_secs(10);
    replace(&key, &a.key_pem, renewed);
    replace(&cert, &a.cert_pem, renewed);
    let line = wait_log(&mut logs, "TLS certificate reload").await;
    // The key may be noticed alone first (it does not fit B): refused, then the pair loads.
    let line = if line.contains("refused") {
        wait_log(&mut logs, "TLS certificate reload").await
    } else {
        line
    };
    assert!(
        line.ends_with("TLS certificate reloaded (the files changed)"),
        "{line}"
    );
    assert_eq!(presented(addr, &both).await, a.der.to_vec());
    still_open(&mut ws).await;

    // 3. A missing key: refused by the watcher and on SIGHUP; A stays.
    std::fs::remove_file(&key).unwrap();
    let line = wait_log(&mut logs, "TLS certificate reload").await;
    assert!(line.contains("refused"), "{line}");
    // On SIGHUP the whole file is refused (its TLS files are checked like the rest of it).
    hup(child.child());
    let line = wait_log(&mut logs, "cannot read").await;
    assert!(line.contains(&*key.to_string_lossy()), "{line}");
    wait_log(
        &mut logs,
        "reload refused: the previous configuration stays in force",
    )
    .await;
    assert_eq!(presented(addr, &both).await, a.der.to_vec());
    still_open(&mut ws).await;

    // 4. A broken certificate with the key back: refused, A stays.
    replace(&key, &a.key_pem, start + Duration::from_secs(20));
    let line = wait_log(&mut logs, "TLS certificate reload").await;
    assert!(
        line.ends_with("TLS certificate reloaded (the files changed)"),
        "{line}"
    );
    replace(&cert, "not a certificate", start + Duration::from_secs(30));
    let line = wait_log(&mut logs, "TLS certificate reload").await;
    assert!(line.contains("refused"), "{line}");
    assert_eq!(presented(addr, &both).await, a.der.to_vec());
    still_open(&mut ws).await;

    drop(ws);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
