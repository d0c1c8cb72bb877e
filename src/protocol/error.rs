//! Per-message rejections: answered with a `pusher:error` and the connection stays open.
//! This is the one place that maps them to Pusher codes and messages.

use super::channel::NameError;
use super::codes::{CLIENT_EVENT_RATE_LIMIT, WATCHLIST_LIMIT};

/// Why a client's message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame was not JSON, not an object, or had no string `event`.
    MalformedFrame(&'static str),
    /// An event name the server does not accept from clients.
    UnknownEvent(String),
    /// A subscribe/unsubscribe/client event without a usable `channel`.
    MissingChannel,
    /// The channel name breaks the naming rules.
    InvalidChannel(String, NameError),
    /// Already subscribed on this connection.
    ExistingSubscription(String),
    /// A private/presence channel without `auth`.
    AuthRequired(String),
    /// `auth` named a key other than the app's.
    InvalidKey(String),
    /// Signature mismatch; carries the string that should have been signed.
    InvalidSignature {
        /// The string the server signed.
        signed: String,
        /// What the client sent.
        got: String,
    },
    /// Presence `channel_data` is unusable.
    InvalidChannelData(String),
    /// Sign-in `user_data` is unusable, or names a different user than before.
    InvalidUserData(String),
    /// The presence channel already has the maximum number of members.
    PresenceFull(String),
    /// `#server-to-user-` channel for someone else, or not signed in.
    ServerToUserDenied(String),
    /// Client events are disabled for this app (the channel they were sent on).
    ClientEventsDisabled(String),
    /// Client events on a channel type that does not allow them.
    ClientEventNotAllowed(String),
    /// Client event on a channel this connection has not subscribed to.
    NotSubscribed(String),
    /// Client event name or data above the limit.
    ClientEventTooLarge(&'static str),
    /// Client event rate limit exceeded.
    RateLimited,
    /// A watchlist above the limit was truncated (sent after `signin_success`).
    WatchlistTruncated(usize),
    /// The connection has subscribed to as many channels as allowed.
    TooManyChannels(usize),
}

impl ProtocolError {
    /// The `code` of the `pusher:error` (`None` serializes as `null`, as Pusher does).
    pub fn code(&self) -> Option<u16> {
        match self {
            ProtocolError::RateLimited => Some(CLIENT_EVENT_RATE_LIMIT),
            ProtocolError::WatchlistTruncated(_) => Some(WATCHLIST_LIMIT),
            _ => None,
        }
    }

    /// The `message` of the `pusher:error`.
    pub fn message(&self) -> String {
        match self {
            ProtocolError::MalformedFrame(why) => format!("Malformed message: {why}"),
            ProtocolError::UnknownEvent(e) => format!("Unsupported event: {e}"),
            ProtocolError::MissingChannel => "Missing channel".to_string(),
            ProtocolError::InvalidChannel(c, e) => format!("Invalid channel name '{c}': {e}"),
            ProtocolError::ExistingSubscription(c) => {
                format!("Existing subscription to channel {c}")
            }
            ProtocolError::AuthRequired(c) => format!("Auth info required to subscribe to {c}"),
            ProtocolError::InvalidKey(k) => format!("Invalid key in subscription auth data: '{k}'"),
            ProtocolError::InvalidSignature { signed, got } => format!(
                "Invalid signature: Expected HMAC SHA256 hex digest of {signed}, but got {got}"
            ),
            ProtocolError::InvalidChannelData(why) => format!("Invalid channel_data: {why}"),
            ProtocolError::InvalidUserData(why) => format!("Invalid user_data: {why}"),
            ProtocolError::PresenceFull(c) => {
                format!("Presence channel {c} has reached its member limit")
            }
            ProtocolError::ServerToUserDenied(c) => {
                format!("Subscription to {c} requires signing in as that user")
            }
            ProtocolError::ClientEventsDisabled(_) => {
                "To send client events, you must enable this feature in the Settings".to_string()
            }
            ProtocolError::ClientEventNotAllowed(c) => {
                format!("Client events are only allowed on private and presence channels, not {c}")
            }
            ProtocolError::NotSubscribed(c) => {
                format!("Client event rejected: not subscribed to {c}")
            }
            ProtocolError::ClientEventTooLarge(what) => format!("Client event rejected: {what}"),
            ProtocolError::RateLimited => "Client event rejected due to rate limit".to_string(),
            ProtocolError::WatchlistTruncated(n) => {
                format!("Watchlist limit exceeded; only the first {n} user ids accepted")
            }
            ProtocolError::TooManyChannels(n) => {
                format!("Subscription limit reached: at most {n} channels per connection")
            }
        }
    }

    /// The message for logs: like [`ProtocolError::message`] but never with the client's
    /// signature.
    pub fn log_message(&self) -> String {
        match self {
            ProtocolError::InvalidSignature { .. } => "Invalid signature".to_string(),
            other => other.message(),
        }
    }

    /// The channel to attach to the error, when it concerns one (pusher-js routes it there).
    pub fn channel(&self) -> Option<&str> {
        match self {
            ProtocolError::InvalidChannel(c, _)
            | ProtocolError::ExistingSubscription(c)
            | ProtocolError::AuthRequired(c)
            | ProtocolError::PresenceFull(c)
            | ProtocolError::ServerToUserDenied(c)
            | ProtocolError::ClientEventNotAllowed(c)
            | ProtocolError::ClientEventsDisabled(c)
            | ProtocolError::NotSubscribed(c) => Some(c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        assert_eq!(ProtocolError::RateLimited.code(), Some(4301));
        assert_eq!(ProtocolError::MissingChannel.code(), None);
        assert_eq!(
            ProtocolError::InvalidSignature {
                signed: "1.1:private-a".into(),
                got: "k:x".into()
            }
            .message(),
            "Invalid signature: Expected HMAC SHA256 hex digest of 1.1:private-a, but got k:x"
        );
        assert_eq!(
            ProtocolError::ExistingSubscription("presence-foobar".into()).message(),
            "Existing subscription to channel presence-foobar"
        );
        let sig = ProtocolError::InvalidSignature {
            signed: "1.1:private-a".into(),
            got: "k:deadbeef".into(),
        };
        assert!(!sig.log_message().contains("deadbeef"));
    }
}
