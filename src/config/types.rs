//! Config data types with their defaults (Pusher's limits, PROTOCOL.md §8).

use serde::Deserialize;

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
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// `[server.tls]`: serve `wss://` and HTTPS.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
    /// A separate TLS port; the main port then stays plain. Unset: the main port is TLS only.
    #[serde(default)]
    pub port: Option<u16>,
}

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
            tls: None,
        }
    }
}

impl ServerConfig {
    pub(super) fn validate_into(&self, problems: &mut Vec<String>) {
        if self.host.is_empty() {
            problems.push("[server] host must not be empty".into());
        }
        if self.activity_timeout == 0 {
            problems.push("[server] activity_timeout must be at least 1 second".into());
        }
        if self.pong_timeout == 0 {
            problems.push("[server] pong_timeout must be at least 1 second".into());
        }
        if self.handshake_timeout == 0 {
            problems.push("[server] handshake_timeout must be at least 1 second".into());
        }
        if self.outbox_capacity < 2 {
            problems.push("[server] outbox_capacity must be at least 2".into());
        }
        if let Some(tls) = &self.tls {
            if let Err(e) = crate::tls::acceptor(tls) {
                problems.push(format!("[server.tls] {e}"));
            }
        }
        let p = &self.path_prefix;
        if !p.is_empty() && (!p.starts_with('/') || p.ends_with('/')) {
            problems.push(
                "[server] path_prefix must start with '/' and not end with '/' (e.g. \"/ws\")"
                    .into(),
            );
        }
    }
}

/// `[limits]` and `[apps.limits]`: Pusher's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Max `data` bytes of one event (REST and client events): 10 KiB.
    pub max_event_data_bytes: usize,
    /// Max channels in one trigger: 100.
    pub max_channels_per_trigger: usize,
    /// Max events in one batch: 10.
    pub max_batch_events: usize,
    /// Max channel name length: 200.
    pub max_channel_name_len: usize,
    /// Max event name length: 200.
    pub max_event_name_len: usize,
    /// Max distinct members of a presence channel: 100.
    pub max_presence_members: usize,
    /// Max serialized presence `user_info`: 1 KiB.
    pub max_presence_user_info_bytes: usize,
    /// Max presence user id length: 128.
    pub max_presence_user_id_len: usize,
    /// Client events per second per connection: 10.
    pub client_events_per_second: u32,
    /// Max inbound WebSocket message: 64 KiB (close 1009 beyond). Node-wide: apps cannot override it.
    pub max_message_bytes: usize,
    /// Max REST request body: 256 KiB (413 beyond).
    pub max_request_body_bytes: usize,
    /// Max channels one connection may subscribe to: 100 (0: unlimited).
    pub max_channels_per_connection: usize,
    /// Max user ids in a sign-in watchlist: 100 (the rest are dropped with `pusher:error` 4302).
    pub max_watchlist_size: usize,
    /// Seconds a cache channel keeps its last event: 1800.
    pub cache_ttl_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_data_bytes: 10 * 1024,
            max_channels_per_trigger: 100,
            max_batch_events: 10,
            max_channel_name_len: 200,
            max_event_name_len: 200,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_presence_user_id_len: 128,
            client_events_per_second: 10,
            max_message_bytes: 64 * 1024,
            max_request_body_bytes: 256 * 1024,
            max_channels_per_connection: 100,
            max_watchlist_size: 100,
            cache_ttl_seconds: 1800,
        }
    }
}

impl Limits {
    pub(super) fn validate_into(&self, at: &str, problems: &mut Vec<String>) {
        let positive = [
            ("max_event_data_bytes", self.max_event_data_bytes),
            ("max_channels_per_trigger", self.max_channels_per_trigger),
            ("max_batch_events", self.max_batch_events),
            ("max_channel_name_len", self.max_channel_name_len),
            ("max_event_name_len", self.max_event_name_len),
            ("max_presence_members", self.max_presence_members),
            (
                "max_presence_user_info_bytes",
                self.max_presence_user_info_bytes,
            ),
            ("max_presence_user_id_len", self.max_presence_user_id_len),
            (
                "client_events_per_second",
                self.client_events_per_second as usize,
            ),
            ("max_request_body_bytes", self.max_request_body_bytes),
            ("max_watchlist_size", self.max_watchlist_size),
            ("cache_ttl_seconds", self.cache_ttl_seconds as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                problems.push(format!("{at}: {name} must be greater than 0"));
            }
        }
        if self.max_message_bytes <= self.max_event_data_bytes {
            problems.push(format!(
                "{at}: max_message_bytes must exceed max_event_data_bytes (frames carry an envelope)"
            ));
        }
    }

    /// These limits with an app's overrides applied.
    pub fn merged(&self, o: &LimitsOverride) -> Limits {
        Limits {
            max_event_data_bytes: o.max_event_data_bytes.unwrap_or(self.max_event_data_bytes),
            max_channels_per_trigger: o
                .max_channels_per_trigger
                .unwrap_or(self.max_channels_per_trigger),
            max_batch_events: o.max_batch_events.unwrap_or(self.max_batch_events),
            max_channel_name_len: o.max_channel_name_len.unwrap_or(self.max_channel_name_len),
            max_event_name_len: o.max_event_name_len.unwrap_or(self.max_event_name_len),
            max_presence_members: o.max_presence_members.unwrap_or(self.max_presence_members),
            max_presence_user_info_bytes: o
                .max_presence_user_info_bytes
                .unwrap_or(self.max_presence_user_info_bytes),
            max_presence_user_id_len: o
                .max_presence_user_id_len
                .unwrap_or(self.max_presence_user_id_len),
            client_events_per_second: o
                .client_events_per_second
                .unwrap_or(self.client_events_per_second),
            max_message_bytes: self.max_message_bytes,
            max_request_body_bytes: o
                .max_request_body_bytes
                .unwrap_or(self.max_request_body_bytes),
            max_channels_per_connection: o
                .max_channels_per_connection
                .unwrap_or(self.max_channels_per_connection),
            max_watchlist_size: o.max_watchlist_size.unwrap_or(self.max_watchlist_size),
            cache_ttl_seconds: o.cache_ttl_seconds.unwrap_or(self.cache_ttl_seconds),
        }
    }
}

