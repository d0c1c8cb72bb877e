//! The apps table in PostgreSQL or MySQL/MariaDB through sqlx: lookups by id and key, the
//! batched refresh, `app-store init`'s schema and the CLI's writes. Every call is bounded by
//! the configured timeout; rows come back as [`Row`]s for `row.rs` to map.

use std::time::Duration;

use serde_json::Value;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Column, Row as _, TypeInfo};

use super::row::Row;
use crate::config::{AppStoreConfig, StoreDriver};

/// Why the database did not answer.
#[derive(Debug)]
pub enum DbError {
    /// The URL or table could not be used at all.
    Config(String),
    /// No answer within the timeout.
    Timeout,
    /// The database answered with an error, or could not be reached.
    Query(sqlx::Error),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Config(e) => write!(f, "{e}"),
            DbError::Timeout => write!(f, "no answer from the database in time"),
            // sqlx's messages name hosts and SQL, never the password (checked by
            // app_store_cli::store_errors_do_not_show_the_password).
            DbError::Query(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DbError {}

/// A column of herald's schema and how its values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// varchar.
    Text,
    /// integer.
    Int,
    /// 0/1 in a small integer (Soketi's `tinyint(1)` / `smallint`).
    Flag,
    /// A decimal number (kilobytes).
    Real,
    /// JSON.
    Json,
}

/// herald's full schema: Soketi's columns, then herald's own (all optional). `id`, `key` and
/// `secret` are required; the rest have Soketi's defaults or are NULL (the global value).
pub const COLUMNS: &[(&str, Kind)] = &[
    ("id", Kind::Text),
    ("key", Kind::Text),
    ("secret", Kind::Text),
    ("max_connections", Kind::Int),
    ("enable_client_messages", Kind::Flag),
    ("enabled", Kind::Flag),
    ("max_backend_events_per_sec", Kind::Int),
    ("max_client_events_per_sec", Kind::Int),
    ("max_read_req_per_sec", Kind::Int),
    ("webhooks", Kind::Json),
    ("max_presence_members_per_channel", Kind::Int),
    ("max_presence_member_size_in_kb", Kind::Real),
    ("max_channel_name_length", Kind::Int),
    ("max_event_channels_at_once", Kind::Int),
    ("max_event_name_length", Kind::Int),
    ("max_event_payload_in_kb", Kind::Real),
    ("max_event_batch_size", Kind::Int),
    ("enable_user_authentication", Kind::Flag),
    ("enable_subscription_count", Kind::Flag),
    ("enable_watchlist_events", Kind::Flag),
    ("signin_timeout", Kind::Int),
    ("max_requests_per_second", Kind::Int),
    ("max_presence_user_id_len", Kind::Int),
    ("max_channels_per_connection", Kind::Int),
    ("max_watchlist_size", Kind::Int),
    ("max_request_body_bytes", Kind::Int),
    ("cache_ttl_seconds", Kind::Int),
];

/// The column a lookup goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum By {
    /// `id` (REST).
    Id,
    /// `key` (WebSocket).
    Key,
}

enum Pool {
    Pg(PgPool),
    My(MySqlPool),
}

/// The apps table of one database.
pub struct Db {
    pool: Pool,
    /// The table name, quoted for the driver.
    table: String,
    timeout: Duration,
}

/// Whether a table name is plain enough to be quoted safely (`apps`, `schema.apps`).
pub fn valid_table_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
}

