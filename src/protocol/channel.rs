//! Channel kinds by prefix and channel-name rules (PROTOCOL.md §3).

/// How a channel is authorized and what it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// No auth needed.
    Public,
    /// `private-`: signed `socket_id:channel`.
    Private,
    /// `private-encrypted-`: signed like private; payloads are opaque ciphertext.
    Encrypted,
    /// `presence-`: signed with `channel_data`, tracks members.
    Presence,
    /// `#server-to-user-{id}`: only for a connection signed in as `{id}`.
    ServerToUser,
}

/// A channel's kind plus whether it is a cache channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelType {
    /// Authorization and feature class.
    pub kind: ChannelKind,
    /// `cache-` variants keep the last event.
    pub cache: bool,
}

impl ChannelType {
    /// Whether subscribing needs an `auth` signature.
    pub fn needs_auth(self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence
        )
    }

    /// Whether clients may send `client-` events on it.
    pub fn allows_client_events(self) -> bool {
        matches!(self.kind, ChannelKind::Private | ChannelKind::Presence)
    }

    /// Whether it is a presence channel.
    pub fn is_presence(self) -> bool {
        self.kind == ChannelKind::Presence
    }
}

/// Prefix of the per-user channel that signed-in connections join.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// Classifies a channel name by prefix, longest first.
pub fn classify(name: &str) -> ChannelType {
    let t = |kind, cache| ChannelType { kind, cache };
    if name.starts_with(SERVER_TO_USER_PREFIX) {
        t(ChannelKind::ServerToUser, false)
    } else if name.starts_with("presence-cache-") {
        t(ChannelKind::Presence, true)
    } else if name.starts_with("presence-") {
        t(ChannelKind::Presence, false)
    } else if name.starts_with("private-encrypted-cache-") {
        t(ChannelKind::Encrypted, true)
    } else if name.starts_with("private-encrypted-") {
        t(ChannelKind::Encrypted, false)
    } else if name.starts_with("private-cache-") {
        t(ChannelKind::Private, true)
    } else if name.starts_with("private-") {
        t(ChannelKind::Private, false)
    } else if name.starts_with("cache-") {
        t(ChannelKind::Public, true)
    } else {
        t(ChannelKind::Public, false)
    }
}

/// Why a channel name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    Empty,
    /// Longer than the limit.
    TooLong(usize),
    /// Contains a character outside `[A-Za-z0-9_\-=@,.;]` (or a misplaced `#`).
    BadCharacter,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "channel name is empty"),
            NameError::TooLong(max) => write!(f, "channel name is longer than {max} characters"),
            NameError::BadCharacter => write!(
                f,
                "channel name may only contain A-Z, a-z, 0-9, '_', '-', '=', '@', ',', '.', ';'"
            ),
        }
    }
}

/// Whether `c` may appear in a channel name or a user id.
pub fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// Validates a channel name and returns its type.
pub fn validate(name: &str, max_len: usize) -> Result<ChannelType, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > max_len {
        return Err(NameError::TooLong(max_len));
    }
    let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
    if body.is_empty() || !body.bytes().all(is_name_char) {
        return Err(NameError::BadCharacter);
    }
    Ok(classify(name))
}

/// The user id of a `#server-to-user-{id}` channel.
pub fn server_to_user_id(name: &str) -> Option<&str> {
    name.strip_prefix(SERVER_TO_USER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_longest_prefix_first() {
        let k = |n| classify(n);
        assert_eq!(k("foo").kind, ChannelKind::Public);
        assert_eq!(
            k("cache-foo"),
            ChannelType {
                kind: ChannelKind::Public,
                cache: true
            }
        );
        assert_eq!(k("private-foo").kind, ChannelKind::Private);
        assert_eq!(
            k("private-cache-foo"),
            ChannelType {
                kind: ChannelKind::Private,
                cache: true
            }
        );
        assert_eq!(k("private-encrypted-foo").kind, ChannelKind::Encrypted);
        assert!(k("private-encrypted-cache-foo").cache);
        assert_eq!(k("presence-foo").kind, ChannelKind::Presence);
        assert!(k("presence-cache-foo").cache);
        assert_eq!(k("#server-to-user-1").kind, ChannelKind::ServerToUser);
        assert_eq!(k("privatefoo").kind, ChannelKind::Public);
    }

    #[test]
    fn names() {
        assert!(validate("private-App.Models.User.1", 200).is_ok());
        assert!(validate("a_b-c=d@e,f.g;h", 200).is_ok());
        assert!(validate("#server-to-user-42", 200).is_ok());
        assert_eq!(validate("", 200), Err(NameError::Empty));
        assert_eq!(validate("has space", 200), Err(NameError::BadCharacter));
        assert_eq!(validate("#other", 200), Err(NameError::BadCharacter));
        assert_eq!(
            validate("#server-to-user-", 200),
            Err(NameError::BadCharacter)
        );
        assert_eq!(validate("caf\u{e9}", 200), Err(NameError::BadCharacter));
        assert!(validate(&"a".repeat(200), 200).is_ok());
        assert_eq!(
            validate(&"a".repeat(201), 200),
            Err(NameError::TooLong(200))
        );
    }

    #[test]
    fn capabilities() {
        assert!(!classify("foo").allows_client_events());
        assert!(classify("private-foo").allows_client_events());
        assert!(classify("presence-foo").allows_client_events());
        assert!(!classify("private-encrypted-foo").allows_client_events());
        assert!(classify("private-encrypted-foo").needs_auth());
        assert!(!classify("cache-foo").needs_auth());
        assert!(!classify("#server-to-user-1").needs_auth());
    }
}
