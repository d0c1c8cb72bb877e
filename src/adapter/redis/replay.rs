//! Catching up on what a node missed while its own Redis connection was down and Redis was not:
//! every pub/sub message is also appended to a short per-channel Redis stream (the log) in the
//! same script step, and carries its stream id; each node remembers, per subscribed channel,
//! the last id it applied. After a disconnection it reads the log from there, applies what it
//! missed in order, drops what pub/sub then delivers twice, and counts what the log no longer
//! held.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{Script, Value};

use super::link::Link;
use super::Inner;

/// Lua shared by every script that publishes: `herald_publish(cmd, channel, payload, window)`
/// appends the payload to the channel's log (entries older than `window` ms trimmed, the key
/// expiring `window` ms after the last message) and publishes it with its stream id spliced in
/// as the first JSON field (`{"id":"…",…}`; nodes that do not know the field ignore it). With a
/// window of 0 it only publishes.
pub(super) const PUBLISH_LUA: &str = r#"
local function herald_publish(cmd, channel, payload, window)
  if not window or window <= 0 then return redis.call(cmd, channel, payload) end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local log = '{' .. channel .. '}:log'
  local id = redis.call('XADD', log, 'MINID', '~', now - window, '*', 'p', payload)
  redis.call('PEXPIRE', log, window)
  return redis.call(cmd, channel, '{"id":"' .. id .. '",' .. string.sub(payload, 2))
end
"#;

/// One logged publication: KEYS: the log (so a Redis Cluster routes it to the channel's slot).
/// ARGV: PUBLISH or SPUBLISH, pub/sub channel, payload, window ms.
pub static LOG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PUBLISH_LUA}\nreturn herald_publish(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))"
    ))
});

/// Reads a log after an id: KEYS: the log. ARGV: first id (exclusive), last id (`+`, or
/// exclusive with `(`), count. Returns `{0}` when the log is gone (nothing published within
/// its window), else `{1, max-deleted-entry-id, entries}`.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local deleted = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
end
return {1, deleted, redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], ARGV[2], 'COUNT', ARGV[3])}
"#,
    )
});

/// Entries read per call while catching up.
const PAGE: usize = 512;

/// A stream entry id, `ms-seq`, ordered like Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId(u64, u64);