impl Db {
    /// A pool that connects on first use: a database that is down at start does not stop the
    /// server (lookups fail until it is back).
    pub fn connect_lazy(c: &AppStoreConfig) -> Result<Db, DbError> {
        if !valid_table_name(&c.table) {
            return Err(DbError::Config(format!("invalid table name {:?}", c.table)));
        }
        let timeout = Duration::from_millis(c.timeout_ms);
        let quote = |q: char| {
            c.table
                .split('.')
                .map(|p| format!("{q}{p}{q}"))
                .collect::<Vec<_>>()
                .join(".")
        };
        let (pool, table) = match c.driver {
            StoreDriver::Postgres => (
                Pool::Pg(
                    PgPoolOptions::new()
                        .max_connections(c.pool_size)
                        .acquire_timeout(timeout)
                        .connect_lazy(&c.url)
                        .map_err(|e| DbError::Config(format!("url: {e}")))?,
                ),
                quote('"'),
            ),
            StoreDriver::Mysql => (
                Pool::My(
                    MySqlPoolOptions::new()
                        .max_connections(c.pool_size)
                        .acquire_timeout(timeout)
                        .connect_lazy(&c.url.replacen("mariadb://", "mysql://", 1))
                        .map_err(|e| DbError::Config(format!("url: {e}")))?,
                ),
                quote('`'),
            ),
        };
        Ok(Db {
            pool,
            table,
            timeout,
        })
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => Err(DbError::Timeout),
            Ok(Err(e)) => Err(DbError::Query(e)),
        }
    }

    /// The row with this id or key, if any (the first, should the column not be unique).
    pub async fn find(&self, by: By, value: &str) -> Result<Option<Row>, DbError> {
        match &self.pool {
            Pool::Pg(p) => {
                let col = if by == By::Id { "id" } else { "key" };
                let sql = format!(
                    "SELECT * FROM {} WHERE \"{col}\"::text = $1 LIMIT 1",
                    self.table
                );
                let r = self
                    .bounded(sqlx::query(&sql).bind(value).fetch_optional(p))
                    .await?;
                Ok(r.map(|r| pg_row(&r)))
            }
            Pool::My(p) => {
                let col = if by == By::Id { "id" } else { "key" };
                let sql = format!("SELECT * FROM {} WHERE `{col}` = ? LIMIT 1", self.table);
                let r = self
                    .bounded(sqlx::query(&sql).bind(value).fetch_optional(p))
                    .await?;
                Ok(r.map(|r| my_row(&r)))
            }
        }
    }

    /// The rows of these ids, in one query per 500.
    pub async fn find_ids(&self, ids: &[String]) -> Result<Vec<Row>, DbError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            match &self.pool {
                Pool::Pg(p) => {
                    let sql = format!("SELECT * FROM {} WHERE \"id\"::text = ANY($1)", self.table);
                    let rows = self
                        .bounded(sqlx::query(&sql).bind(chunk).fetch_all(p))
                        .await?;
                    out.extend(rows.iter().map(pg_row));
                }
                Pool::My(p) => {
                    let marks = vec!["?"; chunk.len()].join(",");
                    let sql = format!("SELECT * FROM {} WHERE `id` IN ({marks})", self.table);
                    let mut q = sqlx::query(&sql);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    let rows = self.bounded(q.fetch_all(p)).await?;
                    out.extend(rows.iter().map(my_row));
                }
            }
        }
        Ok(out)
    }

    /// Whether the database answers at all.
    pub async fn ping(&self) -> Result<(), DbError> {
        match &self.pool {
            Pool::Pg(p) => self
                .bounded(sqlx::query("SELECT 1").execute(p))
                .await
                .map(|_| ())?,
            Pool::My(p) => self
                .bounded(sqlx::query("SELECT 1").execute(p))
                .await
                .map(|_| ())?,
        }
        Ok(())
    }

    /// Every row, ordered by id (the CLI's `list`).
    pub async fn all(&self) -> Result<Vec<Row>, DbError> {
        match &self.pool {
            Pool::Pg(p) => {
                let sql = format!("SELECT * FROM {} ORDER BY \"id\"", self.table);
                let rows = self.bounded(sqlx::query(&sql).fetch_all(p)).await?;
                Ok(rows.iter().map(pg_row).collect())
            }
            Pool::My(p) => {
                let sql = format!("SELECT * FROM {} ORDER BY `id`", self.table);
                let rows = self.bounded(sqlx::query(&sql).fetch_all(p)).await?;
                Ok(rows.iter().map(my_row).collect())
            }
        }
    }

    /// Creates the table with herald's full schema unless it exists.
    pub async fn init(&self) -> Result<(), DbError> {
        let pg = matches!(self.pool, Pool::Pg(_));
        let cols: Vec<String> = COLUMNS
            .iter()
            .map(|(name, kind)| {
                let ty = match (kind, pg) {
                    (Kind::Text, _) => "varchar(255)",
                    (Kind::Int, _) => "integer",
                    (Kind::Flag, true) => "smallint",
                    (Kind::Flag, false) => "tinyint(1)",
                    (Kind::Real, true) => "real",
                    (Kind::Real, false) => "double",
                    (Kind::Json, _) => "json",
                };
                let extra = match *name {
                    "id" => " NOT NULL PRIMARY KEY",
                    "key" => " NOT NULL UNIQUE",
                    "secret" => " NOT NULL",
                    "max_connections"
                    | "max_backend_events_per_sec"
                    | "max_client_events_per_sec"
                    | "max_read_req_per_sec" => " NOT NULL DEFAULT -1",
                    "enable_client_messages" => " NOT NULL DEFAULT 0",
                    "enabled" => " NOT NULL DEFAULT 1",
                    _ => "",
                };
                let q = if pg { '"' } else { '`' };
                format!("{q}{name}{q} {ty}{extra}")
            })
            .collect();
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.table,
            cols.join(", ")
        );
        self.execute(&sql, &[]).await.map(|_| ())
    }

    /// Inserts a row with these columns (names from [`COLUMNS`]).
    pub async fn insert(&self, values: &[(&str, String)]) -> Result<(), DbError> {
        let names: Vec<String> = values.iter().map(|(n, _)| self.quote(n)).collect();
        let marks: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, (n, _))| self.mark(i + 1, n))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.table,
            names.join(", "),
            marks.join(", ")
        );
        self.execute(&sql, values).await.map(|_| ())
    }

    /// Sets columns of the row with this id; false when there is none.
    pub async fn update(&self, id: &str, values: &[(&str, String)]) -> Result<bool, DbError> {
        let sets: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, (n, _))| format!("{} = {}", self.quote(n), self.mark(i + 1, n)))
            .collect();
        let id_mark = self.mark(values.len() + 1, "id");
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = {id_mark}",
            self.table,
            sets.join(", "),
            self.quote("id")
        );
        let mut all = values.to_vec();
        all.push(("id", id.to_string()));
        self.execute(&sql, &all).await.map(|n| n > 0)
    }

    /// Deletes the row with this id; false when there is none.
    pub async fn delete(&self, id: &str) -> Result<bool, DbError> {
        let sql = format!(
            "DELETE FROM {} WHERE {} = {}",
            self.table,
            self.quote("id"),
            self.mark(1, "id")
        );
        self.execute(&sql, &[("id", id.to_string())])
            .await
            .map(|n| n > 0)
    }

    fn quote(&self, name: &str) -> String {
        match self.pool {
            Pool::Pg(_) => format!("\"{name}\""),
            Pool::My(_) => format!("`{name}`"),
        }
    }

    /// The placeholder for the `i`th value, cast to the column's type (values are bound as
    /// text so one code path serves every column).
    fn mark(&self, i: usize, column: &str) -> String {
        let kind = COLUMNS
            .iter()
            .find(|(n, _)| *n == column)
            .map_or(Kind::Text, |(_, k)| *k);
        match (&self.pool, kind) {
            (Pool::Pg(_), Kind::Text) => format!("${i}"),
            (Pool::Pg(_), Kind::Int) => format!("CAST(${i} AS integer)"),
            (Pool::Pg(_), Kind::Flag) => format!("CAST(${i} AS smallint)"),
            (Pool::Pg(_), Kind::Real) => format!("CAST(${i} AS real)"),
            (Pool::Pg(_), Kind::Json) => format!("CAST(${i} AS json)"),
            (Pool::My(_), _) => "?".into(),
        }
    }

    /// Runs a statement with text parameters (`"NULL"`-free: callers bind real values only);
    /// returns the rows affected.
    async fn execute(&self, sql: &str, values: &[(&str, String)]) -> Result<u64, DbError> {
        match &self.pool {
            Pool::Pg(p) => {
                let mut q = sqlx::query(sql);
                for (_, v) in values {
                    q = q.bind(v);
                }
                Ok(self.bounded(q.execute(p)).await?.rows_affected())
            }
            Pool::My(p) => {
                let mut q = sqlx::query(sql);
                for (_, v) in values {
                    q = q.bind(v);
                }
                Ok(self.bounded(q.execute(p)).await?.rows_affected())
            }
        }
    }
}

