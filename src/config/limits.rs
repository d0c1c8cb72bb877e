//! Pusher's limits (PROTOCOL.md §8): `[limits]` for every app, `[apps.limits]` overrides per app,
//! how they merge, and what values are refused.

use super::reader::{Part, Reader, Report};

/// `[limits]` and `[apps.limits]`: Pusher's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Max `data` bytes of one event (REST and client events): 10 KiB.
    pub max_event_data_bytes: usize,
    /// Max channels in one trigger: 100.
    pub max_channels_per_trigger: usize,
    /// Max events in one batch: 10.
    pub max_batch_events: usize,
    /// Max channel name length: 200.
    pub max_channel_name_len: usize,
    /// Max event name length: 200.
    pub max_event_name_len: usize,
    /// Max distinct members of a presence channel: 100.
    pub max_presence_members: usize,
    /// Max serialized presence `user_info`: 1 KiB.
    pub max_presence_user_info_bytes: usize,
    /// Max presence user id length: 128.
    pub max_presence_user_id_len: usize,
    /// Client events per second per connection: 10.
    pub client_events_per_second: u32,
    /// Max inbound WebSocket message: 64 KiB (close 1009 beyond). Node-wide: apps cannot override it.
    pub max_message_bytes: usize,
    /// Max REST request body: 256 KiB (413 beyond).
    pub max_request_body_bytes: usize,
    /// Max channels one connection may subscribe to: 100 (0: unlimited).
    pub max_channels_per_connection: usize,
    /// Max user ids in a sign-in watchlist: 100 (the rest are dropped with `pusher:error` 4302).
    pub max_watchlist_size: usize,
    /// Seconds a cache channel keeps its last event: 1800.
    pub cache_ttl_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_data_bytes: 10 * 1024,
            max_channels_per_trigger: 100,
            max_batch_events: 10,
            max_channel_name_len: 200,
            max_event_name_len: 200,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_presence_user_id_len: 128,
            client_events_per_second: 10,
            max_message_bytes: 64 * 1024,
            max_request_body_bytes: 256 * 1024,
            max_channels_per_connection: 100,
            max_watchlist_size: 100,
            cache_ttl_seconds: 1800,
        }
    }
}

impl Limits {
    /// What is wrong with these limits, as (key, message).
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let positive = [
            ("max_event_data_bytes", self.max_event_data_bytes),
            ("max_channels_per_trigger", self.max_channels_per_trigger),
            ("max_batch_events", self.max_batch_events),
            ("max_channel_name_len", self.max_channel_name_len),
            ("max_event_name_len", self.max_event_name_len),
            ("max_presence_members", self.max_presence_members),
            (
                "max_presence_user_info_bytes",
                self.max_presence_user_info_bytes,
            ),
            ("max_presence_user_id_len", self.max_presence_user_id_len),
            (
                "client_events_per_second",
                self.client_events_per_second as usize,
            ),
            ("max_request_body_bytes", self.max_request_body_bytes),
            ("max_watchlist_size", self.max_watchlist_size),
            ("cache_ttl_seconds", self.cache_ttl_seconds as usize),
        ];
        let mut out: Vec<(&'static str, String)> = positive
            .into_iter()
            .filter(|(_, v)| *v == 0)
            .map(|(name, _)| (name, "must be greater than 0".to_string()))
            .collect();
        if self.max_message_bytes <= self.max_event_data_bytes {
            out.push((
                "max_message_bytes",
                format!(
                    "must exceed max_event_data_bytes ({}): frames carry an envelope",
                    self.max_event_data_bytes
                ),
            ));
        }
        out
    }

    /// Reads `[limits]`; keys not given keep Pusher's defaults.
    pub(super) fn read(r: &mut Reader, report: &mut Report) -> Limits {
        let mut l = Limits::default();
        r.set("max_event_data_bytes", &mut l.max_event_data_bytes, report);
        r.set(
            "max_channels_per_trigger",
            &mut l.max_channels_per_trigger,
            report,
        );
        r.set("max_batch_events", &mut l.max_batch_events, report);
        r.set("max_channel_name_len", &mut l.max_channel_name_len, report);
        r.set("max_event_name_len", &mut l.max_event_name_len, report);
        r.set("max_presence_members", &mut l.max_presence_members, report);
        r.set(
            "max_presence_user_info_bytes",
            &mut l.max_presence_user_info_bytes,
            report,
        );
        r.set(
            "max_presence_user_id_len",
            &mut l.max_presence_user_id_len,
            report,
        );
        r.set(
            "client_events_per_second",
            &mut l.client_events_per_second,
            report,
        );
        r.set("max_message_bytes", &mut l.max_message_bytes, report);
        r.set(
            "max_request_body_bytes",
            &mut l.max_request_body_bytes,
            report,
        );
        r.set(
            "max_channels_per_connection",
            &mut l.max_channels_per_connection,
            report,
        );
        r.set("max_watchlist_size", &mut l.max_watchlist_size, report);
        r.set("cache_ttl_seconds", &mut l.cache_ttl_seconds, report);
        l
    }