impl StreamId {
    /// Parses `ms-seq`.
    pub fn parse(s: &str) -> Option<StreamId> {
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The id a logged message carries as its first JSON field, if it does.
    pub fn of_message(payload: &[u8]) -> Option<StreamId> {
        let rest = payload.strip_prefix(br#"{"id":""#)?;
        let end = rest.iter().position(|&c| c == b'"')?;
        StreamId::parse(std::str::from_utf8(&rest[..end]).ok()?)
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Where this node stands in one subscribed channel's log.
#[derive(Debug, Default)]
struct Cursor {
    /// The log's last id just before this node subscribed (unknown until Redis answered).
    floor: Option<StreamId>,
    /// The last id applied here.
    last: Option<StreamId>,
    /// Since when messages may have been missed (the connection dropped), and how many
    /// complete reads of the log happened since it came back.
    gap: Option<(Instant, u8)>,
}

impl Cursor {
    /// Where a catch-up starts (exclusive); `None` when nothing is known to start from.
    fn start(&self) -> Option<StreamId> {
        self.last.max(self.floor)
    }
}

/// What to do with a message that arrived over pub/sub.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Apply it.
    Apply,
    /// Already applied (a catch-up read it from the log first).
    Duplicate,
    /// Messages before it may be missing (the connection dropped at the instant given): read
    /// the log from this id up to it, then apply it.
    CatchUp(StreamId, Instant),
}

/// Reads of the log needed after a reconnect before a channel that received nothing is
/// trusted again (on a Redis Cluster the resubscription may land just after the first read).
const CONFIRMING_READS: u8 = 2;

/// The cursors of every channel this node subscribes to.
#[derive(Debug, Default)]
pub struct Cursors {
    by_channel: Mutex<HashMap<String, Cursor>>,
}

impl Cursors {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Cursor>) -> R) -> R {
        f(&mut self
            .by_channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// The node starts listening to a channel (before it subscribes).
    pub fn track(&self, channel: &str) {
        self.with(|m| {
            m.entry(channel.to_string()).or_default();
        });
    }

    /// The log's last id before the subscription, once Redis told it.
    pub fn floor(&self, channel: &str, floor: StreamId) {
        self.with(|m| {
            if let Some(c) = m.get_mut(channel) {
                c.floor = Some(floor);
            }
        });
    }

    /// The node stopped listening to a channel.
    pub fn forget(&self, channel: &str) {
        self.with(|m| m.remove(channel));
    }

    /// The connection dropped: every channel may have missed messages from now on.
    pub fn disconnected(&self, at: Instant) {
        self.with(|m| {
            for c in m.values_mut() {
                c.gap = Some((c.gap.map_or(at, |(since, _)| since), 0));
            }
        });
    }

    /// Decides about a message with this id on this channel, recording it as applied.
    pub fn admit(&self, channel: &str, id: StreamId) -> Admit {
        self.with(|m| {
            let Some(c) = m.get_mut(channel) else {
                return Admit::Apply;
            };
            if c.last.is_some_and(|last| id <= last) {
                return Admit::Duplicate;
            }
            // A message after the drop proves the subscription is back: this catch-up closes
            // the gap.
            let verdict = match (c.gap.take(), c.start()) {
                (Some((since, _)), Some(from)) if from < id => Admit::CatchUp(from, since),
                _ => Admit::Apply,
            };
            c.last = Some(id);
            verdict
        })
    }

    /// Channels with an open gap: (channel, start, gap since, whether no read succeeded yet).
    fn gaps(&self) -> Vec<(String, Option<StreamId>, Instant, bool)> {
        self.with(|m| {
            m.iter()
                .filter_map(|(ch, c)| {
                    c.gap
                        .map(|(since, reads)| (ch.clone(), c.start(), since, reads == 0))
                })
                .collect()
        })
    }

    /// Whether some channel may still have missed messages.
    pub fn any_gap(&self) -> bool {
        self.with(|m| m.values().any(|c| c.gap.is_some()))
    }

    /// A catch-up read applied everything up to `upto`; a complete read (to the log's end)
    /// counts towards closing the gap.
    fn applied(&self, channel: &str, upto: Option<StreamId>, complete: bool) {
        self.with(|m| {
            if let Some(c) = m.get_mut(channel) {
                if upto.is_some() {
                    c.last = c.last.max(upto);
                }
                if complete {
                    if let Some((since, reads)) = c.gap {
                        c.gap = (reads + 1 < CONFIRMING_READS).then_some((since, reads + 1));
                    }
                }
            }
        });
    }
}

impl Inner {
    /// This node's own Redis connection dropped (Redis itself may be fine): messages other
    /// nodes publish until it is back are read from the channels' logs.
    pub(super) fn disconnected(&self) {
        tracing::info!(
            node = self.node,
            "Redis connection dropped; will replay what other nodes publish meanwhile"
        );
        if self.config.replay_ms == 0 {
            self.replay_gap(
                &self.names.control(),
                "the channel log is off (replay_ms = 0)",
            );
            return;
        }
        self.cursors.disconnected(std::time::Instant::now());
    }

    /// Counts and logs a drop of the connection after which some messages other nodes
    /// published could not be replayed (`herald_adapter_replay_gaps_total`).
    pub(super) fn replay_gap(&self, channel: &str, why: &'static str) {
        let n = self.replay_gaps.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            node = self.node,
            channel,
            reason = why,
            gaps = n,
            "events other nodes published while this node's Redis connection was down may be lost"
        );
    }

    /// Counts messages applied from channel logs.
    pub(super) fn replayed(&self, n: usize) {
        self.replayed.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The log key of a pub/sub channel: hash-tagged with the channel itself, so on a Redis Cluster
/// it lives in the slot the channel's sharded pub/sub uses.
pub fn log_key(channel: &str) -> String {
    format!("{{{channel}}}:log")
}

/// The EVALSHA of one logged publication (see [`LOG`]).
pub fn log_cmd(link: &Link, channel: &str, payload: &str, window_ms: u64) -> redis::Cmd {
    let mut c = redis::cmd("EVALSHA");
    c.arg(LOG.get_hash())
        .arg(1)
        .arg(log_key(channel))
        .arg(match link {
            Link::Cluster(_) => "SPUBLISH",
            Link::Single(_) | Link::Pending => "PUBLISH",
        })
        .arg(channel)
        .arg(payload)
        .arg(window_ms);
    c
}

/// Loads the log script (after Redis answered NOSCRIPT: restarted, failed over, flushed).
pub async fn load(link: &mut Link) -> redis::RedisResult<()> {
    LOG.prepare_invoke().load_async(link).await.map(|_| ())
}

/// The last id of a channel's log (0-0 when it has none), asked just before subscribing.
pub async fn tail(link: &mut Link, channel: &str) -> redis::RedisResult<StreamId> {
    let last: Vec<(String, Value)> = redis::cmd("XREVRANGE")
        .arg(log_key(channel))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(link)
        .await?;
    Ok(last
        .first()
        .and_then(|(id, _)| StreamId::parse(id))
        .unwrap_or(StreamId(0, 0)))
}

/// What one read of a log found.
struct Page {
    /// Entries (id, payload), oldest first.
    entries: Vec<(StreamId, Vec<u8>)>,
    /// Entries after the start were trimmed before this node read them.
    trimmed: bool,
}

async fn read(
    link: &mut Link,
    channel: &str,
    from: StreamId,
    until: Option<StreamId>,
) -> redis::RedisResult<Page> {
    let reply: Vec<Value> = READ
        .key(log_key(channel))
        .arg(from.to_string())
        .arg(until.map_or_else(|| "+".to_string(), |u| format!("({u}")))
        .arg(PAGE)
        .invoke_async(link)
        .await?;
    let mut page = Page {
        entries: Vec::new(),
        trimmed: false,
    };
    // `{0}`: the log is gone (nothing was published on the channel within the window).
    let [_, deleted, entries] = reply.as_slice() else {
        return Ok(page);
    };
    page.trimmed = text(deleted)
        .and_then(|d| StreamId::parse(&d))
        .is_some_and(|d| d > from);
    if let Value::Array(entries) = entries {
        for entry in entries {
            let Value::Array(parts) = entry else { continue };
            let [id, fields] = parts.as_slice() else {
                continue;
            };
            let Some(id) = text(id).and_then(|s| StreamId::parse(&s)) else {
                continue;
            };
            // Fields: ["p", payload].
            if let Value::Array(kv) = fields {
                if let Some(payload) = kv.get(1).and_then(bytes) {
                    page.entries.push((id, payload));
                }
            }
        }
    }
    Ok(page)
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// Where a catch-up reads from and why.
#[derive(Debug, Clone, Copy)]
pub struct Gap {
    /// Read after this id (exclusive).
    pub from: StreamId,
    /// Up to this id (exclusive), or to the end of the log.
    pub until: Option<StreamId>,
    /// When the connection dropped.
    pub since: Instant,
    /// The first read after the drop: it decides whether the drop outlasted the log.
    pub first: bool,
}

/// Applies a channel's logged messages in the gap, in order; counts the gap as a loss when the
/// log no longer held all of them (trimmed, or the drop outlasted `replay_ms`).
pub async fn catch_up(inner: &Arc<Inner>, channel: &str, gap: Gap) -> redis::RedisResult<()> {
    let mut link = inner.link();
    let Gap {
        mut from, until, ..
    } = gap;
    let window = Duration::from_millis(inner.config.replay_ms);
    let mut first = gap.first;
    loop {
        let page = read(&mut link, channel, from, until).await?;
        if page.trimmed {
            inner.replay_gap(channel, "the log was trimmed before this node read it");
        } else if first && gap.since.elapsed() >= window {
            inner.replay_gap(channel, "the connection was down longer than replay_ms");
        }
        first = false;
        let last = page.entries.last().map(|(id, _)| *id);
        let complete = page.entries.len() < PAGE;
        for (_, payload) in &page.entries {
            super::pubsub::apply(inner, payload);
        }
        inner.replayed(page.entries.len());
        inner
            .cursors
            .applied(channel, last, complete && until.is_none());
        match last {
            Some(id) if !complete => from = id,
            _ => return Ok(()),
        }
    }
}

/// Reads every channel with an open gap to the end of its log (the connection is back when
/// a read succeeds: the connection replays its subscriptions before anything else).
pub async fn sweep(inner: &Arc<Inner>) {
    for (channel, start, since, first) in inner.cursors.gaps() {
        let Some(from) = start else {
            // Subscribed while the connection dropped: nothing known to start from.
            inner.cursors.applied(&channel, None, true);
            continue;
        };
        let gap = Gap {
            from,
            until: None,
            since,
            first,
        };
        if let Err(e) = catch_up(inner, &channel, gap).await {
            tracing::debug!(error = %e, "replaying the channel log failed; retrying");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_order_and_come_out_of_messages() {
        let a = StreamId::parse("1700000000000-0").unwrap();
        let b = StreamId::parse("1700000000000-12").unwrap();
        let c = StreamId::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-12");
        assert_eq!(StreamId::parse("x-1"), None);
        assert_eq!(StreamId::parse("17"), None);
        assert_eq!(
            StreamId::of_message(br#"{"id":"1700000000000-12","t":"b"}"#),
            Some(b)
        );
        assert_eq!(StreamId::of_message(br#"{"t":"b","id":"1-1"}"#), None);
        assert_eq!(StreamId::of_message(br#"{"id":"1-1"#), None);
        assert_eq!(log_key("herald:c:1:ch"), "{herald:c:1:ch}:log");
    }

    #[test]
    fn admits_in_order_drops_replayed_and_asks_to_catch_up_after_a_drop() {
        let cursors = Cursors::default();
        let id = |ms| StreamId(ms, 0);
        assert_eq!(cursors.admit("untracked", id(1)), Admit::Apply);
        cursors.track("c");
        cursors.floor("c", id(5));
        assert_eq!(cursors.admit("c", id(6)), Admit::Apply);
        assert_eq!(cursors.admit("c", id(6)), Admit::Duplicate);
        cursors.disconnected(Instant::now());
        assert!(cursors.any_gap());
        // The first message after the drop: read the log from 6 to it first.
        assert!(matches!(cursors.admit("c", id(9)), Admit::CatchUp(from, _) if from == id(6)));
        assert!(!cursors.any_gap());
        assert_eq!(cursors.admit("c", id(10)), Admit::Apply);
        // A catch-up that already applied up to 12 makes pub/sub's copies duplicates.
        cursors.disconnected(Instant::now());
        cursors.applied("c", Some(id(12)), true);
        assert_eq!(cursors.admit("c", id(11)), Admit::Duplicate);
        assert_eq!(cursors.admit("c", id(12)), Admit::Duplicate);
        // One complete read is not enough to trust a quiet channel again; two are.
        assert!(cursors.any_gap());
        cursors.applied("c", None, true);
        assert!(!cursors.any_gap());
        cursors.forget("c");
        assert_eq!(cursors.admit("c", id(1)), Admit::Apply);
    }

    #[test]
    fn a_channel_without_messages_catches_up_from_its_floor() {
        let cursors = Cursors::default();
        cursors.track("c");
        cursors.floor("c", StreamId(5, 0));
        let at = Instant::now();
        cursors.disconnected(at);
        assert_eq!(
            cursors.gaps(),
            vec![("c".to_string(), Some(StreamId(5, 0)), at, true)]
        );
        assert_eq!(
            cursors.admit("c", StreamId(7, 1)),
            Admit::CatchUp(StreamId(5, 0), at)
        );
    }
}
