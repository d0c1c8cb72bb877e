//! Config data types and their defaults; `read.rs` fills them from TOML, `validate.rs` checks them.

use super::limits::{Limits, LimitsOverride};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Listener and connection behaviour.
    pub server: ServerConfig,
    /// Which adapter joins this node to others.
    pub adapter: AdapterKind,
    /// `[redis]`, used when `adapter = "redis"`.
    pub redis: RedisConfig,
    /// `[webhooks]`.
    pub webhooks: WebhookSettings,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[dashboard]`.
    pub dashboard: DashboardConfig,
    /// Limits for every app unless an app overrides them.
    pub limits: Limits,
    /// The apps this server serves.
    pub apps: Vec<AppConfig>,
    /// `[app_store]`: more apps from PostgreSQL or MySQL, looked up on demand. Static `[[apps]]`
    /// are found first; the store answers for every other id and key.
    pub app_store: Option<AppStoreConfig>,
}

/// `driver` of `[app_store]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDriver {
    /// PostgreSQL (`postgres://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`).
    Mysql,
}

/// `[app_store]`: where apps are read from, and how long answers are cached per node.
#[derive(Clone, PartialEq)]
pub struct AppStoreConfig {
    /// Which database.
    pub driver: StoreDriver,
    /// Connection URL (`postgres://user:${PASSWORD}@host/db`, `mysql://…`). Never logged.
    pub url: String,
    /// The apps table, optionally schema-qualified (`apps`, `herald.apps`).
    pub table: String,
    /// Seconds an app found is used before it is read again (cached apps are refreshed in one
    /// query per period, so changes reach every node within it).
    pub cache_ttl_seconds: u64,
    /// Seconds an unknown id or key is remembered as unknown (shorter: a new app is found soon).
    pub negative_ttl_seconds: u64,
    /// Milliseconds one query (including getting a connection) may take before the store counts
    /// as unreachable.
    pub timeout_ms: u64,
    /// Database connections per node.
    pub pool_size: u32,
    /// Lookups of uncached ids and keys per second per node; beyond it new keys are refused
    /// with 4100 (reconnect after backing off) and REST with 503, so a flood of random keys
    /// cannot hammer the database.
    pub lookups_per_second: u32,
}

impl Default for AppStoreConfig {
    fn default() -> Self {
        AppStoreConfig {
            driver: StoreDriver::Postgres,
            url: String::new(),
            table: "apps".into(),
            cache_ttl_seconds: 30,
            negative_ttl_seconds: 5,
            timeout_ms: 2000,
            pool_size: 5,
            lookups_per_second: 200,
        }
    }
}

impl std::fmt::Debug for AppStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStoreConfig")
            .field("driver", &self.driver)
            .field("url", &"<redacted>")
            .field("table", &self.table)
            .field("cache_ttl_seconds", &self.cache_ttl_seconds)
            .field("negative_ttl_seconds", &self.negative_ttl_seconds)
            .finish_non_exhaustive()
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// Optional prefix before `/app/{key}` and `/apps/{id}` (e.g. `/ws`).
    pub path_prefix: String,
    /// Seconds of client silence before the server pings; sent to clients as `activity_timeout`.
    pub activity_timeout: u64,
    /// Seconds to wait for any frame after a ping before closing with 4201.
    pub pong_timeout: u64,
    /// Seconds a client may take to send the HTTP request headers (upgrade or REST).
    pub handshake_timeout: u64,
    /// Frames queued per connection before it is evicted as a slow consumer.
    pub outbox_capacity: usize,
    /// Maximum connections on this node (0: unlimited); beyond it, close 4100.
    pub max_connections: usize,
    /// Seconds to wait for connections to close on shutdown.
    pub shutdown_timeout: u64,
    /// Seconds over which a draining node (SIGTERM) closes its sockets, spread evenly, with
    /// 4100 so clients back off and reconnect elsewhere.
    pub drain_seconds: u64,
    /// Seconds an HTTP-fallback session may go without an open receive request before it
    /// ends like a vanished WebSocket (1006).
    pub http_session_timeout: u64,
    /// Seconds of silence after which an open HTTP-fallback receive request gets a heartbeat.
    pub http_heartbeat: u64,
    /// `[server.tls]`: serve `wss://` and HTTPS.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
    /// A separate TLS port; the main port then stays plain. Unset: the main port is TLS only.
    pub port: Option<u16>,
    /// Seconds between checks of the files' modification times; a change reloads them
    /// (certbot-style renewals without a signal). 0 turns the check off.
    pub watch_seconds: u64,
}

/// Default of [`TlsConfig::watch_seconds`].
pub const TLS_WATCH_SECONDS: u64 = 60;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 6001,
            path_prefix: String::new(),
            activity_timeout: 120,
            pong_timeout: 30,
            handshake_timeout: 10,
            outbox_capacity: 1024,
            max_connections: 0,
            shutdown_timeout: 5,
            drain_seconds: 10,
            http_session_timeout: 30,
            http_heartbeat: 25,
            tls: None,
        }
    }
}

