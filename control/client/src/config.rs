//! The client's bounds and timeouts, as named settings (Ceph's names
//! where Ceph has them).

use std::net::SocketAddr;
use std::time::Duration;

use kalmar_msgr::MsgrConfig;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub mon: SocketAddr,
    /// More mons to hunt among (a `mon_host` list).
    pub other_mons: Vec<SocketAddr>,
    /// An op not answered within this time fails with ETIMEDOUT
    /// (`rados_osd_op_timeout`).
    pub op_timeout: Duration,
    /// Bound on the first map and on mon commands (`rados_mon_op_timeout`).
    pub mon_timeout: Duration,
    /// Ops and payload bytes in flight at most (`objecter_inflight_ops`,
    /// `objecter_inflight_op_bytes`); further submissions wait.
    pub max_inflight_ops: usize,
    pub max_inflight_bytes: u64,
    /// First pause before resending an op an OSD asked to retry without
    /// naming a newer map epoch (or whose session closed as it was sent);
    /// the pause doubles on each retry of the op, up to
    /// `retry_backoff_max`, and never runs past the op's deadline.
    pub retry_backoff_min: Duration,
    pub retry_backoff_max: Duration,
    /// Test hook (`ms_inject_socket_failures`): close the session to the
    /// OSD after every N-th op sent, so ops are resent on a new session.
    /// 0 = off.
    pub inject_socket_failures: u64,
    pub msgr: MsgrConfig,
}

impl ClientConfig {
    pub fn new(mon: SocketAddr) -> Self {
        ClientConfig {
            mon,
            other_mons: Vec::new(),
            op_timeout: Duration::from_secs(30),
            mon_timeout: Duration::from_secs(30),
            max_inflight_ops: 1024,
            max_inflight_bytes: 100 << 20,
            retry_backoff_min: Duration::from_millis(20),
            retry_backoff_max: Duration::from_secs(1),
            inject_socket_failures: 0,
            // Sessions to an OSD keep reconnecting; the objecter drops them
            // when a new map takes the OSD down or moves it.
            msgr: MsgrConfig::default(),
        }
    }
}