    /// These limits with an app's overrides applied.
    pub fn merged(&self, o: &LimitsOverride) -> Limits {
        Limits {
            max_event_data_bytes: o.max_event_data_bytes.unwrap_or(self.max_event_data_bytes),
            max_channels_per_trigger: o
                .max_channels_per_trigger
                .unwrap_or(self.max_channels_per_trigger),
            max_batch_events: o.max_batch_events.unwrap_or(self.max_batch_events),
            max_channel_name_len: o.max_channel_name_len.unwrap_or(self.max_channel_name_len),
            max_event_name_len: o.max_event_name_len.unwrap_or(self.max_event_name_len),
            max_presence_members: o.max_presence_members.unwrap_or(self.max_presence_members),
            max_presence_user_info_bytes: o
                .max_presence_user_info_bytes
                .unwrap_or(self.max_presence_user_info_bytes),
            max_presence_user_id_len: o
                .max_presence_user_id_len
                .unwrap_or(self.max_presence_user_id_len),
            client_events_per_second: o
                .client_events_per_second
                .unwrap_or(self.client_events_per_second),
            max_message_bytes: self.max_message_bytes,
            max_request_body_bytes: o
                .max_request_body_bytes
                .unwrap_or(self.max_request_body_bytes),
            max_channels_per_connection: o
                .max_channels_per_connection
                .unwrap_or(self.max_channels_per_connection),
            max_watchlist_size: o.max_watchlist_size.unwrap_or(self.max_watchlist_size),
            cache_ttl_seconds: o.cache_ttl_seconds.unwrap_or(self.cache_ttl_seconds),
        }
    }
}

/// Per-app overrides of [`Limits`]; unset fields inherit the global value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct LimitsOverride {
    pub max_event_data_bytes: Option<usize>,
    pub max_channels_per_trigger: Option<usize>,
    pub max_batch_events: Option<usize>,
    pub max_channel_name_len: Option<usize>,
    pub max_event_name_len: Option<usize>,
    pub max_presence_members: Option<usize>,
    pub max_presence_user_info_bytes: Option<usize>,
    pub max_presence_user_id_len: Option<usize>,
    pub client_events_per_second: Option<u32>,
    pub max_request_body_bytes: Option<usize>,
    pub max_channels_per_connection: Option<usize>,
    pub max_watchlist_size: Option<usize>,
    pub cache_ttl_seconds: Option<u64>,
}

impl LimitsOverride {
    /// Reads `[apps.limits]`; `max_message_bytes` is node-wide and refused here.
    pub(super) fn read(r: &mut Reader, report: &mut Report) -> LimitsOverride {
        if r.take_raw("max_message_bytes").is_some() {
            report.key(
                Part::Apps,
                r.path(),
                "max_message_bytes",
                "is node-wide: set it in [limits]",
            );
        }
        LimitsOverride {
            max_event_data_bytes: r.get("max_event_data_bytes", report),
            max_channels_per_trigger: r.get("max_channels_per_trigger", report),
            max_batch_events: r.get("max_batch_events", report),
            max_channel_name_len: r.get("max_channel_name_len", report),
            max_event_name_len: r.get("max_event_name_len", report),
            max_presence_members: r.get("max_presence_members", report),
            max_presence_user_info_bytes: r.get("max_presence_user_info_bytes", report),
            max_presence_user_id_len: r.get("max_presence_user_id_len", report),
            client_events_per_second: r.get("client_events_per_second", report),
            max_request_body_bytes: r.get("max_request_body_bytes", report),
            max_channels_per_connection: r.get("max_channels_per_connection", report),
            max_watchlist_size: r.get("max_watchlist_size", report),
            cache_ttl_seconds: r.get("cache_ttl_seconds", report),
        }
    }
}
