//! The NBD protocol (fixed newstyle handshake and transmission phase) as
//! pure, socket-free code: constants, option negotiation, request checks
//! and reply encoding.

pub mod consts;
pub mod handshake;
pub mod reply;
pub mod request;

pub use consts::Errno;
pub use handshake::{
    BlockSizes, ClientFlags, ExportInfo, HandshakeError, Negotiator, OptOutcome, OptReply, Session,
};
pub use request::{validate, Command, Refusal, RequestHeader};

#[cfg(test)]
mod request_tests;
