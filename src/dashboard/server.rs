//! The dashboard's listener: HTTP Basic authentication on every route, the embedded page, JSON
//! endpoints for counts, channels (cluster-wide through the adapter) and the cluster panel with
//! the charts' points, a server-sent event stream of this node's events, and a form endpoint
//! that publishes through the normal path.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broadcast::Broadcast;
use crate::protocol::channel;
use crate::state::State;

type Body = BoxBody<Bytes, Infallible>;

const PAGE: &str = include_str!("index.html");

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_reply(status: StatusCode, v: &Value) -> Response<Body> {
    full(status, "application/json", v.to_string())
}

fn unauthorized() -> Response<Body> {
    let mut r = json_reply(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "authentication required"}),
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"herald dashboard\""),
    );
    r
}

/// Decodes `Basic base64(user:password)`.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?.trim();
    let decoded =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Constant-time check of the Basic credentials.
fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let d = &state.config.dashboard;
    let Some((user, password)) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(basic_credentials)
    else {
        return false;
    };
    let given = crate::auth::sign(&password, b"herald-dashboard");
    let password_ok = crate::auth::signature_matches(&d.password, b"herald-dashboard", &given);
    password_ok && user == d.user
}

/// Serves the dashboard until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            _ = crate::state::shutdown_started(&mut shutdown) => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, state).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    if !authorized(&state, &req) {
        return unauthorized();
    }
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, []) => full(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::GET, ["api", "apps"]) => {
            let mut ids: Vec<String> = state.config.apps.iter().map(|a| a.id.clone()).collect();
            ids.sort();
            json_reply(
                StatusCode::OK,
                &json!({"node": state.dashboard.node(), "apps": ids}),
            )
        }
        (&Method::GET, ["api", "cluster"]) => cluster(&state).await,
        (&Method::GET, ["api", "apps", app, "stats"]) => stats(&state, app).await,
        (&Method::GET, ["api", "apps", app, "channels"]) => channels(&state, app).await,
        (&Method::GET, ["api", "apps", app, "events"]) => events(&state, app),
        (&Method::POST, ["api", "apps", app, "events"]) => {
            let app = app.to_string();
            send(req, &state, &app).await
        }
        _ => json_reply(StatusCode::NOT_FOUND, &json!({"error": "Not found"})),
    }
}

async fn stats(state: &State, app: &str) -> Response<Body> {
    if state.apps.by_id(app).is_none() {
        return json_reply(StatusCode::NOT_FOUND, &json!({"error": "Unknown app"}));
    }
    // The same channels as the list: `#server-to-user-` channels are internal.
    let channels = state
        .adapter
        .channels(app, "")
        .await
        .map(|c| {
            c.iter()
                .filter(|(n, _)| !n.starts_with(channel::SERVER_TO_USER_PREFIX))
                .count()
        })
        .ok();
    let m = &state.metrics;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    json_reply(
        StatusCode::OK,
        &json!({
            "node": state.dashboard.node(),
            "connections": state.adapter.connections(app).await.ok(),
            "channels": channels,
            "messages_in_total": get(&m.messages_in),
            "messages_out_total": get(&m.messages_out),
        }),
    )
}

/// Every node and the chart points (this node's, the others' as they shared them, summed).
async fn cluster(state: &State) -> Response<Body> {
    let this = super::history::node_view(state);
    let members = match state.adapter.members().await {
        Ok(m) => m,
        // The panel still shows this node (with its view of Redis: down).
        Err(e) => {
            tracing::debug!(error = %e, "cluster members not read");
            Some(Vec::new())
        }
    };
    let view = super::cluster::assemble(this, members, state.config.redis.node_timeout_ms);
    match serde_json::to_value(&view) {
        Ok(v) => json_reply(StatusCode::OK, &v),
        Err(e) => json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": e.to_string()}),
        ),
    }
}

