//! Socket ids: `<node>.<counter>`, matching `^\d+\.\d+$` as every SDK requires.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A connection's id. Compact and `Copy` so broadcasts can carry an exclusion cheaply.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SocketId {
    /// Random per node, so ids from different nodes of a cluster do not collide.
    pub node: u32,
    /// Increments for every connection on the node.
    pub seq: u64,
}

impl SocketId {
    /// Parses `^\d+\.\d+$`; `None` for anything else.
    pub fn parse(s: &str) -> Option<SocketId> {
        let (a, b) = s.split_once('.')?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return None;
        }
        Some(SocketId {
            node: a.parse().ok()?,
            seq: b.parse().ok()?,
        })
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.seq)
    }
}

/// Hands out unique socket ids for one node.
#[derive(Debug)]
pub struct SocketIdGen {
    node: u32,
    next: AtomicU64,
}

impl SocketIdGen {
    /// A generator with the given node number; the counter starts at a random point too.
    pub fn new(node: u32, start: u64) -> Self {
        SocketIdGen {
            node,
            next: AtomicU64::new(start),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> SocketId {
        SocketId {
            node: self.node,
            seq: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_digits_dot_digits() {
        assert_eq!(
            SocketId::parse("1234.5678"),
            Some(SocketId {
                node: 1234,
                seq: 5678
            })
        );
        for bad in [
            "",
            "1234",
            "1234.",
            ".5",
            "12a.5",
            "1.2.3",
            "-1.2",
            "1. 2",
            "99999999999.1",
        ] {
            assert_eq!(SocketId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_unique_and_round_trip() {
        let g = SocketIdGen::new(42, 7);
        let a = g.next_id();
        let b = g.next_id();
        assert_ne!(a, b);
        assert_eq!(a.to_string(), "42.7");
        assert_eq!(SocketId::parse(&b.to_string()), Some(b));
    }
}
