//! The `herald` command line: `serve` (default) and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use herald::config::Config;
use herald::Server;

mod trigger;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "A self-hosted, Pusher-compatible channel server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format: human-readable text or one JSON object per line. Levels come from RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// Config file (TOML). Without one, a development app is served.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to bind (overrides the config and HERALD_HOST).
    #[arg(long)]
    host: Option<String>,
    /// Port to bind (overrides the config and HERALD_PORT).
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Validate a config file and print every problem.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Sign and send one event through the HTTP API (a smoke test for a running server).
    Trigger {
        /// Config file with the app (its server host/port are where the request goes).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// App id (default: the only app, or the development app).
        #[arg(long)]
        app: Option<String>,
        /// Channel.
        #[arg(long)]
        channel: String,
        /// Event name.
        #[arg(long)]
        event: String,
        /// Event data (any string; usually JSON).
        #[arg(long, default_value = "{}")]
        data: String,
        /// Server address (host:port) instead of the config's.
        #[arg(long)]
        addr: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Trigger {
            config,
            app,
            channel,
            event,
            data,
            addr,
        }) => trigger::run(
            config.as_deref(),
            app.as_deref(),
            &channel,
            &event,
            &data,
            addr.as_deref(),
        ),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::from_file(file) {
        Ok(c) => {
            println!(
                "{}: OK ({} app(s), listening on {}:{})",
                file.display(),
                c.apps.len(),
                c.server.host,
                c.server.port
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ServeArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => {
            let mut c = Config::development();
            let mut problems = Vec::new();
            c.apply_env(&|n| std::env::var(n).ok(), &mut problems);
            if !problems.is_empty() {
                return Err(problems.join("\n"));
            }
            c
        }
    };
    if let Some(h) = &args.host {
        config.server.host = h.clone();
    }
    if let Some(p) = args.port {
        config.server.port = p;
    }
    Ok(config)
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    raise_open_files_limit();
    runtime.block_on(async move {
        let dev = args.config.is_none();
        let server = match Server::start(config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = server.local_addr();
        if dev {
            tracing::warn!("no --config given: serving the built-in development app; do not use these credentials in production");
            println!("herald listening on {addr} (development app)");
            println!("  app_id:  app-id");
            println!("  key:     app-key");
            println!("  secret:  app-secret");
        } else {
            tracing::info!(%addr, apps = config.apps.len(), "herald listening");
        }
        let reloads = args.config.clone().map(|path| reload_on_sighup(&server, path));
        wait_for_signal().await;
        drop(reloads);
        tracing::info!(seconds = config.server.drain_seconds, "draining: closing sockets gradually; interrupt again to exit at once");
        tokio::select! {
            _ = server.drain() => {}
            _ = wait_for_signal() => {
                tracing::warn!("second signal: exiting at once");
                return ExitCode::from(130);
            }
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Every socket is a file descriptor: raise the soft limit to the hard limit and say what it is.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// Re-reads the config file on every SIGHUP; a bad file is reported and the old one kept.
fn reload_on_sighup(server: &Server, path: PathBuf) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).ok()?;
        let server = server.reloader();
        Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match Config::from_file(&path) {
                    Ok(config) => {
                        let notes = server.reload(&config);
                        tracing::info!(file = %path.display(), apps = config.apps.len(), "configuration reloaded");
                        for note in notes {
                            tracing::warn!("{note}");
                        }
                    }
                    Err(e) => {
                        for problem in &e.problems {
                            tracing::error!(file = %path.display(), "{problem}");
                        }
                        tracing::error!(
                            "reload refused: the previous configuration stays in force"
                        );
                    }
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = (server, path);
        None
    }
}