async fn channels(state: &State, app: &str) -> Response<Body> {
    if state.apps.by_id(app).is_none() {
        return json_reply(StatusCode::NOT_FOUND, &json!({"error": "Unknown app"}));
    }
    match state.adapter.channels(app, "").await {
        Ok(mut list) => {
            list.sort_by(|a, b| a.0.cmp(&b.0));
            let items: Vec<Value> = list
                .into_iter()
                .filter(|(n, _)| !n.starts_with(channel::SERVER_TO_USER_PREFIX))
                .map(|(name, s)| {
                    let presence = channel::classify(&name).is_presence();
                    json!({"name": name, "subscription_count": s.subscription_count, "user_count": presence.then_some(s.user_count)})
                })
                .collect();
            json_reply(StatusCode::OK, &json!({"channels": items}))
        }
        Err(e) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": e.to_string()}),
        ),
    }
}

/// Server-sent events of this node, for one app.
fn events(state: &State, app: &str) -> Response<Body> {
    let rx = state.dashboard.subscribe();
    let app = app.to_string();
    let node = state.dashboard.node();
    let hello = Bytes::from(format!(": herald node {}\n\n", state.dashboard.node()));
    let stream =
        futures_util::stream::once(async move { Ok::<_, Infallible>(Frame::data(hello)) }).chain(
            futures_util::stream::unfold((rx, app), move |(mut rx, app)| async move {
                loop {
                    match rx.recv().await {
                        Ok(e) if e.app == app => {
                            let line = format!(
                                "data: {}\n\n",
                                serde_json::to_string(&*e).unwrap_or_default()
                            );
                            return Some((Ok(Frame::data(Bytes::from(line))), (rx, app)));
                        }
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let lagged = json!({
                                "node": node,
                                "time_ms": now_ms(),
                                "app": app,
                                "kind": "lagged",
                                "detail": format!("{n} events skipped"),
                            });
                            let line = format!("data: {lagged}\n\n");
                            return Some((Ok(Frame::data(Bytes::from(line))), (rx, app)));
                        }
                        Err(_) => return None,
                    }
                }
            }),
        );
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The test-event form: publishes through the same path as the REST API.
async fn send(req: Request<Incoming>, state: &State, app: &str) -> Response<Body> {
    let Some(found) = state.apps.by_id(app) else {
        return json_reply(StatusCode::NOT_FOUND, &json!({"error": "Unknown app"}));
    };
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": "body too large"}),
            )
        }
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return json_reply(StatusCode::BAD_REQUEST, &json!({"error": "invalid JSON"}));
    };
    let (Some(channel_name), Some(event)) = (v["channel"].as_str(), v["event"].as_str()) else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": "channel and event are required"}),
        );
    };
    let data = match &v["data"] {
        Value::String(s) => s.clone(),
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    };
    if let Err(e) = channel::validate(channel_name, found.limits.max_channel_name_len) {
        return json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": format!("Invalid channel name: {e}")}),
        );
    }
    if event.is_empty()
        || event.starts_with("pusher")
        || data.len() > found.limits.max_event_data_bytes
    {
        return json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid event name or data too large"}),
        );
    }
    state.dashboard.emit(app, "api_message", |e| {
        e.channel = Some(channel_name.to_string());
        e.event = Some(event.to_string());
        e.detail = Some(format!("from the dashboard: {data}"));
    });
    state.adapter.publish(Broadcast {
        app: app.to_string(),
        channel: channel_name.to_string(),
        event: event.to_string(),
        data,
        except: None,
        user_id: None,
        cache_ttl: channel::classify(channel_name)
            .cache
            .then(|| Duration::from_secs(found.limits.cache_ttl_seconds)),
    });
    json_reply(StatusCode::OK, &json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_header() {
        assert_eq!(
            basic_credentials("Basic YWRtaW46czNjcjN0"),
            Some(("admin".into(), "s3cr3t".into()))
        );
        assert_eq!(
            basic_credentials("Basic YTpi"),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic ###"), None);
    }
}
