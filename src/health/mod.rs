//! `herald health`: asks a running server for `GET /health` at the address its configuration
//! (file, `HERALD_*` environment, flags) gives it, for container and orchestrator health checks.
//! A main port that is TLS only is asked over HTTPS.

mod loopback_tls;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use herald::config::{Part, ServerConfig};

/// Where a local client reaches a server bound to `server.host:server.port`: a wildcard bind
/// (`0.0.0.0`, `::`) is reached on loopback.
pub fn local_addr(server: &ServerConfig) -> String {
    match server.host.as_str() {
        "0.0.0.0" | "" => format!("127.0.0.1:{}", server.port),
        "::" | "[::]" => format!("[::1]:{}", server.port),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{}", server.port),
        h => format!("{h}:{}", server.port),
    }
}

/// Exit code 0 when the server answers 200, 1 otherwise (with the reason on stderr).
pub fn run(
    config: Option<&Path>,
    host: Option<String>,
    port: Option<u16>,
    timeout_ms: u64,
) -> ExitCode {
    // Only [server] decides where the server listens; nothing else is checked.
    let config = match crate::load(config, &[Part::Server], host.as_deref(), port) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let tls_only = config.server.tls.as_ref().is_some_and(|t| t.port.is_none());
    let addr = local_addr(&config.server);
    let url = format!(
        "{}://{addr}/health",
        if tls_only { "https" } else { "http" }
    );
    let Some(runtime) = crate::runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let probe = async {
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        if tls_only {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let tls = loopback_tls::connector().connect(name, stream).await?;
            get_health(TokioIo::new(tls), &addr).await
        } else {
            get_health(TokioIo::new(stream), &addr).await
        }
    };
    let result = runtime
        .block_on(async { tokio::time::timeout(Duration::from_millis(timeout_ms), probe).await });
    match result {
        Ok(Ok((200, body))) => {
            println!("{url}: 200 {body}");
            ExitCode::SUCCESS
        }
        Ok(Ok((status, body))) => {
            eprintln!("{url}: {status} {body}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{url}: no answer within {timeout_ms} ms");
            ExitCode::FAILURE
        }
    }
}

type ProbeError = Box<dyn std::error::Error + Send + Sync>;

/// `GET /health` over one connection: (status, body).
async fn get_health<I>(io: I, addr: &str) -> Result<(u16, String), ProbeError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/health")
        .header("host", addr)
        .body(Empty::<Bytes>::new())?;
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let body = String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()).to_string();
    Ok((status, body))
}
