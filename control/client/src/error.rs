//! The client's errors: each variant says what happened, and
//! [`ClientError::errno`] gives the errno Ceph's tools exit with.

use kalmar_proto::client::errno::describe;
use kalmar_proto::monc::MonClientError;
use nix::errno::Errno;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("mon: {0}")]
    Mon(#[from] MonClientError),
    #[error("no OSD map from the mon within {0} ms (is the mon running?)")]
    NoMap(u128),
    #[error("pool '{0}' does not exist")]
    NoSuchPool(String),
    #[error("pg {0} does not exist")]
    NoSuchPg(String),
    /// The PG's primary answered that the object does not exist. Shown
    /// as Ceph's tools show ENOENT.
    #[error("{msg} ({})", describe(libc::ENOENT))]
    ObjectNotFound { object: String, msg: String },
    #[error("{what} timed out after {ms} ms (no OSD answered; are the PG's OSDs up?)")]
    Timeout { what: String, ms: u128 },
    /// Any other failure an OSD answered with. Shown with glibc's
    /// `strerror` text, as Ceph's tools show it (nix's `desc()` words some
    /// differently, e.g. EDQUOT).
    #[error("{msg} ({})", describe(*errno as i32))]
    Osd { errno: Errno, msg: String },
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
    /// The errno of the failure (ENOENT for a missing pool, PG or
    /// object, ESHUTDOWN once the client is shut down...).
    pub fn errno_value(&self) -> Errno {
        match self {
            ClientError::Osd { errno, .. } => *errno,
            ClientError::NoSuchPool(_)
            | ClientError::NoSuchPg(_)
            | ClientError::ObjectNotFound { .. } => Errno::ENOENT,
            ClientError::Timeout { .. } | ClientError::NoMap(_) => Errno::ETIMEDOUT,
            ClientError::Invalid(_) => Errno::EINVAL,
            ClientError::TooLarge { .. } => Errno::EMSGSIZE,
            ClientError::Shutdown => Errno::ESHUTDOWN,
            ClientError::Mon(_) | ClientError::BadReply(_) => Errno::EIO,
        }
    }

    /// The positive errno, as Ceph's tools exit with.
    pub fn errno(&self) -> i32 {
        self.errno_value() as i32
    }

    /// True only when the object itself is missing (not its pool or PG).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::ObjectNotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_object_is_not_found() {
        let object = ClientError::ObjectNotFound {
            object: "o".into(),
            msg: "op on 'o': no such object".into(),
        };
        assert!(object.is_not_found());
        assert_eq!(
            object.to_string(),
            "op on 'o': no such object (No such file or directory)"
        );
        assert_eq!(object.errno(), libc::ENOENT);
        for e in [
            ClientError::NoSuchPool("rbd".into()),
            ClientError::NoSuchPg("1.7".into()),
        ] {
            assert!(!e.is_not_found(), "{e}");
            assert_eq!(e.errno(), libc::ENOENT, "{e}");
        }
        let osd_enoent = ClientError::Osd {
            errno: Errno::ENOENT,
            msg: "op on pg 1.7: no scrub record".into(),
        };
        assert!(!osd_enoent.is_not_found(), "a PG command's ENOENT");
    }

    #[test]
    fn errnos() {
        let cases = [
            (ClientError::Shutdown, libc::ESHUTDOWN),
            (
                ClientError::Timeout {
                    what: "op".into(),
                    ms: 1,
                },
                libc::ETIMEDOUT,
            ),
            (ClientError::NoMap(1), libc::ETIMEDOUT),
            (ClientError::Invalid("x".into()), libc::EINVAL),
            (
                ClientError::TooLarge {
                    what: "op".into(),
                    len: 2,
                    max: 1,
                },
                libc::EMSGSIZE,
            ),
            (ClientError::BadReply("x".into()), libc::EIO),
            (
                ClientError::Osd {
                    errno: Errno::EDQUOT,
                    msg: "op".into(),
                },
                libc::EDQUOT,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.errno(), want, "{e}");
        }
        let shown = ClientError::Osd {
            errno: Errno::ENOSPC,
            msg: "op on 'o'".into(),
        }
        .to_string();
        assert_eq!(shown, "op on 'o' (No space left on device)");
        let quota = ClientError::Osd {
            errno: Errno::EDQUOT,
            msg: "op on 'o'".into(),
        };
        assert_eq!(quota.to_string(), "op on 'o' (Disk quota exceeded)");
    }
}
