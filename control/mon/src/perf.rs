//! The mon's perf counters (Ceph's `mon`, `paxos` and `cluster` loggers,
//! the counters Kalmar's mon has a meaning for).

use std::sync::Arc;

use kalmar_common::perf::{
    CounterKind, PerfCollection, PerfCounters, PerfCountersBuilder, Unit, PRIO_USEFUL,
};

pub const MON_NUM_SESSIONS: usize = 0;
pub const MON_SESSION_ADD: usize = 1;
pub const MON_SESSION_RM: usize = 2;
pub const MON_COMMANDS: usize = 3;
pub const MON_MESSAGES: usize = 4;

pub const PAXOS_COMMIT: usize = 0;
pub const PAXOS_COMMIT_KEYS: usize = 1;
pub const PAXOS_COMMIT_LATENCY: usize = 2;

pub const CLUSTER_NUM_OSD: usize = 0;
pub const CLUSTER_NUM_OSD_UP: usize = 1;
pub const CLUSTER_NUM_OSD_IN: usize = 2;
pub const CLUSTER_OSD_EPOCH: usize = 3;
pub const CLUSTER_NUM_POOL: usize = 4;

pub struct MonPerf {
    pub collection: Arc<PerfCollection>,
    pub mon: Arc<PerfCounters>,
    pub paxos: Arc<PerfCounters>,
    pub cluster: Arc<PerfCounters>,
}

impl MonPerf {
    pub fn new() -> MonPerf {
        let mut b = PerfCountersBuilder::new("mon");
        b.add(
            "num_sessions",
            CounterKind::Gauge,
            "Open sessions",
            "sess",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "session_add",
            CounterKind::Counter,
            "Created sessions",
            "sadd",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "session_rm",
            CounterKind::Counter,
            "Removed sessions",
            "srm",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "commands",
            CounterKind::Counter,
            "Admin commands handled",
            "cmd",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "messages",
            CounterKind::Counter,
            "Messages received",
            "msg",
            PRIO_USEFUL,
            Unit::None,
        );
        let mon = b.build();
        let mut b = PerfCountersBuilder::new("paxos");
        b.add(
            "commit",
            CounterKind::Counter,
            "Commits",
            "cmt",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "commit_keys",
            CounterKind::U64Avg,
            "Keys per commit",
            "ckey",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "commit_latency",
            CounterKind::TimeAvg,
            "Commit latency",
            "clat",
            PRIO_USEFUL,
            Unit::None,
        );
        let paxos = b.build();
        let mut b = PerfCountersBuilder::new("cluster");
        b.add(
            "num_osd",
            CounterKind::Gauge,
            "OSDs",
            "nosd",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "num_osd_up",
            CounterKind::Gauge,
            "OSDs that are up",
            "osup",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "num_osd_in",
            CounterKind::Gauge,
            "OSDs that are in",
            "osin",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "osd_epoch",
            CounterKind::Gauge,
            "Current epoch of the OSD map",
            "epoc",
            PRIO_USEFUL,
            Unit::None,
        );
        b.add(
            "num_pool",
            CounterKind::Gauge,
            "Pools",
            "pool",
            PRIO_USEFUL,
            Unit::None,
        );
        let cluster = b.build();
        let collection = PerfCollection::new();
        collection.add(mon.clone());
        collection.add(paxos.clone());
        collection.add(cluster.clone());
        MonPerf {
            collection,
            mon,
            paxos,
            cluster,
        }
    }
}

impl Default for MonPerf {
    fn default() -> Self {
        MonPerf::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_match_names() {
        let p = MonPerf::new();
        assert_eq!(p.mon.index_of("session_rm"), Some(MON_SESSION_RM));
        assert_eq!(p.mon.index_of("messages"), Some(MON_MESSAGES));
        assert_eq!(
            p.paxos.index_of("commit_latency"),
            Some(PAXOS_COMMIT_LATENCY)
        );
        assert_eq!(p.cluster.index_of("num_pool"), Some(CLUSTER_NUM_POOL));
        assert_eq!(p.cluster.index_of("osd_epoch"), Some(CLUSTER_OSD_EPOCH));
    }
}
