//! `herald trigger`: sign and send one event through the HTTP API, for smoke tests.

use std::path::Path;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use herald::config::Part;

/// Loads the app, sends the event and prints the answer; exit code 0 on HTTP 200.
pub fn run(
    config: Option<&Path>,
    app: Option<&str>,
    channel: &str,
    event: &str,
    data: &str,
    addr: Option<&str>,
) -> ExitCode {
    // Only what this command uses is checked: the server's address and the apps.
    let config = match crate::load(config, &[Part::Server, Part::Apps], None, None) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let chosen = match app {
        Some(id) => config.apps.iter().find(|a| a.id == id),
        None if config.apps.len() == 1 => config.apps.first(),
        None => {
            eprintln!("several apps are configured: choose one with --app");
            return ExitCode::FAILURE;
        }
    };
    let Some(app) = chosen else {
        eprintln!("no app {:?} in the configuration", app.unwrap_or_default());
        return ExitCode::FAILURE;
    };
    let addr = addr.map_or_else(|| crate::health::local_addr(&config.server), str::to_string);
    let body = serde_json::json!({"name": event, "channel": channel, "data": data}).to_string();
    let path = format!("/apps/{}/events", app.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let query = herald::auth::rest::signed_query(
        "POST",
        &path,
        &[],
        body.as_bytes(),
        &app.key,
        &app.secret,
        now,
    );
    let Some(runtime) = crate::runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::post(format!("{path}?{query}"))
            .header("host", addr.as_str())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let res = sender.send_request(req).await?;
        let status = res.status().as_u16();
        let text =
            String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()).to_string();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, text))
    });
    match result {
        Ok((200, text)) => {
            println!("200 {text}");
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            eprintln!("{status} {text}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot reach herald at {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
