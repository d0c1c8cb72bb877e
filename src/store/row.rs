//! One row of the apps table into an [`AppConfig`]: Soketi's columns in snake_case or camelCase
//! with Soketi's meaning of `-1`, `0` and `NULL`, plus herald's own optional columns. Pure: the
//! database layer hands over the row as column name → JSON value.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{AppConfig, Limits, LimitsOverride, WebhookConfig};

/// A row as read: column name → value (`Null` for SQL `NULL`), and columns of a type herald
/// cannot read (their SQL type name), which make the row bad only if a known setting is in them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Readable columns.
    pub values: BTreeMap<String, Value>,
    /// Columns of an unsupported SQL type → the type's name.
    pub unsupported: BTreeMap<String, String>,
}

/// Why a row cannot be an app; logged with the row's id or key, and the app is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow(pub String);

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Column names are matched ignoring case and underscores, so `max_connections`,
/// `maxConnections` and `MaxConnections` are one column.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Looks settings up by their names (several spellings per setting).
struct Columns<'a> {
    values: BTreeMap<String, (&'a str, &'a Value)>,
    unsupported: BTreeMap<String, (&'a str, &'a str)>,
}

impl<'a> Columns<'a> {
    fn new(row: &'a Row) -> Columns<'a> {
        Columns {
            values: row
                .values
                .iter()
                .map(|(k, v)| (normalize(k), (k.as_str(), v)))
                .collect(),
            unsupported: row
                .unsupported
                .iter()
                .map(|(k, t)| (normalize(k), (k.as_str(), t.as_str())))
                .collect(),
        }
    }

    /// The first non-null value among `names` (`NULL` and `''` count as not set, as in Soketi),
    /// with the column's name for messages.
    fn get(&self, names: &[&str]) -> Result<Option<(&'a str, &'a Value)>, BadRow> {
        for n in names {
            let n = normalize(n);
            if let Some((col, ty)) = self.unsupported.get(&n) {
                return Err(BadRow(format!("column {col}: unsupported SQL type {ty}")));
            }
            match self.values.get(&n) {
                None | Some((_, Value::Null)) => {}
                Some((_, Value::String(s))) if s.is_empty() => {}
                Some(found) => return Ok(Some(*found)),
            }
        }
        Ok(None)
    }

    fn string(&self, names: &[&str]) -> Result<Option<String>, BadRow> {
        Ok(match self.get(names)? {
            None => None,
            Some((_, Value::String(s))) => Some(s.clone()),
            // Integer ids (`id integer`) are fine: ids and keys are compared as text.
            Some((_, Value::Number(n))) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            Some((col, v)) => return Err(wrong(col, "text", v)),
        })
    }

    fn required(&self, names: &[&str]) -> Result<String, BadRow> {
        self.string(names)?
            .ok_or_else(|| BadRow(format!("column {} is missing or empty", names[0])))
    }

    /// Booleans: `true`/`false`, integers 0/1 (MySQL `tinyint(1)`, PostgreSQL `smallint`),
    /// or the strings "0", "1", "true", "false".
    fn bool(&self, names: &[&str]) -> Result<Option<bool>, BadRow> {
        Ok(match self.get(names)? {
            None => None,
            Some((_, Value::Bool(b))) => Some(*b),
            Some((col, v @ Value::Number(n))) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => return Err(wrong(col, "a boolean (0 or 1)", v)),
            },
            Some((col, v @ Value::String(s))) => match s.as_str() {
                "0" | "false" => Some(false),
                "1" | "true" => Some(true),
                _ => return Err(wrong(col, "a boolean (0 or 1)", v)),
            },
            Some((col, v)) => return Err(wrong(col, "a boolean (0 or 1)", v)),
        })
    }

    /// Numbers (integer or decimal, or text holding one, as Soketi's `parseInt` accepts).
    fn number(&self, names: &[&str]) -> Result<Option<f64>, BadRow> {
        Ok(match self.get(names)? {
            None => None,
            Some((col, v @ Value::Number(n))) => {
                Some(n.as_f64().ok_or_else(|| wrong(col, "a number", v))?)
            }
            Some((col, v @ Value::String(s))) => Some(
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| wrong(col, "a number", v))?,
            ),
            Some((col, v)) => return Err(wrong(col, "a number", v)),
        })
    }

    /// A count where Soketi's `-1` (any negative) and `NULL` mean "no value here".
    fn positive(&self, names: &[&str]) -> Result<Option<f64>, BadRow> {
        Ok(self.number(names)?.filter(|n| *n > 0.0))
    }
}

fn wrong(col: &str, want: &str, got: &Value) -> BadRow {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    BadRow(format!("column {col}: expected {want}, found {kind}"))
}

fn to_usize(n: f64) -> usize {
    // Saturating float → integer: huge values mean "practically unlimited".
    n.round().min(usize::MAX as f64) as usize
}

fn to_u32(n: f64) -> u32 {
    n.round().min(f64::from(u32::MAX)) as u32
}

