//! `herald-bench`: the load tool. One subcommand per scenario; talks only to 127.0.0.0/8,
//! bounded in connections and time; prints a human summary, the targets side by side, and one
//! JSON line.

mod client;
mod cost_meter;
mod cost_table;
mod costs;
mod floor;
mod http;
mod idle;
mod measure;
mod model;
mod model_cmd;
mod plot;
mod pusher_ops;
mod record;
mod redis_stats;
mod scenarios;
mod sizing;
mod soak;
mod validate;
mod webhooks;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herald-bench",
    about = "Load scenarios for herald (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Where the server is and how to sign.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Server address (host:port); must be on 127.0.0.0/8.
    #[arg(long, default_value = "127.0.0.1:6001")]
    pub addr: String,
    /// App id, key and secret.
    #[arg(long, default_value = "app-id")]
    pub app_id: String,
    #[arg(long, default_value = "app-key")]
    pub key: String,
    #[arg(long, default_value = "app-secret")]
    pub secret: String,
    /// The server's pid, to read its RSS and CPU from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
}

#[derive(Subcommand)]
enum Scenario {
    /// N idle subscribed connections: open rate and server RSS per connection.
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        channels: usize,
        /// Loopback source addresses to spread over (127.0.0.2 …), past the ephemeral-port limit.
        #[arg(long, default_value_t = 4)]
        sources: u8,
        /// Connections opened concurrently.
        #[arg(long, default_value_t = 256)]
        parallel: usize,
        /// Spread the connections over this many apps: with more than 1, connection i uses the
        /// key `{key}{i % apps}` (e.g. apps from the app store, each looked up once when cold).
        #[arg(long, default_value_t = 1)]
        apps: usize,
    },
    /// S subscribers, triggers at a fixed rate: delivery, loss, duplicates, latency.
    Fanout {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 100)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// A `floor-server` (host:port) to run the same load against first; herald's figures
        /// are then printed as ratios to the floor's.
        #[arg(long)]
        floor: Option<String>,
        /// The floor server's pid (its CPU per delivery).
        #[arg(long)]
        floor_pid: Option<u32>,
    },
    /// The floor for `fanout --floor`: a minimal server that writes each trigger's prebuilt
    /// frame to every subscribed socket from one thread per core. Runs until killed.
    FloorServer {
        #[arg(long, default_value = "127.0.0.1:6101")]
        addr: String,
        /// Fan-out threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// S subscribers, triggers as fast as possible: triggers/s, deliveries/s, loss.
    Flood {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// N idle xhr_streaming sessions (server RSS per session), then N sessions and N WebSocket
    /// subscribers of one channel at a fixed trigger rate: latency over both transports.
    Http {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        #[arg(long, default_value_t = 100)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Signed REST triggers with no subscribers over keep-alive connections.
    Trigger {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// A long run with steady traffic and connection churn: server RSS and open files sampled,
    /// every message to the steady subscribers accounted for.
    Soak {
        #[command(flatten)]
        target: Target,
        /// Subscribers that stay connected the whole run (their deliveries are checked).
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Extra connections that keep connecting, subscribing and leaving.
        #[arg(long, default_value_t = 200)]
        churners: usize,
        #[arg(long, default_value_t = 50)]
        channels: usize,
        /// Triggers per second (round-robin over the channels).
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Seconds between samples of the server's RSS and open files.
        #[arg(long, default_value_t = 30)]
        sample: u64,
    },
    /// Occupancy transitions with a local webhook receiver: webhook events/s and, with
    /// `--redis`, Redis commands per webhook (INFO commandstats).
    Webhooks {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 20)]
        connections: usize,
        /// Channels each connection occupies and vacates, one after the other.
        #[arg(long, default_value_t = 100)]
        per_connection: usize,
        /// Port of the local receiver (the server's webhook URL must point at it).
        #[arg(long, default_value_t = 6399)]
        receiver_port: u16,
        /// Redis URL to read INFO commandstats from (cluster mode).
        #[arg(long)]
        redis: Option<String>,
    },
    /// SVG charts from saved herald-bench output (the JSON lines of fanout, flood and idle).
    Plot {
        /// Files holding herald-bench output.
        #[arg(required = true)]
        inputs: Vec<std::path::PathBuf>,
        /// Directory to write the SVG files into.
        #[arg(long, default_value = "docs/bench")]
        out: std::path::PathBuf,
    },
    /// The Redis cost of each herald operation (commands, round trips, bytes, CPU), measured
    /// from Redis's INFO counters around N repetitions against running nodes.
    Costs {
        #[command(flatten)]
        target: Target,
        /// Nodes (host:port), comma separated; operations go through the first.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "127.0.0.1:6001,127.0.0.1:6002"
        )]
        nodes: Vec<String>,
        /// Redis servers to read (every master of a cluster), comma separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "redis://127.0.0.1:6390/0"
        )]
        redis: Vec<String>,
        #[arg(long, default_value_t = 500)]
        repeat: usize,
        /// The nodes' `[redis] heartbeat_ms`.
        #[arg(long, default_value_t = 1000)]
        heartbeat_ms: u64,
        /// A node this run may kill with SIGKILL to measure reaping, as host:port.
        #[arg(long, requires = "victim_pid")]
        victim: Option<String>,
        #[arg(long)]
        victim_pid: Option<u32>,
        /// Port of a local webhook receiver the nodes send `wh-` channels' webhooks to.
        #[arg(long)]
        webhook_port: Option<u16>,
        /// CPU µs per second Redis uses with no clients (measured before the nodes start);
        /// kept out of the per-node heartbeat.
        #[arg(long, default_value_t = 0.0)]
        redis_idle_cpu_us: f64,
        /// Pids of the nodes (comma separated, not the victim): their CPU per operation too.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
    },
    /// Predicts Redis and node load for a workload from the measured costs (see `model.rs`);
    /// with `--measure`, runs that workload against running nodes and prints both.
    Model(model_cmd::ModelArgs),
    /// Subscribers spread over several nodes, publishing through the first.
    Cluster {
        #[command(flatten)]
        target: Target,
        /// Other nodes (host:port), comma separated; `--addr` is the publishing node.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        #[arg(long, default_value_t = 100)]
        channels: usize,
        #[arg(long, default_value_t = 9)]
        per_channel: usize,
        #[arg(long, default_value_t = 5000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Put no subscribers on the publishing node: every delivery crosses Redis.
        #[arg(long)]
        remote_only: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.scenario {
            Scenario::Idle {
                target,
                connections,
                channels,
                sources,
                parallel,
                apps,
            } => {
                let spread = idle::Spread {
                    channels,
                    sources,
                    parallel,
                    apps,
                };
                idle::idle(target, connections, spread).await
            }
            Scenario::Fanout {
                target,
                subscribers,
                rate,
                seconds,
                floor,
                floor_pid,
            } => {
                scenarios::fanout(
                    target,
                    subscribers,
                    rate,
                    seconds,
                    floor.map(|a| (a, floor_pid)),
                )
                .await
            }
            Scenario::FloorServer { addr, threads } => floor::serve(&addr, threads).await,
            Scenario::Flood {
                target,
                subscribers,
                publishers,
                seconds,
            } => scenarios::flood(target, subscribers, publishers, seconds).await,
            Scenario::Http {
                target,
                sessions,
                rate,
                seconds,
            } => http::http(target, sessions, rate, seconds).await,
            Scenario::Trigger {
                target,
                connections,
                seconds,
            } => scenarios::trigger(target, connections, seconds).await,
            Scenario::Soak {
                target,
                connections,
                churners,
                channels,
                rate,
                seconds,
                sample,
            } => {
                crate::soak::soak(
                    target,
                    connections,
                    churners,
                    channels,
                    rate,
                    seconds,
                    sample,
                )
                .await
            }
            Scenario::Webhooks {
                target,
                connections,
                per_connection,
                receiver_port,
                redis,
            } => {
                webhooks::webhooks(target, connections, per_connection, receiver_port, redis).await
            }
            Scenario::Plot { inputs, out } => plot::plot(&inputs, &out),
            Scenario::Costs {
                target,
                nodes,
                redis,
                repeat,
                heartbeat_ms,
                victim,
                victim_pid,
                webhook_port,
                redis_idle_cpu_us,
                pids,
            } => {
                let options = costs::Options {
                    nodes,
                    redis,
                    repeat,
                    heartbeat_ms,
                    victim: victim.zip(victim_pid),
                    webhook_port,
                    redis_idle_cpu_us,
                    pids,
                };
                costs::costs(target, options).await
            }
            Scenario::Model(args) => model_cmd::model(args).await,
            Scenario::Cluster {
                target,
                nodes,
                channels,
                per_channel,
                rate,
                seconds,
                remote_only,
            } => {
                scenarios::cluster(
                    target,
                    nodes,
                    channels,
                    per_channel,
                    rate,
                    seconds,
                    remote_only,
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
