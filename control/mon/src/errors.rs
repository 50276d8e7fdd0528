//! Command errors: a negative errno (what Ceph's CLI exits with) and a
//! message for the user.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CmdError {
    pub retval: i32,
    pub msg: String,
}

pub const EPERM: i32 = -1;
pub const EACCES: i32 = -13;
pub const ENOENT: i32 = -2;
pub const EEXIST: i32 = -17;
pub const EINVAL: i32 = -22;
pub const ERANGE: i32 = -34;
pub const EOPNOTSUPP: i32 = -95;

impl CmdError {
    pub fn new(retval: i32, msg: impl Into<String>) -> Self {
        CmdError {
            retval,
            msg: msg.into(),
        }
    }
    pub fn inval(msg: impl Into<String>) -> Self {
        CmdError::new(EINVAL, msg)
    }
    pub fn noent(msg: impl Into<String>) -> Self {
        CmdError::new(ENOENT, msg)
    }
}

impl From<kalmar_maps::MapError> for CmdError {
    fn from(e: kalmar_maps::MapError) -> Self {
        use kalmar_maps::MapError as M;
        let retval = match e {
            M::NoSuchOsd { .. } | M::NoSuchPool(_) | M::NoSuchPoolName(_) | M::NoSuchRule(_) => {
                ENOENT
            }
            M::PgOutOfRange { .. } => ENOENT,
            _ => EINVAL,
        };
        CmdError::new(retval, e.to_string())
    }
}
