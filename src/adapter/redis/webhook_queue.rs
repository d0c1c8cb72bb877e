//! Durable webhooks: entries waiting for delivery live in a Redis stream read through one
//! consumer group, so any live node delivers them and a node that dies mid-retry is taken over
//! (its entries idle longer than a node timeout are claimed by another).

use redis::Value as RValue;

use super::Inner;

/// The consumer group every node reads the webhook stream through.
const GROUP: &str = "herald";
/// Most entries taken per call.
const TAKE: usize = 256;

impl Inner {
    /// Creates the stream and its group if missing (an existing group is fine).
    async fn ensure_group(&self) {
        let mut link = self.link();
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.names.webhooks())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut link)
            .await;
        if let Err(e) = r {
            if e.code() != Some("BUSYGROUP") {
                tracing::debug!(error = %e, "webhook stream group not created");
            }
        }
    }

    pub(super) async fn queue_webhooks(&self, entries: &[String]) -> bool {
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("XADD")
                .arg(self.names.webhooks())
                .arg("*")
                .arg("e")
                .arg(e)
                .ignore();
        }
        let mut link = self.link();
        pipe.query_async::<()>(&mut link).await.is_ok()
    }

    /// New entries for this node, then entries another node left idle for a node timeout.
    pub(super) async fn take_webhooks(&self) -> Vec<(String, String)> {
        let consumer = self.node.to_string();
        let mut link = self.link();
        let fresh: redis::RedisResult<RValue> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&consumer)
            .arg("COUNT")
            .arg(TAKE)
            .arg("STREAMS")
            .arg(self.names.webhooks())
            .arg(">")
            .query_async(&mut link)
            .await;
        let mut out = Vec::new();
        match fresh {
            Ok(v) => entries(&v, &mut out),
            // The stream or group is gone (first use, or Redis lost its data).
            Err(e) if e.code() == Some("NOGROUP") => self.ensure_group().await,
            Err(e) => tracing::debug!(error = %e, "webhook stream not read"),
        }
        // Others' stale entries: looked for at most once per heartbeat.
        {
            let mut last = self
                .webhooks_claimed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let every = std::time::Duration::from_millis(self.config.heartbeat_ms);
            if last.is_some_and(|t| t.elapsed() < every) {
                return out;
            }
            *last = Some(std::time::Instant::now());
        }
        let stale: redis::RedisResult<RValue> = redis::cmd("XAUTOCLAIM")
            .arg(self.names.webhooks())
            .arg(GROUP)
            .arg(&consumer)
            .arg(self.config.node_timeout_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(TAKE)
            .query_async(&mut link)
            .await;
        if let Ok(v) = stale {
            let before = out.len();
            entries(&v, &mut out);
            if out.len() > before {
                tracing::info!(
                    entries = out.len() - before,
                    "took over webhooks another node left undelivered"
                );
            }
        }
        out
    }

    /// Resets the entries' idle time (this node is still retrying them).
    pub(super) async fn touch_webhooks(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let mut link = self.link();
        let _: redis::RedisResult<RValue> = redis::cmd("XCLAIM")
            .arg(self.names.webhooks())
            .arg(GROUP)
            .arg(self.node.to_string())
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async(&mut link)
            .await;
    }

    pub(super) async fn ack_webhooks(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let key = self.names.webhooks();
        let mut link = self.link();
        let r: redis::RedisResult<()> = redis::pipe()
            .cmd("XACK")
            .arg(&key)
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(&key)
            .arg(ids)
            .ignore()
            .query_async(&mut link)
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "webhook entries not acknowledged");
        }
    }
}

/// Collects `(id, e)` of every stream entry in a reply (XREADGROUP or XAUTOCLAIM, RESP2 or
/// RESP3): an entry is a two-element array of an id and its field list.
fn entries(v: &RValue, out: &mut Vec<(String, String)>) {
    match v {
        RValue::Array(items) if items.len() == 2 => {
            if let (Some(id), Some(e)) = (text(&items[0]), field_e(&items[1])) {
                if id.contains('-') {
                    out.push((id, e));
                    return;
                }
            }
            items.iter().for_each(|i| entries(i, out));
        }
        RValue::Array(items) | RValue::Set(items) => items.iter().for_each(|i| entries(i, out)),
        RValue::Map(pairs) => pairs.iter().for_each(|(_, v)| entries(v, out)),
        _ => {}
    }
}

fn text(v: &RValue) -> Option<String> {
    match v {
        RValue::BulkString(b) => String::from_utf8(b.clone()).ok(),
        RValue::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The value of field `e` in an entry's field list.
fn field_e(v: &RValue) -> Option<String> {
    match v {
        RValue::Array(f) => f
            .chunks(2)
            .find(|p| p.first().and_then(text).as_deref() == Some("e"))
            .and_then(|p| p.get(1).and_then(text)),
        RValue::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some("e"))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> RValue {
        RValue::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_from_xreadgroup_and_xautoclaim() {
        // RESP3 XREADGROUP: {stream: [[id, [e, value]]]}
        let read = RValue::Map(vec![(
            bulk("{herald}:wh:queue"),
            RValue::Array(vec![RValue::Array(vec![
                bulk("1-0"),
                RValue::Array(vec![bulk("e"), bulk("{\"a\":1}")]),
            ])]),
        )]);
        let mut out = Vec::new();
        entries(&read, &mut out);
        assert_eq!(out, vec![("1-0".to_string(), "{\"a\":1}".to_string())]);
        // XAUTOCLAIM: [cursor, [[id, [e, value]]], [deleted ids]]
        let claim = RValue::Array(vec![
            bulk("0-0"),
            RValue::Array(vec![RValue::Array(vec![
                bulk("2-5"),
                RValue::Array(vec![bulk("e"), bulk("x")]),
            ])]),
            RValue::Array(vec![]),
        ]);
        let mut out = Vec::new();
        entries(&claim, &mut out);
        assert_eq!(out, vec![("2-5".to_string(), "x".to_string())]);
    }
}
