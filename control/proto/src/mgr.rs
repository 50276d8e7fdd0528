//! The mgr protocol (Ceph's MMgrOpen / MMgrConfigure / MMgrReport /
//! MMgrClose): what daemons (OSDs, the mon) send to the active mgr.
//!
//! A session: the daemon connects to the MgrMap's active address and sends
//! [`MgrOpen`]; the mgr answers [`MgrConfigure`] (report period, priority
//! threshold); then every period the daemon sends a [`MgrReport`] whose
//! `declare_types` names each counter once per session and whose `packed`
//! carries one value per declared counter, in declaration order
//! (little-endian u64; averages add their sample count). OSDs also send
//! their PG statistics ([`crate::pgstats::OsdPgStats`]) on the same
//! session. After a failover the daemon opens a new session at the new
//! mgr and declares everything again.
//!
//! Commands to the mgr (`tell mgr ...`, `pg dump`, `df`, ...) reuse
//! [`crate::mon::MonCommand`] / [`crate::mon::MonCommandReply`], so
//! [`crate::monc::MonClient`] can talk to a mgr as it talks to a mon.

use std::collections::BTreeMap;

use kalmar_common::encoding::Blob;
use kalmar_common::impl_versioned;

use crate::payload;
use crate::registry::{MGR_CLOSE, MGR_CONFIGURE, MGR_OPEN, MGR_REPORT};

/// Report period the mgr hands out unless configured (`mgr_stats_period`).
pub const DEFAULT_STATS_PERIOD_MS: u64 = 5_000;
/// Counters below this priority are not sent (`mgr_stats_threshold`).
pub const DEFAULT_STATS_THRESHOLD: u8 = 5;

/// A daemon starts a session with the mgr.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrOpen {
    /// `osd.0`, `mon.a`.
    pub daemon_name: String,
    /// `osd`, `mon`.
    pub service_name: String,
    /// Ceph's `daemon_metadata` (hostname, addresses, objectstore, ...).
    pub metadata: BTreeMap<String, String>,
    pub daemon_status: BTreeMap<String, String>,
}
impl_versioned!(MgrOpen, "mgr open", version = 1, compat = 1, {
    daemon_name, service_name, metadata, daemon_status,
});
payload!(MgrOpen, MGR_OPEN, "mgr_open");

/// The mgr's answer to [`MgrOpen`]: how often to report and what.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrConfigure {
    pub stats_period_ms: u64,
    /// Only counters with `priority >= stats_threshold` are reported.
    pub stats_threshold: u8,
}
impl_versioned!(MgrConfigure, "mgr configure", version = 1, compat = 1, {
    stats_period_ms, stats_threshold,
});
payload!(MgrConfigure, MGR_CONFIGURE, "mgr_configure");

/// One declared counter (Ceph's `PerfCounterType`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PerfCounterDecl {
    /// `logger.counter`, e.g. `osd.op_w`.
    pub path: String,
    pub description: String,
    pub nick: String,
    /// Ceph's `PERFCOUNTER_*` type bits.
    pub type_bits: u8,
    pub priority: u8,
    /// Ceph's `unit_t`: 0 bytes, 1 none.
    pub unit: u8,
}
impl_versioned!(PerfCounterDecl, "perf counter decl", version = 1, compat = 1, {
    path, description, nick, type_bits, priority, unit,
});

impl PerfCounterDecl {
    /// Packed u64 words the counter takes (averages carry a count too).
    pub fn packed_words(&self) -> usize {
        if self.type_bits & kalmar_common::perf::PERFCOUNTER_LONGRUNAVG != 0 {
            2
        } else {
            1
        }
    }
}

/// The periodic report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrReport {
    pub daemon_name: String,
    pub service_name: String,
    /// Counters declared for the first time in this session.
    pub declare_types: Vec<PerfCounterDecl>,
    /// Paths no longer reported.
    pub undeclare_types: Vec<String>,
    /// Little-endian u64 values of every declared counter, in order.
    pub packed: Blob,
    pub daemon_status: BTreeMap<String, String>,
}
impl_versioned!(MgrReport, "mgr report", version = 1, compat = 1, {
    daemon_name, service_name, declare_types, undeclare_types, packed, daemon_status,
});
payload!(MgrReport, MGR_REPORT, "mgr_report");

/// A daemon ends its session (clean shutdown).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrClose {
    pub daemon_name: String,
}
impl_versioned!(MgrClose, "mgr close", version = 1, compat = 1, {
    daemon_name
});
payload!(MgrClose, MGR_CLOSE, "mgr_close");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;

    #[test]
    fn roundtrips() {
        let open = MgrOpen {
            daemon_name: "osd.3".into(),
            service_name: "osd".into(),
            metadata: BTreeMap::from([("hostname".to_string(), "n1".to_string())]),
            daemon_status: BTreeMap::new(),
        };
        assert_eq!(
            MgrOpen::from_message(&open.to_message()).expect("decodes"),
            open
        );
        let report = MgrReport {
            daemon_name: "osd.3".into(),
            service_name: "osd".into(),
            declare_types: vec![PerfCounterDecl {
                path: "osd.op_w".into(),
                description: "writes".into(),
                nick: "wr".into(),
                type_bits: 10,
                priority: 8,
                unit: 1,
            }],
            undeclare_types: vec!["osd.gone".into()],
            packed: Blob(7u64.to_le_bytes().to_vec()),
            daemon_status: BTreeMap::new(),
        };
        assert_eq!(
            MgrReport::from_message(&report.to_message()).expect("decodes"),
            report
        );
        assert_eq!(report.declare_types[0].packed_words(), 1);
        let conf = MgrConfigure {
            stats_period_ms: 5000,
            stats_threshold: 5,
        };
        assert_eq!(
            MgrConfigure::from_message(&conf.to_message()).expect("decodes"),
            conf
        );
        assert!(MgrClose::from_message(&conf.to_message()).is_err());
    }
}
