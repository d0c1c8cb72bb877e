//! The REST API under `/apps/{id}/…` (PROTOCOL.md §5): authentication, then one handler per
//! endpoint. Handlers call the adapter; they hold no state of their own.

pub mod error;
pub mod event;
mod queries;
mod trigger;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::app::{App, Lookup};
use crate::auth::rest::{self, SignedRequest};
use crate::state::State;
pub use error::{json_response, ApiError};

/// Handles a request whose path (prefix removed) starts with `/apps/` (or `/users/`, the
/// pusher-http-python terminate path).
pub async fn handle(
    req: Request<Incoming>,
    path: &str,
    state: Arc<State>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let endpoint = endpoint_label(path);
    let response = match serve(req, path, &state).await {
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
    };
    state
        .metrics
        .rest(endpoint, response.status().as_u16(), started.elapsed());
    response
}

/// A bounded label for metrics (never the app id or channel name).
fn endpoint_label(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["apps", _, "events"] => "events",
        ["apps", _, "batch_events"] => "batch_events",
        ["apps", _, "channels"] => "channels",
        ["apps", _, "channels", _] => "channel",
        ["apps", _, "channels", _, "users"] => "users",
        ["apps", _, "users", _, "terminate_connections"]
        | ["users", _, "terminate_connections"] => "terminate_connections",
        _ => "other",
    }
}

/// A parsed route below `/apps/{id}`.
enum Route {
    Events,
    BatchEvents,
    Channels,
    Channel(String),
    Users(String),
    Terminate(String),
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
        ["users", uid, "terminate_connections"] => (Method::POST, Route::Terminate(decode(uid))),
        _ => return Err(ApiError::NotFound("Not found".into())),
    };
    if *method != want {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(route)
}

/// A lookup's app; `None` when there is no such app, an error when the store cannot say.
fn found(l: Lookup) -> Option<Result<Arc<App>, ApiError>> {
    match l {
        Lookup::Found(app) => Some(Ok(app)),
        Lookup::Unknown => None,
        Lookup::Unavailable | Lookup::Busy => Some(Err(ApiError::StoreUnavailable)),
    }
}

async fn serve(req: Request<Incoming>, path: &str, state: &State) -> Result<Value, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let query = rest::parse_query(req.uri().query().unwrap_or(""));
    let (app, rest) = match segments.as_slice() {
        ["apps", id, rest @ ..] if !rest.is_empty() => {
            let app = found(state.apps.find_by_id(id).await)
                .ok_or_else(|| ApiError::NotFound(format!("Unknown app id {id:?}")))??;
            (app, rest)
        }
        // pusher-http-python calls terminate_connections without `/apps/{id}`: find the app
        // by its key.
        ["users", _, "terminate_connections"] => {
            let lookup = match rest::auth_key(&query) {
                Some(k) => state.apps.find_by_key(k).await,
                None => Lookup::Unknown,
            };
            let app =
                found(lookup).ok_or(ApiError::Unauthorized(rest::RestAuthError::UnknownKey))??;
            (app, &segments[..])
        }
        _ => return Err(ApiError::NotFound("Not found".into())),
    };
    let route = route(req.method(), rest)?;
    let method = req.method().as_str().to_string();
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
    // Counted after authentication, so strangers cannot spend an app's quota.
    if let Some(limiter) = &app.rest_limiter {
        if let Err(not_until) = limiter.check() {
            let now = governor::clock::Clock::now(limiter.clock());
            let wait = not_until.wait_time_from(now);
            return Err(ApiError::TooManyRequests(wait.as_secs().max(1)));
        }
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match route {
        Route::Events => trigger::trigger(state, &app, &body).await,
        Route::BatchEvents => trigger::batch(state, &app, &body).await,
        Route::Channels => {
            queries::channels(state, &app, param("filter_by_prefix"), param("info")).await
        }
        Route::Channel(name) => queries::channel_info(state, &app, &name, param("info")).await,
        Route::Users(name) => queries::users(state, &app, &name).await,
        Route::Terminate(user) => {
            state.adapter.terminate_user(&app.id, &user).await?;
            Ok(json!({}))
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, ApiError> {
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

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Invalid JSON body: {e}")))
}