fn kb(n: f64) -> usize {
    to_usize(n * 1024.0)
}

/// Names of each setting: Soketi's snake_case and camelCase first, then herald's own.
mod names {
    pub const ID: &[&str] = &["id", "AppId"];
    pub const KEY: &[&str] = &["key", "AppKey"];
    pub const SECRET: &[&str] = &["secret", "AppSecret"];
    pub const ENABLED: &[&str] = &["enabled"];
    pub const CLIENT_MESSAGES: &[&str] = &["enable_client_messages"];
    pub const MAX_CONNECTIONS: &[&str] = &["max_connections"];
    pub const BACKEND_EVENTS: &[&str] =
        &["max_backend_events_per_sec", "maxBackendEventsPerSecond"];
    pub const READ_REQUESTS: &[&str] = &["max_read_req_per_sec", "maxReadRequestsPerSecond"];
    pub const CLIENT_EVENTS: &[&str] = &["max_client_events_per_sec", "maxClientEventsPerSecond"];
    pub const WEBHOOKS: &[&str] = &["webhooks"];
    pub const PRESENCE_MEMBERS: &[&str] = &["max_presence_members_per_channel"];
    pub const PRESENCE_MEMBER_KB: &[&str] = &["max_presence_member_size_in_kb"];
    pub const CHANNEL_NAME: &[&str] = &["max_channel_name_length"];
    pub const EVENT_CHANNELS: &[&str] = &["max_event_channels_at_once"];
    pub const EVENT_NAME: &[&str] = &["max_event_name_length"];
    pub const PAYLOAD_KB: &[&str] = &["max_event_payload_in_kb"];
    pub const BATCH: &[&str] = &["max_event_batch_size"];
    pub const USER_AUTH: &[&str] = &["enable_user_authentication"];
}

/// Seconds a connection of an app with `enable_user_authentication` has to sign in when the
/// row has no `signin_timeout` (Soketi's default user authentication timeout).
pub const DEFAULT_SIGNIN_TIMEOUT: u64 = 30;

/// Maps a row to an app. Soketi's rules: `NULL` or `''` is "not set" (herald's default);
/// `max_connections` below 0 is unlimited and 0 admits nobody; the rate columns below 1 are
/// unlimited; limit columns below 1 fall back to the global `[limits]`; herald's own column
/// for a setting wins over Soketi's. The result still has to pass
/// [`crate::config::app_problems`].
pub fn app_config(row: &Row) -> Result<AppConfig, BadRow> {
    let c = Columns::new(row);
    let id = c.required(names::ID)?;
    let key = c.required(names::KEY)?;
    let secret = c.required(names::SECRET)?;
    let max_connections = c
        .number(names::MAX_CONNECTIONS)?
        .filter(|n| *n >= 0.0)
        .map(to_usize);
    // herald has one REST rate per app: the stricter of Soketi's two, or herald's own column.
    let rest_rate = [names::BACKEND_EVENTS, names::READ_REQUESTS]
        .iter()
        .map(|n| c.positive(n))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .map(|n| to_u32(n).max(1))
        .min();
    let max_requests_per_second = c
        .positive(&["max_requests_per_second"])?
        .map(|n| to_u32(n).max(1))
        .or(rest_rate);
    let user_auth = c.bool(names::USER_AUTH)?.unwrap_or(false);
    let signin_timeout = match c.positive(&["signin_timeout"])? {
        Some(s) => Some(s.round() as u64),
        None if user_auth => Some(DEFAULT_SIGNIN_TIMEOUT),
        None => None,
    };
    let client_events = c.number(names::CLIENT_EVENTS)?;
    let limits = LimitsOverride {
        max_event_data_bytes: pick(&c, "max_event_data_bytes", names::PAYLOAD_KB, kb)?,
        max_channels_per_trigger: pick(
            &c,
            "max_channels_per_trigger",
            names::EVENT_CHANNELS,
            to_usize,
        )?,
        max_batch_events: pick(&c, "max_batch_events", names::BATCH, to_usize)?,
        max_channel_name_len: pick(&c, "max_channel_name_len", names::CHANNEL_NAME, to_usize)?,
        max_event_name_len: pick(&c, "max_event_name_len", names::EVENT_NAME, to_usize)?,
        max_presence_members: pick(
            &c,
            "max_presence_members",
            names::PRESENCE_MEMBERS,
            to_usize,
        )?,
        max_presence_user_info_bytes: pick(
            &c,
            "max_presence_user_info_bytes",
            names::PRESENCE_MEMBER_KB,
            kb,
        )?,
        max_presence_user_id_len: c.positive(&["max_presence_user_id_len"])?.map(to_usize),
        // Soketi: -1 is no limit (herald: the highest rate), 0 and NULL the server default.
        client_events_per_second: match c.positive(&["client_events_per_second"])? {
            Some(n) => Some(to_u32(n).max(1)),
            None => match client_events {
                Some(n) if n < 0.0 => Some(u32::MAX),
                Some(n) if n >= 1.0 => Some(to_u32(n)),
                _ => None,
            },
        },
        max_request_body_bytes: c.positive(&["max_request_body_bytes"])?.map(to_usize),
        // 0 is meaningful here (no cap), so it is read as given.
        max_channels_per_connection: c
            .number(&["max_channels_per_connection"])?
            .filter(|n| *n >= 0.0)
            .map(to_usize),
        max_watchlist_size: c.positive(&["max_watchlist_size"])?.map(to_usize),
        cache_ttl_seconds: c
            .positive(&["cache_ttl_seconds"])?
            .map(|n| n.round() as u64),
    };
    Ok(AppConfig {
        id,
        key,
        secret,
        enabled: c.bool(names::ENABLED)?.unwrap_or(true),
        enable_client_messages: c.bool(names::CLIENT_MESSAGES)?.unwrap_or(false),
        max_connections,
        max_requests_per_second,
        enable_subscription_count: c.bool(&["enable_subscription_count"])?.unwrap_or(false),
        enable_watchlist_events: c.bool(&["enable_watchlist_events"])?.unwrap_or(false),
        signin_timeout,
        limits,
        webhooks: webhooks(&c)?,
    })
}