/// Tries the decodings a column may have, in order; the first that fits gives the value.
macro_rules! decode {
    ($row:expr, $i:expr, $($t:ty => $to:expr),+ $(,)?) => {{
        let mut out = None;
        $(
            if out.is_none() {
                if let Ok(v) = $row.try_get::<Option<$t>, _>($i) {
                    out = Some(v.map($to).unwrap_or(Value::Null));
                }
            }
        )+
        out
    }};
}

fn pg_row(r: &PgRow) -> Row {
    let mut row = Row::default();
    for (i, col) in r.columns().iter().enumerate() {
        let v = decode!(r, i,
            bool => Value::from,
            i16 => Value::from,
            i32 => Value::from,
            i64 => Value::from,
            f32 => |f: f32| Value::from(f64::from(f)),
            f64 => Value::from,
            String => Value::from,
            Value => |v: Value| v,
        );
        put(&mut row, col.name(), col.type_info().name(), v);
    }
    row
}

fn my_row(r: &MySqlRow) -> Row {
    let mut row = Row::default();
    for (i, col) in r.columns().iter().enumerate() {
        let v = decode!(r, i,
            i64 => Value::from,
            u64 => Value::from,
            bool => Value::from,
            f64 => Value::from,
            f32 => |f: f32| Value::from(f64::from(f)),
            String => Value::from,
            Value => |v: Value| v,
            Vec<u8> => |b: Vec<u8>| String::from_utf8(b).map_or(Value::Null, Value::from),
        );
        put(&mut row, col.name(), col.type_info().name(), v);
    }
    row
}

fn put(row: &mut Row, name: &str, ty: &str, v: Option<Value>) {
    match v {
        Some(v) => {
            row.values.insert(name.to_string(), v);
        }
        None => {
            row.unsupported.insert(name.to_string(), ty.to_string());
        }
    }
}