/// `[[apps]]`. `Debug` redacts the secret.
#[derive(Clone, PartialEq)]
pub struct AppConfig {
    /// App id used in REST paths (`/apps/{id}`); numeric ids suit every SDK.
    pub id: String,
    /// Public key used by clients (`/app/{key}`) and in signatures.
    pub key: String,
    /// Secret for HMAC signatures. Never logged.
    pub secret: String,
    /// Disabled apps refuse connections (4003) and REST calls (403).
    pub enabled: bool,
    /// Whether clients may send `client-` events.
    pub enable_client_messages: bool,
    /// Max concurrent connections for this app (close 4004 beyond); unset: unlimited.
    pub max_connections: Option<usize>,
    /// Max REST requests per second for this app (429 with Retry-After beyond); unset: unlimited.
    pub max_requests_per_second: Option<u32>,
    /// Send `pusher_internal:subscription_count` to subscribers of non-presence channels.
    pub enable_subscription_count: bool,
    /// Send `pusher_internal:watchlist_events` for the watchlists of signed-in users.
    pub enable_watchlist_events: bool,
    /// When set, a connection must sign in (or subscribe to a private or presence channel)
    /// within this many seconds, or it is closed with 4009.
    pub signin_timeout: Option<u64>,
    /// Overrides of the global limits.
    pub limits: LimitsOverride,
    /// Where to send this app's webhooks.
    pub webhooks: Vec<WebhookConfig>,
}

/// The webhook event types (PROTOCOL.md §7.2).
pub const WEBHOOK_EVENTS: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// `[[apps.webhooks]]`: one receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL that receives the POSTs.
    pub url: String,
    /// Event types to send; empty means all.
    pub events: Vec<String>,
    /// Only events of channels starting with this prefix.
    pub channel_prefix: String,
    /// Extra request headers (e.g. an Authorization header of your receiver).
    pub headers: std::collections::BTreeMap<String, String>,
    /// Milliseconds to collect events before sending them together; 0 sends one event per
    /// request, as Pusher does without batching.
    pub batch_ms: u64,
    /// Most events in one request.
    pub batch_max: usize,
}

impl WebhookConfig {
    /// Whether this receiver wants the event type for this channel.
    pub fn wants(&self, event: &str, channel: &str) -> bool {
        (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && channel.starts_with(&self.channel_prefix)
    }
}

/// `[webhooks]`: delivery behaviour for every app.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// Milliseconds `channel_vacated` and `member_removed` wait; a re-join within it cancels
    /// both (a page refresh sends nothing).
    pub grace_ms: u64,
    /// Seconds a failing delivery is retried (exponential backoff with jitter) before it is
    /// dropped.
    pub retry_window_secs: u64,
    /// Events waiting to be sent, per receiver, before new ones are dropped (counted).
    pub queue: usize,
    /// Milliseconds one delivery attempt may take.
    pub timeout_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            grace_ms: 3000,
            retry_window_secs: 300,
            queue: 10_000,
            timeout_ms: 5000,
        }
    }
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("enable_client_messages", &self.enable_client_messages)
            .field("max_connections", &self.max_connections)
            .field("max_requests_per_second", &self.max_requests_per_second)
            .field("enable_subscription_count", &self.enable_subscription_count)
            .field("enable_watchlist_events", &self.enable_watchlist_events)
            .field("signin_timeout", &self.signin_timeout)
            .field("webhooks", &self.webhooks.len())
            .field("limits", &self.limits)
            .finish()
    }
}

/// `adapter = "local" | "redis"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AdapterKind {
    /// One node, no shared state.
    #[default]
    Local,
    /// Many nodes sharing state and messages through Redis.
    Redis,
}

/// `[redis]`. Passwords and TLS go in the URL (`redis://:password@host:6379/0`).
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// A single Redis server.
    pub url: String,
    /// Seed URLs of a Redis Cluster; when non-empty, `url` is ignored.
    pub cluster: Vec<String>,
    /// Redis Sentinel URLs (`redis://host:26379`); when non-empty the master is asked of them
    /// (and asked again after a failover), and `url` only supplies the password and database.
    pub sentinel: Vec<String>,
    /// The master's name in Sentinel (`sentinel monitor <name> ...`).
    pub sentinel_master: String,
    /// Prefix of every key and pub/sub channel, so several deployments can share a Redis.
    pub prefix: String,
    /// Milliseconds between node heartbeats.
    pub heartbeat_ms: u64,
    /// A node silent for this many milliseconds is declared dead and its sockets removed.
    pub node_timeout_ms: u64,
    /// Broadcasts waiting for Redis before new ones are dropped (counted and logged).
    pub publish_queue: usize,
    /// Milliseconds each channel's broadcasts stay in a Redis stream beside pub/sub, so a node
    /// whose own connection dropped replays what it missed; 0 turns the log off.
    pub replay_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            cluster: Vec::new(),
            sentinel: Vec::new(),
            sentinel_master: "mymaster".into(),
            prefix: "herald".into(),
            heartbeat_ms: 1000,
            node_timeout_ms: 5000,
            publish_queue: 16384,
            replay_ms: 10_000,
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry passwords.
        f.debug_struct("RedisConfig")
            .field("url", &"<redacted>")
            .field("cluster", &self.cluster.len())
            .field("sentinel", &self.sentinel.len())
            .field("sentinel_master", &self.sentinel_master)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `[metrics]`: the Prometheus endpoint, on its own listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Serve `/metrics`.
    pub enabled: bool,
    /// Address to bind (loopback by default: metrics are not for the public).
    pub host: String,
    /// Port (0 picks a free one).
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 9601,
        }
    }
}

/// `[dashboard]`: the built-in debug dashboard, on its own listener, off by default.
#[derive(Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Serve the dashboard.
    pub enabled: bool,
    /// Address to bind.
    pub host: String,
    /// Port (0 picks a free one).
    pub port: u16,
    /// HTTP Basic user name.
    pub user: String,
    /// HTTP Basic password; required when enabled. Never logged.
    pub password: String,
    /// Seconds per chart sample (1..=3600); the last 360 samples are kept.
    pub sample_seconds: u64,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 9602,
            user: "admin".into(),
            password: String::new(),
            sample_seconds: 10,
        }
    }
}

impl std::fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("enabled", &self.enabled)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("sample_seconds", &self.sample_seconds)
            .finish()
    }
}