/// herald's own column (`ours`, in herald's unit) if set, else Soketi's (`theirs`, converted).
fn pick(
    c: &Columns,
    ours: &str,
    theirs: &[&str],
    convert: fn(f64) -> usize,
) -> Result<Option<usize>, BadRow> {
    Ok(match c.positive(&[ours])? {
        Some(n) => Some(to_usize(n)),
        None => c.positive(theirs)?.map(convert),
    })
}

/// The `webhooks` JSON column: Soketi's `[{"url", "event_types", "headers", "filter":
/// {"channel_name_starts_with"}}]`, plus herald's `batch_ms` and `batch_max`. A receiver
/// herald cannot honour (AWS Lambda, an `ends_with` filter) makes the row bad rather than
/// being silently dropped or sent more than it asked for.
fn webhooks(c: &Columns) -> Result<Vec<WebhookConfig>, BadRow> {
    let parsed;
    let list = match c.get(names::WEBHOOKS)? {
        None => return Ok(Vec::new()),
        Some((_, Value::Array(a))) => a,
        Some((col, Value::String(s))) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| BadRow(format!("column {col}: invalid JSON: {e}")))?;
            match &parsed {
                Value::Array(a) => a,
                v => return Err(wrong(col, "a JSON array", v)),
            }
        }
        Some((col, v)) => return Err(wrong(col, "a JSON array", v)),
    };
    list.iter()
        .enumerate()
        .map(|(i, w)| webhook(i + 1, w))
        .collect()
}

fn webhook(n: usize, w: &Value) -> Result<WebhookConfig, BadRow> {
    let bad = |m: &str| BadRow(format!("webhooks[{n}]: {m}"));
    let obj = w.as_object().ok_or_else(|| bad("must be an object"))?;
    if obj.contains_key("lambda_function") || obj.contains_key("lambda") {
        return Err(bad("AWS Lambda receivers are not supported: use a url"));
    }
    let url = obj
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("url is missing"))?
        .to_string();
    let strings = |v: Option<&Value>, what: &str| -> Result<Vec<String>, BadRow> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(&format!("{what} must be strings")))
                })
                .collect(),
            Some(_) => Err(bad(&format!("{what} must be an array"))),
        }
    };
    let events = strings(obj.get("event_types"), "event_types")?;
    let mut channel_prefix = String::new();
    match obj.get("filter") {
        None | Some(Value::Null) => {}
        Some(Value::Object(f)) => {
            for (k, v) in f {
                match (k.as_str(), v) {
                    ("channel_name_starts_with", Value::String(p)) => channel_prefix = p.clone(),
                    (_, Value::Null) => {}
                    ("channel_name_ends_with", _) => {
                        return Err(bad("filter channel_name_ends_with is not supported"))
                    }
                    _ => return Err(bad(&format!("unknown filter {k:?}"))),
                }
            }
        }
        Some(_) => return Err(bad("filter must be an object")),
    }
    let mut headers = BTreeMap::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let v = v
                    .as_str()
                    .ok_or_else(|| bad(&format!("header {k:?} must be a string")))?;
                headers.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return Err(bad("headers must be an object")),
    }
    let int = |name: &str, default: u64| -> Result<u64, BadRow> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(&format!("{name} must be a whole number"))),
        }
    };
    Ok(WebhookConfig {
        url,
        events,
        channel_prefix,
        headers,
        batch_ms: int("batch_ms", 0)?,
        batch_max: usize::try_from(int("batch_max", 100)?).unwrap_or(usize::MAX),
    })
}

/// Maps and checks a row: the app, or why it is refused.
pub fn app(row: &Row, global: &Limits) -> Result<AppConfig, BadRow> {
    let a = app_config(row)?;
    let problems = crate::config::app_problems(&a, global);
    if problems.is_empty() {
        Ok(a)
    } else {
        Err(BadRow(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests;
