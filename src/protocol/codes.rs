//! Pusher close and error codes (PROTOCOL.md §1.6) and the connection-fatal reasons that use them.

/// A reason a connection ended. Except for [`CloseReason::Abnormal`], the server closes with
/// this code, preceded by a `pusher:error` (see [`pusher_error_code`] for its code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// 4001: no app with this key.
    AppNotFound,
    /// 4003: the app exists but is disabled.
    AppDisabled,
    /// 4004: the app has reached its connection limit.
    OverQuota,
    /// 4005: the upgrade did not target `/app/{key}`.
    PathNotFound,
    /// 4007: `protocol` is not an integer in the accepted range.
    UnsupportedProtocol,
    /// 4008: `protocol` is missing.
    NoProtocol,
    /// 4009: the user's connections were terminated through the REST API.
    Terminated,
    /// 4009: the app requires sign-in (or a private subscription) and none came in time.
    NotAuthorizedInTime,
    /// 4100: the node is over capacity.
    OverCapacity,
    /// 4100: the app store (database) cannot answer for this key now; reconnect after backing
    /// off.
    StoreUnavailable,
    /// 4200: the server is shutting down; reconnect immediately (to another node).
    ShuttingDown,
    /// 4100: the node is draining (rolling restart); reconnect after backing off, so a fleet
    /// restart does not hammer the other nodes.
    Draining,
    /// 4200: the connection could not keep up with its messages and was evicted.
    SlowConsumer,
    /// 4201: no pong arrived after a ping.
    PongTimeout,
    /// 1009: an inbound message above the size limit.
    MessageTooBig,
    /// 1007: a text frame that is not UTF-8.
    InvalidUtf8,
    /// 1002: a frame that breaks RFC 6455 (e.g. unmasked from a client).
    ProtocolViolation,
    /// 1006: the client vanished without a closing handshake (TCP reset or end of stream).
    /// Recorded only: no close frame can be sent, and RFC 6455 forbids sending 1006.
    Abnormal,
}

impl CloseReason {
    /// The Pusher close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::AppNotFound => 4001,
            CloseReason::AppDisabled => 4003,
            CloseReason::OverQuota => 4004,
            CloseReason::PathNotFound => 4005,
            CloseReason::UnsupportedProtocol => 4007,
            CloseReason::NoProtocol => 4008,
            CloseReason::Terminated | CloseReason::NotAuthorizedInTime => 4009,
            CloseReason::OverCapacity | CloseReason::Draining | CloseReason::StoreUnavailable => {
                4100
            }
            CloseReason::ShuttingDown | CloseReason::SlowConsumer => 4200,
            CloseReason::PongTimeout => 4201,
            CloseReason::MessageTooBig => MESSAGE_TOO_BIG,
            CloseReason::InvalidUtf8 => INVALID_PAYLOAD,
            CloseReason::ProtocolViolation => PROTOCOL_ERROR,
            CloseReason::Abnormal => ABNORMAL_CLOSURE,
        }
    }

    /// The human message sent in the `pusher:error` and as the close reason (≤ 123 bytes).
    pub fn message(self) -> &'static str {
        match self {
            CloseReason::AppNotFound => "Application does not exist",
            CloseReason::AppDisabled => "Application disabled",
            CloseReason::OverQuota => "Application is over connection quota",
            CloseReason::PathNotFound => "Path not found",
            CloseReason::UnsupportedProtocol => "Unsupported protocol version",
            CloseReason::NoProtocol => "No protocol version supplied",
            CloseReason::Terminated => "Connection is unauthorized: terminated by the application",
            CloseReason::NotAuthorizedInTime => "Connection not authorized within timeout",
            CloseReason::OverCapacity => "Over capacity",
            CloseReason::StoreUnavailable => "App store unavailable, reconnect after backing off",
            CloseReason::Draining => "Server is restarting, reconnect after backing off",
            CloseReason::ShuttingDown => "Server is shutting down, reconnect immediately",
            CloseReason::SlowConsumer => "Connection could not keep up, reconnect immediately",
            CloseReason::PongTimeout => "Pong reply not received",
            CloseReason::MessageTooBig => "Message too big",
            CloseReason::InvalidUtf8 => "Invalid UTF-8 in a text frame",
            CloseReason::ProtocolViolation => "WebSocket protocol error",
            CloseReason::Abnormal => "Connection lost without a closing handshake",
        }
    }

    /// Whether a close frame (and its `pusher:error`) is sent: not when the peer is gone.
    pub fn sends_close_frame(self) -> bool {
        self != CloseReason::Abnormal
    }
}

