//! `POST /events` and `POST /batch_events`: validate, publish through the adapter, report counts.

use serde_json::{json, Map, Value};

use super::event::{self, Info};
use super::{parse_json, ApiError};
use crate::app::App;
use crate::broadcast::Broadcast;
use crate::protocol::channel;
use crate::state::State;

fn publish(state: &State, app: &App, ev: &event::Event) {
    let cache_ttl = std::time::Duration::from_secs(app.limits.cache_ttl_seconds);
    let n = ev.channels.len() as u64;
    state
        .metrics
        .broadcasts_rest
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    state
        .metrics
        .app(&app.id)
        .api_messages
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    for ch in &ev.channels {
        state.dashboard.emit(&app.id, "api_message", |e| {
            e.channel = Some(ch.clone());
            e.event = Some(ev.name.clone());
            e.detail = Some(ev.data.clone());
        });
        state.adapter.publish(Broadcast {
            app: app.id.clone(),
            channel: ch.clone(),
            event: ev.name.clone(),
            data: ev.data.clone(),
            except: ev.except,
            user_id: None,
            // Only REST events are cached, never client events.
            cache_ttl: channel::classify(ch).cache.then_some(cache_ttl),
        });
    }
}

/// The counts asked for by `info` for one channel (`user_count` only for presence channels).
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
    // Presence channels too (PROTOCOL.md §13 item 4): the number of subscribed connections.
    if info.subscription_count {
        m.insert("subscription_count".into(), json!(stats.subscription_count));
    }
    Ok(m)
}

pub(super) async fn trigger(state: &State, app: &App, body: &[u8]) -> Result<Value, ApiError> {
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

pub(super) async fn batch(state: &State, app: &App, body: &[u8]) -> Result<Value, ApiError> {
    let events = event::validate_batch(parse_json(body)?, &app.limits)?;
    for ev in &events {
        publish(state, app, ev);
    }
    if !events.iter().any(|e| e.info.any()) {
        return Ok(json!({}));
    }
    let mut out = Vec::with_capacity(events.len());
    for ev in &events {
        // A batch event has exactly one channel (validated).
        let counted = match ev.channels.first() {
            Some(ch) => counts(state, app, ch, ev.info).await?,
            None => Map::new(),
        };
        out.push(Value::Object(counted));
    }
    Ok(json!({ "batch": out }))
}
