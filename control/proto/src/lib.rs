//! The message catalogue shared by the mon, OSDs, mgr and clients.
//!
//! Every message is a versioned struct (`impl_versioned!`) with a `u16`
//! type id from the [`registry`]. The id ranges are reserved per protocol:
//! mon 1-99, OSD<->OSD 100-199, client<->OSD 200-299, mgr 300-399.
//!
//! - [`mon`]: the mon protocol (subscriptions, maps, OSD lifecycle, mgr
//!   beacons, commands).
//! - [`monc`]: a client of the mon for daemons and the CLI (commands with
//!   timeouts, subscriptions that survive a mon restart).
//! - [`osd`]: OSD <-> OSD (heartbeats, replicated writes, peering envelope).
//! - [`client`]: client <-> OSD object operations.
//! - [`mgr`]: daemons -> mgr (open, configure, perf counter reports).
//! - [`pgstats`]: PG and OSD statistics reported by OSDs.
//! - [`segments`]: messages whose bulk data travels outside the header.
#![deny(clippy::unwrap_used)]

pub mod client;
pub mod mgr;
pub mod mon;
pub mod monc;
pub mod osd;
pub mod pgstats;
pub mod registry;
pub mod segments;

use kalmar_common::encoding::{Decode, DecodeError, Encode};
use kalmar_msgr::Message;

/// A message payload with its registered type id.
pub trait Payload: Encode + Decode {
    const TYPE: u16;
    const NAME: &'static str;

    /// Encodes into a messenger message.
    fn to_message(&self) -> Message {
        Message::new(Self::TYPE, self.to_bytes())
    }

    /// Decodes a messenger message, checking its type id.
    fn from_message(msg: &Message) -> Result<Self, ProtoError> {
        if msg.msg_type != Self::TYPE {
            return Err(ProtoError::WrongType {
                expected: Self::NAME,
                got: msg.msg_type,
            });
        }
        Self::from_bytes(&msg.contiguous()).map_err(|source| ProtoError::Decode {
            what: Self::NAME,
            source,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("expected a {expected} message, got type {got} ({})", registry::type_name(*got).unwrap_or("unknown"))]
    WrongType { expected: &'static str, got: u16 },
    #[error("malformed {what} message: {source}")]
    Decode {
        what: &'static str,
        source: DecodeError,
    },
    #[error("unknown message type {0}")]
    UnknownType(u16),
}

/// Declares a payload's type id and name.
#[macro_export]
macro_rules! payload {
    ($ty:ident, $id:expr, $name:literal) => {
        impl $crate::Payload for $ty {
            const TYPE: u16 = $id;
            const NAME: &'static str = $name;
        }
    };
}
