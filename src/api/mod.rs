//! The REST API under `/apps/{id}/…` (PROTOCOL.md §5): authentication, then one handler per
//! endpoint. Handlers call the adapter; they hold no state of their own.

pub mod error;
pub mod event;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::auth::rest::{self, SignedRequest};
use crate::broadcast::Broadcast;
use crate::protocol::channel::{self, ChannelKind};
use crate::state::State;
pub use error::{json_response, ApiError};
use event::Info;

/// Handles a request whose path (prefix removed) starts with `/apps/`.
pub async fn handle(
    req: Request<Incoming>,
    path: &str,
    state: Arc<State>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    match serve(req, path, &state).await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => {
            match &e {
                ApiError::Unauthorized(a) => {
                    tracing::warn!(%method, path, reason = a.kind(), "REST request refused")
                }
                other => {
                    tracing::warn!(%method, path, status = other.status().as_u16(), reason = %other.message(), "REST request refused")
                }
            }
            e.response()
        }
    }
}

/// A parsed route below `/apps/{id}`.
enum Route {
    Events,
    BatchEvents,
    Channels,
    Channel(String),
    Users(String),
}

fn route(method: &Method, rest: &[&str]) -> Result<Route, ApiError> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (want, route) = match rest {
        ["events"] => (Method::POST, Route::Events),
        ["batch_events"] => (Method::POST, Route::BatchEvents),
        ["channels"] => (Method::GET, Route::Channels),
        ["channels", name] => (Method::GET, Route::Channel(decode(name))),
        ["channels", name, "users"] => (Method::GET, Route::Users(decode(name))),
        _ => return Err(ApiError::NotFound("Not found".into())),
    };
    if *method != want {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(route)
}

async fn serve(req: Request<Incoming>, path: &str, state: &State) -> Result<Value, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (app_id, rest) = match segments.as_slice() {
        ["apps", id, rest @ ..] if !rest.is_empty() => (*id, rest),
        _ => return Err(ApiError::NotFound("Not found".into())),
    };
    let app = state
        .apps
        .by_id(app_id)
        .ok_or_else(|| ApiError::NotFound(format!("Unknown app id {app_id:?}")))?;
    let route = route(req.method(), rest)?;
    let method = req.method().as_str().to_string();
    let query = rest::parse_query(req.uri().query().unwrap_or(""));
    let body = read_body(req, app.limits.max_request_body_bytes).await?;
    let signed = SignedRequest {
        method: &method,
        path,
        query: &query,
        body: &body,
    };
    rest::verify(&signed, &app.key, app.secret(), unix_now()).map_err(ApiError::Unauthorized)?;
    if !app.enabled {
        return Err(ApiError::Forbidden("Application disabled".into()));
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match route {
        Route::Events => trigger(state, &app, &body).await,
        Route::BatchEvents => batch(state, &app, &body).await,
        Route::Channels => channels(state, &app, param("filter_by_prefix"), param("info")).await,
        Route::Channel(name) => channel_info(state, &app, &name, param("info")).await,
        Route::Users(name) => users(state, &app, &name).await,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::TooLarge(format!("Request body is larger than {max} bytes"));
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "Could not read the request body: {e}"
        ))),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Invalid JSON body: {e}")))
}

fn publish(state: &State, app: &App, ev: &event::Event) {
    for ch in &ev.channels {
        state.adapter.publish(Broadcast {
            app: app.id.clone(),
            channel: ch.clone(),
            event: ev.name.clone(),
            data: ev.data.clone(),
            except: ev.except,
            user_id: None,
        });
    }
}

/// The counts asked for by `info` for one channel (attributes that do not apply are left out).
async fn counts(
    state: &State,
    app: &App,
    channel: &str,
    info: Info,
) -> Result<Map<String, Value>, ApiError> {
    let mut m = Map::new();
    if !info.any() {
        return Ok(m);
    }
    let stats = state.adapter.channel(&app.id, channel).await?;
    let presence = channel::classify(channel).is_presence();
    if info.user_count && presence {
        m.insert("user_count".into(), json!(stats.user_count));
    }
    if info.subscription_count && !presence {
        m.insert("subscription_count".into(), json!(stats.subscription_count));
    }
    Ok(m)
}

async fn trigger(state: &State, app: &App, body: &[u8]) -> Result<Value, ApiError> {
    let ev = event::validate(parse_json(body)?, &app.limits, false)?;
    publish(state, app, &ev);
    if !ev.info.any() {
        return Ok(json!({}));
    }
    let mut channels = Map::new();
    for ch in &ev.channels {
        channels.insert(
            ch.clone(),
            Value::Object(counts(state, app, ch, ev.info).await?),
        );
    }
    Ok(json!({ "channels": channels }))
}

async fn batch(state: &State, app: &App, body: &[u8]) -> Result<Value, ApiError> {
    let events = event::validate_batch(parse_json(body)?, &app.limits)?;
    for ev in &events {
        publish(state, app, ev);
    }
    if !events.iter().any(|e| e.info.any()) {
        return Ok(json!({}));
    }
    let mut out = Vec::with_capacity(events.len());
    for ev in &events {
        out.push(Value::Object(
            counts(state, app, &ev.channels[0], ev.info).await?,
        ));
    }
    Ok(json!({ "batch": out }))
}

async fn channels(
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

async fn channel_info(
    state: &State,
    app: &App,
    name: &str,
    info: Option<&str>,
) -> Result<Value, ApiError> {
    let ty = checked_channel(app, name)?;
    let (info, _) = Info::parse(info, &[])?;
    let presence = ty.kind == ChannelKind::Presence;
    if info.user_count && !presence {
        return Err(ApiError::BadRequest(
            "user_count is only available for presence channels".into(),
        ));
    }
    if info.subscription_count && presence {
        return Err(ApiError::BadRequest(
            "subscription_count is not available for presence channels".into(),
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
    Ok(Value::Object(m))
}

async fn users(state: &State, app: &App, name: &str) -> Result<Value, ApiError> {
    if checked_channel(app, name)?.kind != ChannelKind::Presence {
        return Err(ApiError::BadRequest(
            "Users are only available for presence channels".into(),
        ));
    }
    let ids = state.adapter.users(&app.id, name).await?;
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(json!({ "users": users }))
}
