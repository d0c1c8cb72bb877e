//! The `herald` command line: `serve` (default), `check-config`, `trigger`, `health`, and
//! `app-store init` / `apps …` for the `[app_store]` database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use herald::config::{Config, Part};
use herald::Server;

mod apps_cli;
mod banner;
mod health;
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
    /// Port of the /metrics listener, or `off` (overrides the config and HERALD_METRICS_PORT).
    #[arg(long, value_name = "PORT|off", value_parser = metrics_port)]
    metrics_port: Option<MetricsPort>,
}

/// `--metrics-port`: a port, or `None` for `off`.
#[derive(Clone, Copy)]
struct MetricsPort(Option<u16>);

fn metrics_port(value: &str) -> Result<MetricsPort, String> {
    herald::config::parse_metrics_port(value).map(MetricsPort)
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
    /// Check that a running server answers GET /health (for container health checks).
    ///
    /// Asks at the address the same config file, HERALD_HOST / HERALD_PORT and --host / --port
    /// give `serve`; exit code 0 on a 200, 1 otherwise.
    Health {
        /// Config file the server runs with (without one: the development defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address the server binds (as given to `serve`).
        #[arg(long)]
        host: Option<String>,
        /// Port the server binds (as given to `serve`).
        #[arg(long)]
        port: Option<u16>,
        /// Milliseconds to wait for the answer.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// The app store's table (`[app_store]` in the config file).
    AppStore {
        /// Config file with the [app_store] section.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: AppStoreCommand,
    },
    /// List, add, change, disable and remove apps in the app store.
    Apps {
        /// Config file with the [app_store] section.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: apps_cli::AppsCommand,
    },
}

/// `herald app-store ...`.
#[derive(Subcommand)]
enum AppStoreCommand {
    /// Create the apps table with herald's full schema (Soketi's columns and herald's own)
    /// unless it exists.
    Init,
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
        Some(Command::Health {
            config,
            host,
            port,
            timeout_ms,
        }) => health::run(config.as_deref(), host, port, timeout_ms),
        Some(Command::AppStore { config, command }) => match (config, command) {
            (Some(c), AppStoreCommand::Init) => apps_cli::init(&c),
            (None, _) => no_config(),
        },
        Some(Command::Apps { config, command }) => match config {
            Some(c) => apps_cli::run(&c, command),
            None => no_config(),
        },
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn no_config() -> ExitCode {
    eprintln!("--config FILE is needed: the file with the [app_store] section");
    ExitCode::FAILURE
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

/// The config file (or the development app), with the environment's overrides and then the
/// flags' applied; only the problems of `parts` count.
pub(crate) fn load(
    path: Option<&std::path::Path>,
    parts: &[Part],
    host: Option<&str>,
    port: Option<u16>,
) -> Result<Config, String> {
    let mut config = match path {
        Some(path) => {
            Config::from_file_for(path, parts).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Config::development_with_env(&|n| std::env::var(n).ok(), parts)
            .map_err(|e| e.to_string())?,
    };
    if let Some(h) = host {
        config.server.host = h.to_string();
    }
    if let Some(p) = port {
        config.server.port = p;
    }
    Ok(config)
}

fn serve(args: ServeArgs) -> ExitCode {
    let loaded = load(
        args.config.as_deref(),
        Part::ALL,
        args.host.as_deref(),
        args.port,
    );
    let config = match loaded.map(|mut c| {
        if let Some(MetricsPort(port)) = args.metrics_port {
            c.metrics.set_port(port);
        }
        c
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
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
        if dev {
            tracing::warn!("no --config given: serving the built-in development app; do not use these credentials in production");
            banner::print_development(&server, &config);
        } else {
            banner::log(&server, &config);
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

/// The runtime `builder` makes, with I/O and timers; `None` (said on stderr) if it cannot start.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .build()
        .map_err(|e| eprintln!("cannot start the runtime: {e}"))
        .ok()
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