/// The `code` of the `pusher:error` sent before closing with `close_code`. `pusher:error` codes
/// are Pusher's 4000–4999 range (PROTOCOL.md §2.5), so a Pusher close code is repeated and a
/// WebSocket close code (1002, 1007, 1009) gives `null`, as Pusher does for errors without a code.
pub fn pusher_error_code(close_code: u16) -> Option<u16> {
    (4000..=4999).contains(&close_code).then_some(close_code)
}

/// Close code for an inbound message above the size limit (WebSocket "message too big").
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// Close code for a text frame that is not UTF-8 (WebSocket "invalid frame payload data").
pub const INVALID_PAYLOAD: u16 = 1007;
/// Close code for a frame that breaks RFC 6455 (e.g. unmasked from a client).
pub const PROTOCOL_ERROR: u16 = 1002;
/// Close code recorded (never sent) when the peer went away without a closing handshake.
pub const ABNORMAL_CLOSURE: u16 = 1006;
/// `pusher:error` code for a client event dropped by the rate limit (never a close code).
pub const CLIENT_EVENT_RATE_LIMIT: u16 = 4301;
/// `pusher:error` code for a watchlist above the limit (never a close code).
pub const WATCHLIST_LIMIT: u16 = 4302;

/// Lowest and highest accepted `protocol` query value.
pub const PROTOCOL_MIN: u32 = 4;
/// See [`PROTOCOL_MIN`].
pub const PROTOCOL_MAX: u32 = 7;

/// Checks the `protocol` query parameter (PROTOCOL.md §1.1).
pub fn check_protocol(value: Option<&str>) -> Result<u32, CloseReason> {
    let v = value.ok_or(CloseReason::NoProtocol)?;
    match v.parse::<u32>() {
        Ok(n) if (PROTOCOL_MIN..=PROTOCOL_MAX).contains(&n) => Ok(n),
        _ => Err(CloseReason::UnsupportedProtocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert_eq!(check_protocol(Some("7")), Ok(7));
        assert_eq!(check_protocol(Some("5")), Ok(5));
        assert_eq!(check_protocol(Some("4")), Ok(4));
        assert_eq!(
            check_protocol(Some("3")),
            Err(CloseReason::UnsupportedProtocol)
        );
        assert_eq!(
            check_protocol(Some("8")),
            Err(CloseReason::UnsupportedProtocol)
        );
        assert_eq!(
            check_protocol(Some("abc")),
            Err(CloseReason::UnsupportedProtocol)
        );
        assert_eq!(
            check_protocol(Some("")),
            Err(CloseReason::UnsupportedProtocol)
        );
        assert_eq!(check_protocol(None), Err(CloseReason::NoProtocol));
    }

    #[test]
    fn pusher_errors_carry_only_pusher_codes() {
        assert_eq!(pusher_error_code(4001), Some(4001));
        assert_eq!(pusher_error_code(4100), Some(4100));
        assert_eq!(pusher_error_code(4201), Some(4201));
        for websocket in [
            MESSAGE_TOO_BIG,
            INVALID_PAYLOAD,
            PROTOCOL_ERROR,
            ABNORMAL_CLOSURE,
        ] {
            assert_eq!(pusher_error_code(websocket), None, "{websocket}");
        }
        assert!(!CloseReason::Abnormal.sends_close_frame());
        assert!(CloseReason::ProtocolViolation.sends_close_frame());
        assert_eq!(CloseReason::Abnormal.code(), 1006);
    }

    #[test]
    fn messages_fit_a_close_frame() {
        for r in [
            CloseReason::AppNotFound,
            CloseReason::ShuttingDown,
            CloseReason::SlowConsumer,
            CloseReason::PongTimeout,
        ] {
            assert!(r.message().len() <= 123);
        }
    }
}
