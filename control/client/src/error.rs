//! The client's errors, each with the errno Ceph's tools exit with.

use kalmar_proto::client::errno;
use kalmar_proto::monc::MonClientError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("mon: {0}")]
    Mon(#[from] MonClientError),
    #[error("no OSD map from the mon within {0} ms (is the mon running?)")]
    NoMap(u128),
    #[error("pool '{0}' does not exist")]
    NoSuchPool(String),
    #[error("pg {0} does not exist")]
    NoSuchPg(String),
    #[error("{what} timed out after {ms} ms (no OSD answered; are the PG's OSDs up?)")]
    Timeout { what: String, ms: u128 },
    #[error("{msg} ({})", errno::describe(*.errno))]
    Osd { errno: i32, msg: String },
    #[error("{what}: the request is {len} bytes, over the {max}-byte message limit of the session to its OSD; send it in smaller pieces")]
    TooLarge {
        what: String,
        len: usize,
        max: usize,
    },
    #[error("bad reply: {0}")]
    BadReply(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("the client is shut down")]
    Shutdown,
}

impl ClientError {
    /// The positive errno of the failure (ENOENT for a missing pool...).
    pub fn errno(&self) -> i32 {
        match self {
            ClientError::Osd { errno, .. } => errno.abs(),
            ClientError::NoSuchPool(_) | ClientError::NoSuchPg(_) => errno::ENOENT,
            ClientError::Timeout { .. } | ClientError::NoMap(_) => errno::ETIMEDOUT,
            ClientError::Invalid(_) => errno::EINVAL,
            ClientError::TooLarge { .. } => errno::EMSGSIZE,
            ClientError::Mon(_) | ClientError::Shutdown => errno::EIO,
            ClientError::BadReply(_) => errno::EIO,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.errno() == errno::ENOENT
    }
}
