//! One logical connection to Redis, standalone or cluster, speaking RESP3 so pub/sub messages
//! arrive on the same connection as commands and subscriptions survive reconnects.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult, Value,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::RedisConfig;

/// Commands time out after this long, so an unreachable Redis fails fast instead of hanging.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connecting times out after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A standalone or cluster connection; cheap to clone (both are multiplexed handles).
#[derive(Clone)]
pub enum Link {
    /// Not connected yet (Redis was unreachable when the node started): every command fails
    /// at once until the adapter's join loop connects.
    Pending,
    /// One Redis server; reconnects with backoff and resubscribes on its own.
    Single(ConnectionManager),
    /// A Redis Cluster; sharded pub/sub (SSUBSCRIBE / SPUBLISH).
    Cluster(ClusterConnection),
}

impl Link {
    /// Connects; pub/sub messages go to `push`. With Sentinel, the current master is asked of
    /// the sentinels first (so calling this again after a failover finds the promoted one).
    pub async fn connect(cfg: &RedisConfig, push: UnboundedSender<PushInfo>) -> RedisResult<Link> {
        if !cfg.sentinel.is_empty() {
            let info = cfg.url.as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let mut node =
                SentinelNodeConnectionInfo::default().set_redis_connection_info(settings);
            if cfg.url.starts_with("rediss://") {
                node = node.set_tls_mode(redis::TlsMode::Secure);
            }
            let mut sentinel = SentinelClient::build(
                cfg.sentinel.clone(),
                cfg.sentinel_master.as_str(),
                Some(node),
                SentinelServerType::Master,
            )?;
            let client = tokio::time::timeout(CONNECT_TIMEOUT, sentinel.async_get_client())
                .await
                .map_err(|_| timed_out("asking Sentinel for the master"))??;
            return Self::single(client, push).await;
        }
        if cfg.cluster.is_empty() {
            let info = cfg.url.as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            Self::single(client, push).await
        } else {
            let client = ClusterClient::builder(cfg.cluster.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()?;
            Ok(Link::Cluster(client.get_async_connection().await?))
        }
    }

    /// A reconnecting, resubscribing connection to one server.
    async fn single(client: redis::Client, push: UnboundedSender<PushInfo>) -> RedisResult<Link> {
        {
            let config = ConnectionManagerConfig::new()
                .set_push_sender(push)
                .set_automatic_resubscription()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(2))
                .set_number_of_retries(1);
            Ok(Link::Single(
                client.get_connection_manager_with_config(config).await?,
            ))
        }
    }

    /// Starts receiving a pub/sub channel.
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Link::Pending => Err(not_connected()),
            Link::Single(c) => c.subscribe(channel).await,
            Link::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    /// Stops receiving a pub/sub channel.
    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Link::Pending => Err(not_connected()),
            Link::Single(c) => c.unsubscribe(channel).await,
            Link::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }

    /// The publish command for this kind of deployment.
    pub fn publish_cmd(&self, channel: &str, payload: &str) -> Cmd {
        let mut c = match self {
            Link::Single(_) | Link::Pending => redis::cmd("PUBLISH"),
            Link::Cluster(_) => redis::cmd("SPUBLISH"),
        };
        c.arg(channel).arg(payload);
        c
    }
}

fn timed_out(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "timed out", what.to_string()))
}

fn not_connected() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "not connected to Redis yet"))
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Pending => Box::pin(async { Err(not_connected()) }),
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Pending => Box::pin(async { Err(not_connected()) }),
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Pending => 0,
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}
