//! Typed errors of the peering crate.

use crate::eversion::Eversion;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeeringError {
    #[error("cannot parse {what} from {input:?}")]
    Parse { what: &'static str, input: String },
    #[error("log entry {entry} is not newer than the log head {head}: entries must be appended in version order")]
    LogOrder { entry: Eversion, head: Eversion },
    #[error("log of {head} does not overlap the authoritative log ({auth_tail}, {auth_head}]: the OSD needs backfill, not log recovery")]
    NoOverlap {
        head: Eversion,
        auth_tail: Eversion,
        auth_head: Eversion,
    },
    #[error("cannot trim the log to {to}: beyond its head {head}")]
    TrimPastHead { to: Eversion, head: Eversion },
}
