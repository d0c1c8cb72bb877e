//! The query endpoints: `GET /channels`, `GET /channels/{name}`, `GET /channels/{name}/users`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::event::Info;
use super::ApiError;
use crate::app::App;
use crate::protocol::channel::{self, ChannelKind};
use crate::state::State;

pub(super) async fn channels(
    state: &State,
    app: &App,
    prefix: Option<&str>,
    info: Option<&str>,
) -> Result<Value, ApiError> {
    let (info, _) = Info::parse(info, &[])?;
    let prefix = prefix.unwrap_or("");
    if info.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::BadRequest(
            "info=user_count requires filter_by_prefix starting with presence-".into(),
        ));
    }
    let list = state.adapter.channels(&app.id, prefix).await?;
    let mut out = BTreeMap::new();
    for (name, stats) in list {
        if name.starts_with(channel::SERVER_TO_USER_PREFIX) {
            continue;
        }
        let mut m = Map::new();
        let presence = channel::classify(&name).is_presence();
        if info.user_count && presence {
            m.insert("user_count".into(), json!(stats.user_count));
        }
        if info.subscription_count {
            m.insert("subscription_count".into(), json!(stats.subscription_count));
        }
        out.insert(name, Value::Object(m));
    }
    Ok(json!({ "channels": out }))
}

fn checked_channel(app: &App, name: &str) -> Result<channel::ChannelType, ApiError> {
    channel::validate(name, app.limits.max_channel_name_len)
        .map_err(|e| ApiError::BadRequest(format!("Invalid channel name '{name}': {e}")))
}

pub(super) async fn channel_info(
    state: &State,
    app: &App,
    name: &str,
    info: Option<&str>,
) -> Result<Value, ApiError> {
    let ty = checked_channel(app, name)?;
    let (info, extra) = Info::parse(info, &["cache"])?;
    let want_cache = !extra.is_empty();
    if want_cache && !ty.cache {
        return Err(ApiError::BadRequest(
            "cache is only available for cache channels".into(),
        ));
    }
    let presence = ty.kind == ChannelKind::Presence;
    if info.user_count && !presence {
        return Err(ApiError::BadRequest(
            "user_count is only available for presence channels".into(),
        ));
    }
    let stats = state.adapter.channel(&app.id, name).await?;
    let mut m = Map::new();
    m.insert("occupied".into(), json!(stats.occupied()));
    if info.user_count {
        m.insert("user_count".into(), json!(stats.user_count));
    }
    if info.subscription_count {
        m.insert("subscription_count".into(), json!(stats.subscription_count));
    }
    if want_cache {
        let cached = state.adapter.cached(&app.id, name).await?;
        let v = cached.map_or(Value::Null, |(data, ttl)| json!({"data": data, "ttl": ttl}));
        m.insert("cache".into(), v);
    }
    Ok(Value::Object(m))
}

pub(super) async fn users(state: &State, app: &App, name: &str) -> Result<Value, ApiError> {
    if checked_channel(app, name)?.kind != ChannelKind::Presence {
        return Err(ApiError::BadRequest(
            "Users are only available for presence channels".into(),
        ));
    }
    let ids = state.adapter.users(&app.id, name).await?;
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(json!({ "users": users }))
}
