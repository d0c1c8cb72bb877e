//! The Pusher wire protocol: frames in and out, channel kinds and name rules, error codes.
//! Pure functions and types only, no I/O.

pub mod channel;
pub mod codes;
pub mod error;
pub mod inbound;
pub mod outbound;
pub mod presence;
pub mod socket_id;

pub use channel::{ChannelKind, ChannelType};
pub use error::ProtocolError;
pub use inbound::Inbound;
pub use socket_id::SocketId;