/// Per-app overrides of [`Limits`]; unset fields inherit the global value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LimitsOverride {
    pub max_event_data_bytes: Option<usize>,
    pub max_channels_per_trigger: Option<usize>,
    pub max_batch_events: Option<usize>,
    pub max_channel_name_len: Option<usize>,
    pub max_event_name_len: Option<usize>,
    pub max_presence_members: Option<usize>,
    pub max_presence_user_info_bytes: Option<usize>,
    pub max_presence_user_id_len: Option<usize>,
    pub client_events_per_second: Option<u32>,
    pub max_request_body_bytes: Option<usize>,
    pub max_channels_per_connection: Option<usize>,
    pub max_watchlist_size: Option<usize>,
    pub cache_ttl_seconds: Option<u64>,
}

/// `[[apps]]`. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// App id used in REST paths (`/apps/{id}`); numeric ids suit every SDK.
    pub id: String,
    /// Public key used by clients (`/app/{key}`) and in signatures.
    pub key: String,
    /// Secret for HMAC signatures. Never logged.
    pub secret: String,
    /// Disabled apps refuse connections (4003) and REST calls (403).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Whether clients may send `client-` events.
    #[serde(default)]
    pub enable_client_messages: bool,
    /// Max concurrent connections for this app (close 4004 beyond); unset: unlimited.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Max REST requests per second for this app (429 with Retry-After beyond); unset: unlimited.
    #[serde(default)]
    pub max_requests_per_second: Option<u32>,
    /// Send `pusher_internal:subscription_count` to subscribers of non-presence channels.
    #[serde(default)]
    pub enable_subscription_count: bool,
    /// Send `pusher_internal:watchlist_events` for the watchlists of signed-in users.
    #[serde(default)]
    pub enable_watchlist_events: bool,
    /// When set, a connection must sign in (or subscribe to a private or presence channel)
    /// within this many seconds, or it is closed with 4009.
    #[serde(default)]
    pub signin_timeout: Option<u64>,
    /// Overrides of the global limits.
    #[serde(default)]
    pub limits: LimitsOverride,
    /// Where to send this app's webhooks.
    #[serde(default)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL that receives the POSTs.
    pub url: String,
    /// Event types to send; empty means all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only events of channels starting with this prefix.
    #[serde(default)]
    pub channel_prefix: String,
    /// Extra request headers (e.g. an Authorization header of your receiver).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Milliseconds to collect events before sending them together; 0 sends one event per
    /// request, as Pusher does without batching.
    #[serde(default)]
    pub batch_ms: u64,
    /// Most events in one request.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

fn default_batch_max() -> usize {
    100
}

impl WebhookConfig {
    /// Whether this receiver wants the event type for this channel.
    pub fn wants(&self, event: &str, channel: &str) -> bool {
        (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && channel.starts_with(&self.channel_prefix)
    }
}

/// `[webhooks]`: delivery behaviour for every app.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

fn yes() -> bool {
    true
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// One node, no shared state.
    #[default]
    Local,
    /// Many nodes sharing state and messages through Redis.
    Redis,
}

/// `[redis]`. Passwords and TLS go in the URL (`redis://:password@host:6379/0`).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// A single Redis server.
    pub url: String,
    /// Seed URLs of a Redis Cluster; when non-empty, `url` is ignored.
    pub cluster: Vec<String>,
    /// Prefix of every key and pub/sub channel, so several deployments can share a Redis.
    pub prefix: String,
    /// Milliseconds between node heartbeats.
    pub heartbeat_ms: u64,
    /// A node silent for this many milliseconds is declared dead and its sockets removed.
    pub node_timeout_ms: u64,
    /// Broadcasts waiting for Redis before new ones are dropped (counted and logged).
    pub publish_queue: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            cluster: Vec::new(),
            prefix: "herald".into(),
            heartbeat_ms: 1000,
            node_timeout_ms: 5000,
            publish_queue: 16384,
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry passwords.
        f.debug_struct("RedisConfig")
            .field("url", &"<redacted>")
            .field("cluster", &self.cluster.len())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    pub(super) fn validate_into(&self, problems: &mut Vec<String>) {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}', ':']) {
            problems.push("[redis] prefix must be non-empty without '{', '}' or ':'".into());
        }
        if self.url.is_empty() && self.cluster.is_empty() {
            problems.push("[redis] needs url or cluster".into());
        }
        for u in std::iter::once(&self.url).chain(&self.cluster) {
            if !(u.is_empty() || u.starts_with("redis://") || u.starts_with("rediss://")) {
                problems.push("[redis] URLs must start with redis:// or rediss://".into());
            }
        }
        if self.heartbeat_ms == 0 || self.node_timeout_ms <= 2 * self.heartbeat_ms {
            problems.push("[redis] node_timeout_ms must exceed twice heartbeat_ms (> 0)".into());
        }
        if self.publish_queue == 0 {
            problems.push("[redis] publish_queue must be greater than 0".into());
        }
    }
}

/// `[metrics]`: the Prometheus endpoint, on its own listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 9602,
            user: "admin".into(),
            password: String::new(),
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
            .finish()
    }
}
