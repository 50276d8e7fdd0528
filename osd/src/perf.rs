//! The OSD's perf counter loggers with Ceph's names, types, priorities,
//! nicks and descriptions: `osd` (client ops, sub-ops, recovery, PG counts,
//! space), `recoverystate_perf` (time spent in each peering state),
//! Kalmar's `osd_scrub` (scrubs this OSD ran as primary, the maps it
//! built, reads it repaired), and backfill counters Ceph lacks. The
//! ObjectStore registers its own `objectstore` logger beside them.

use std::sync::Arc;

use kalmar_common::perf::{
    CounterKind, PerfCounters, PerfCountersBuilder, Unit, PRIO_DEBUGONLY as D,
};

pub const L_OP_WIP: usize = 0;
pub const L_OP: usize = 1;
pub const L_OP_IN_BYTES: usize = 2;
pub const L_OP_OUT_BYTES: usize = 3;
pub const L_OP_LAT: usize = 4;
pub const L_OP_PROCESS_LAT: usize = 5;
pub const L_OP_PREPARE_LAT: usize = 6;
pub const L_OP_R: usize = 7;
pub const L_OP_R_OUT_BYTES: usize = 8;
pub const L_OP_R_LAT: usize = 9;
pub const L_OP_R_PROCESS_LAT: usize = 10;
pub const L_OP_W: usize = 11;
pub const L_OP_W_IN_BYTES: usize = 12;
pub const L_OP_W_LAT: usize = 13;
pub const L_OP_W_PROCESS_LAT: usize = 14;
pub const L_OP_W_PREPARE_LAT: usize = 15;
pub const L_OP_RW: usize = 16;
pub const L_OP_RW_IN_BYTES: usize = 17;
pub const L_OP_RW_OUT_BYTES: usize = 18;
pub const L_OP_RW_LAT: usize = 19;
pub const L_OP_RW_PROCESS_LAT: usize = 20;
pub const L_SUBOP: usize = 21;
pub const L_SUBOP_IN_BYTES: usize = 22;
pub const L_SUBOP_LAT: usize = 23;
pub const L_SUBOP_W: usize = 24;
pub const L_SUBOP_W_IN_BYTES: usize = 25;
pub const L_SUBOP_W_LAT: usize = 26;
pub const L_SUBOP_PULL: usize = 27;
pub const L_SUBOP_PUSH: usize = 28;
pub const L_SUBOP_PUSH_IN_BYTES: usize = 29;
pub const L_PULL: usize = 30;
pub const L_PUSH: usize = 31;
pub const L_PUSH_OUT_BYTES: usize = 32;
pub const L_RECOVERY_OPS: usize = 33;
pub const L_RECOVERY_BYTES: usize = 34;
pub const L_NUMPG: usize = 35;
pub const L_NUMPG_PRIMARY: usize = 36;
pub const L_NUMPG_REPLICA: usize = 37;
pub const L_NUMPG_STRAY: usize = 38;
pub const L_NUMPG_REMOVING: usize = 39;
pub const L_HEARTBEAT_TO_PEERS: usize = 40;
pub const L_MAP_MESSAGES: usize = 41;
pub const L_MAP_MESSAGE_EPOCHS: usize = 42;
pub const L_MAP_MESSAGE_EPOCH_DUPS: usize = 43;
pub const L_MESSAGES_DELAYED_FOR_MAP: usize = 44;
pub const L_STAT_BYTES: usize = 45;
pub const L_STAT_BYTES_USED: usize = 46;
pub const L_STAT_BYTES_AVAIL: usize = 47;
pub const L_LOADAVG: usize = 48;
pub const L_BACKFILL_OPS: usize = 49;
pub const L_BACKFILL_BYTES: usize = 50;
pub const L_BACKFILL_REMOVES: usize = 51;
pub const L_BACKFILL_SCANS: usize = 52;
pub const L_SUBOP_BACKFILL_REMOVE: usize = 53;

/// `(name, kind, description, nick, priority, unit)` in index order.
type Spec = (
    &'static str,
    CounterKind,
    &'static str,
    &'static str,
    u8,
    Unit,
);

const C: CounterKind = CounterKind::Counter;
const G: CounterKind = CounterKind::Gauge;
const T: CounterKind = CounterKind::TimeAvg;
const B: Unit = Unit::Bytes;
const N: Unit = Unit::None;

const OSD_COUNTERS: &[Spec] = &[
    (
        "op_wip",
        G,
        "Replication operations currently being processed (primary)",
        "",
        5,
        N,
    ),
    ("op", C, "Client operations", "ops", 10, N),
    (
        "op_in_bytes",
        C,
        "Client operations total write size",
        "wr",
        8,
        B,
    ),
    (
        "op_out_bytes",
        C,
        "Client operations total read size",
        "rd",
        8,
        B,
    ),
    (
        "op_latency",
        T,
        "Latency of client operations (including queue time)",
        "l",
        9,
        N,
    ),
    (
        "op_process_latency",
        T,
        "Latency of client operations (excluding queue time)",
        "",
        5,
        N,
    ),
    (
        "op_prepare_latency",
        T,
        "Latency of client operations (excluding queue time and wait for finished)",
        "",
        5,
        N,
    ),
    ("op_r", C, "Client read operations", "", 5, N),
    ("op_r_out_bytes", C, "Client data read", "", 5, B),
    (
        "op_r_latency",
        T,
        "Latency of read operation (including queue time)",
        "",
        5,
        N,
    ),
    (
        "op_r_process_latency",
        T,
        "Latency of read operation (excluding queue time)",
        "",
        5,
        N,
    ),
    ("op_w", C, "Client write operations", "", 5, N),
    ("op_w_in_bytes", C, "Client data written", "", 5, N),
    (
        "op_w_latency",
        T,
        "Latency of write operation (including queue time)",
        "",
        5,
        N,
    ),
    (
        "op_w_process_latency",
        T,
        "Latency of write operation (excluding queue time)",
        "",
        5,
        N,
    ),
    (
        "op_w_prepare_latency",
        T,
        "Latency of write operations (excluding queue time and wait for finished)",
        "",
        5,
        N,
    ),
    ("op_rw", C, "Client read-modify-write operations", "", 5, N),
    (
        "op_rw_in_bytes",
        C,
        "Client read-modify-write operations write in",
        "",
        5,
        B,
    ),
    (
        "op_rw_out_bytes",
        C,
        "Client read-modify-write operations read out ",
        "",
        5,
        B,
    ),
    (
        "op_rw_latency",
        T,
        "Latency of read-modify-write operation (including queue time)",
        "",
        5,
        N,
    ),
    (
        "op_rw_process_latency",
        T,
        "Latency of read-modify-write operation (excluding queue time)",
        "",
        5,
        N,
    ),
    ("subop", C, "Suboperations", "", D, N),
    ("subop_in_bytes", C, "Suboperations total size", "", D, B),
    ("subop_latency", T, "Suboperations latency", "", D, N),
    ("subop_w", C, "Replicated writes", "", D, N),
    (
        "subop_w_in_bytes",
        C,
        "Replicated written data size",
        "",
        D,
        B,
    ),
    ("subop_w_latency", T, "Replicated writes latency", "", D, N),
    ("subop_pull", C, "Suboperations pull requests", "", D, N),
    ("subop_push", C, "Suboperations push messages", "", D, N),
    (
        "subop_push_in_bytes",
        C,
        "Suboperations pushed size",
        "",
        D,
        B,
    ),
    ("pull", C, "Pull requests sent", "", D, N),
    ("push", C, "Push messages sent", "", D, N),
    ("push_out_bytes", C, "Pushed size", "", D, B),
    (
        "recovery_ops",
        C,
        "Started recovery operations",
        "rop",
        8,
        N,
    ),
    ("recovery_bytes", C, "recovery bytes", "rbt", 8, N),
    ("numpg", G, "Placement groups", "pgs", 5, N),
    (
        "numpg_primary",
        G,
        "Placement groups for which this osd is primary",
        "",
        D,
        N,
    ),
    (
        "numpg_replica",
        G,
        "Placement groups for which this osd is replica",
        "",
        D,
        N,
    ),
    (
        "numpg_stray",
        G,
        "Placement groups ready to be deleted from this osd",
        "",
        D,
        N,
    ),
    (
        "numpg_removing",
        G,
        "Placement groups queued for local deletion",
        "pgsr",
        5,
        N,
    ),
    (
        "heartbeat_to_peers",
        G,
        "Heartbeat (ping) peers we send to",
        "",
        D,
        N,
    ),
    ("map_messages", C, "OSD map messages", "", D, N),
    ("map_message_epochs", C, "OSD map epochs", "", D, N),
    ("map_message_epoch_dups", C, "OSD map duplicates", "", D, N),
    (
        "messages_delayed_for_map",
        C,
        "Operations waiting for OSD map",
        "",
        D,
        N,
    ),
    ("stat_bytes", G, "OSD size", "size", 5, B),
    ("stat_bytes_used", G, "Used space", "used", 5, B),
    ("stat_bytes_avail", G, "Available space", "", D, B),
    ("loadavg", G, "CPU load", "", D, N),
    // Backfill's share of recovery_ops / recovery_bytes (Ceph has no
    // such counters; named after those two), and its other work.
    (
        "backfill_ops",
        C,
        "Started backfill operations (object pushes to backfill targets)",
        "bop",
        8,
        N,
    ),
    ("backfill_bytes", C, "backfill bytes", "bbt", 8, B),
    (
        "backfill_removes",
        C,
        "Objects removed from backfill targets",
        "",
        5,
        N,
    ),
    (
        "backfill_scans",
        C,
        "Backfill range scans (of this OSD and of backfill targets)",
        "",
        5,
        N,
    ),
    (
        "subop_backfill_remove",
        C,
        "Objects removed as a backfill target",
        "",
        D,
        N,
    ),
];

fn build_from(name: &str, specs: &[Spec]) -> Arc<PerfCounters> {
    let mut b = PerfCountersBuilder::new(name);
    for &(n, kind, desc, nick, prio, unit) in specs {
        b.add(n, kind, desc, nick, prio, unit);
    }
    b.build()
}

/// The `osd` logger.
pub fn build_osd() -> Arc<PerfCounters> {
    build_from("osd", OSD_COUNTERS)
}

/// Peering states whose time `recoverystate_perf` records, with the
/// description Ceph gives each.
const STATE_COUNTERS: &[(&str, &str)] = &[
    ("initial_latency", "Initial recovery state latency"),
    ("started_latency", "Started recovery state latency"),
    ("reset_latency", "Reset recovery state latency"),
    ("start_latency", "Start recovery state latency"),
    ("primary_latency", "Primary recovery state latency"),
    ("peering_latency", "Peering recovery state latency"),
    ("backfilling_latency", "Backfilling recovery state latency"),
    (
        "waitremotebackfillreserved_latency",
        "Wait remote backfill reserved recovery state latency",
    ),
    (
        "waitlocalbackfillreserved_latency",
        "Wait local backfill reserved recovery state latency",
    ),
    (
        "notbackfilling_latency",
        "Notbackfilling recovery state latency",
    ),
    (
        "repnotrecovering_latency",
        "Repnotrecovering recovery state latency",
    ),
    (
        "repwaitrecoveryreserved_latency",
        "Rep wait recovery reserved recovery state latency",
    ),
    (
        "repwaitbackfillreserved_latency",
        "Rep wait backfill reserved recovery state latency",
    ),
    (
        "reprecovering_latency",
        "RepRecovering recovery state latency",
    ),
    ("activating_latency", "Activating recovery state latency"),
    (
        "waitlocalrecoveryreserved_latency",
        "Wait local recovery reserved recovery state latency",
    ),
    (
        "waitremoterecoveryreserved_latency",
        "Wait remote recovery reserved recovery state latency",
    ),
    ("recovering_latency", "Recovering recovery state latency"),
    ("recovered_latency", "Recovered recovery state latency"),
    ("clean_latency", "Clean recovery state latency"),
    ("active_latency", "Active recovery state latency"),
    (
        "replicaactive_latency",
        "Replicaactive recovery state latency",
    ),
    ("stray_latency", "Stray recovery state latency"),
    ("getinfo_latency", "Getinfo recovery state latency"),
    ("getlog_latency", "Getlog recovery state latency"),
    (
        "waitactingchange_latency",
        "Waitactingchange recovery state latency",
    ),
    ("incomplete_latency", "Incomplete recovery state latency"),
    ("down_latency", "Down recovery state latency"),
    ("getmissing_latency", "Getmissing recovery state latency"),
    ("waitupthru_latency", "Waitupthru recovery state latency"),
    (
        "notrecovering_latency",
        "Notrecovering recovery state latency",
    ),
    ("deleting_latency", "Deleting recovery state latency"),
    ("crashed_latency", "Crashed recovery state latency"),
];

/// The `recoverystate_perf` logger.
pub fn build_recoverystate() -> Arc<PerfCounters> {
    let mut b = PerfCountersBuilder::new("recoverystate_perf");
    for &(n, desc) in STATE_COUNTERS {
        b.add(n, CounterKind::TimeAvg, desc, "", D, Unit::None);
    }
    b.build()
}

pub const L_SCRUB_STARTED: usize = 0;
pub const L_SCRUB_COMPLETED: usize = 1;
pub const L_SCRUB_ABORTED: usize = 2;
pub const L_SCRUB_LATENCY: usize = 3;
pub const L_SCRUB_CHUNKS: usize = 4;
pub const L_SCRUB_OBJECTS: usize = 5;
pub const L_SCRUB_BYTES: usize = 6;
pub const L_SCRUB_ERRORS: usize = 7;
pub const L_SCRUB_REPAIRS: usize = 8;
pub const L_READ_REPAIRS: usize = 9;
pub const L_SCRUB_WRITES_DELAYED: usize = 10;

const SCRUB_COUNTERS: &[Spec] = &[
    ("scrubs_started", C, "Scrubs started as primary", "", 5, N),
    (
        "scrubs_completed",
        C,
        "Scrubs that ran to the end",
        "",
        5,
        N,
    ),
    (
        "scrubs_aborted",
        C,
        "Scrubs abandoned (new interval, member failure or timeout)",
        "",
        5,
        N,
    ),
    ("scrub_latency", T, "Duration of completed scrubs", "", 5, N),
    ("scrub_chunks", C, "Chunks compared", "", D, N),
    ("scrub_objects", C, "Objects compared", "", 5, N),
    (
        "scrub_read_bytes",
        C,
        "Object data read by deep scrubs (this OSD's maps)",
        "",
        5,
        B,
    ),
    (
        "scrub_inconsistent_objects",
        C,
        "Inconsistent objects found",
        "",
        8,
        N,
    ),
    (
        "scrub_repair_copies",
        C,
        "Bad copies queued for repair",
        "",
        5,
        N,
    ),
    (
        "read_repairs",
        C,
        "Client reads that found the primary's copy corrupt and recovered it from another copy",
        "",
        8,
        N,
    ),
    (
        "scrub_writes_delayed",
        C,
        "Client writes that waited for the scrub chunk holding their object",
        "",
        5,
        N,
    ),
];

/// The client-op counters a write request feeds. As Ceph's OSD: a request
/// that also reads (may_read and may_write) is counted as `op_rw`, one that
/// only writes as `op_w`. (Kalmar refuses a request that mixes reads into
/// a write with EINVAL before it is executed, so today every executed
/// write request counts as `op_w`; the split lives here so it stays right
/// when such requests are served.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCounters {
    pub ops: usize,
    pub in_bytes: usize,
    pub lat: usize,
    pub process_lat: usize,
}

pub fn write_counters(ops: &[kalmar_proto::client::OsdOp]) -> WriteCounters {
    if ops.iter().any(|o| !o.is_write()) {
        WriteCounters {
            ops: L_OP_RW,
            in_bytes: L_OP_RW_IN_BYTES,
            lat: L_OP_RW_LAT,
            process_lat: L_OP_RW_PROCESS_LAT,
        }
    } else {
        WriteCounters {
            ops: L_OP_W,
            in_bytes: L_OP_W_IN_BYTES,
            lat: L_OP_W_LAT,
            process_lat: L_OP_W_PROCESS_LAT,
        }
    }
}

/// The 1-minute load average ×100 (Ceph's `loadavg`), from
/// `/proc/loadavg`; `None` if it cannot be read.
pub fn loadavg_x100() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    parse_loadavg_x100(&text)
}

fn parse_loadavg_x100(text: &str) -> Option<u64> {
    let one: f64 = text.split_whitespace().next()?.parse().ok()?;
    (one.is_finite() && one >= 0.0).then(|| (one * 100.0).round() as u64)
}

/// The `osd_scrub` logger.
pub fn build_scrub() -> Arc<PerfCounters> {
    build_from("osd_scrub", SCRUB_COUNTERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rw_split_and_loadavg() {
        use kalmar_proto::client::OsdOp;
        let w = OsdOp::WriteFull {
            data: bytes::Bytes::from_static(b"x"),
        };
        assert_eq!(write_counters(std::slice::from_ref(&w)).ops, L_OP_W);
        let rw = write_counters(&[OsdOp::GetXattr { name: "a".into() }, w]);
        assert_eq!(
            (rw.ops, rw.in_bytes, rw.lat, rw.process_lat),
            (L_OP_RW, L_OP_RW_IN_BYTES, L_OP_RW_LAT, L_OP_RW_PROCESS_LAT)
        );
        assert_eq!(parse_loadavg_x100("0.42 0.30 0.2 1/99 123\n"), Some(42));
        assert_eq!(parse_loadavg_x100("junk"), None);
        assert!(loadavg_x100().is_some());
    }

    #[test]
    fn indexes_names_and_types_match_ceph() {
        let osd = build_osd();
        let check = [
            (L_OP_WIP, "op_wip"),
            (L_OP, "op"),
            (L_OP_LAT, "op_latency"),
            (L_OP_W_LAT, "op_w_latency"),
            (L_SUBOP_W, "subop_w"),
            (L_SUBOP_W_LAT, "subop_w_latency"),
            (L_RECOVERY_OPS, "recovery_ops"),
            (L_NUMPG, "numpg"),
            (L_NUMPG_REPLICA, "numpg_replica"),
            (L_STAT_BYTES, "stat_bytes"),
            (L_STAT_BYTES_AVAIL, "stat_bytes_avail"),
            (L_LOADAVG, "loadavg"),
        ];
        for (i, name) in check {
            assert_eq!(osd.descs()[i].name, name);
        }
        assert_eq!(osd.descs()[L_BACKFILL_OPS].name, "backfill_ops");
        assert_eq!(osd.descs()[L_BACKFILL_BYTES].name, "backfill_bytes");
        assert_eq!(osd.descs()[L_BACKFILL_REMOVES].name, "backfill_removes");
        assert_eq!(osd.descs()[L_BACKFILL_SCANS].name, "backfill_scans");
        assert_eq!(
            osd.descs()[L_SUBOP_BACKFILL_REMOVE].name,
            "subop_backfill_remove"
        );
        assert_eq!(osd.descs().len(), L_SUBOP_BACKFILL_REMOVE + 1);
        // Types and priorities as Ceph's `perf schema` of osd.0 shows them.
        let s = osd.schema();
        assert_eq!(s["op"]["type"], json!(10));
        assert_eq!(s["op"]["priority"], json!(10));
        assert_eq!(s["op"]["nick"], json!("ops"));
        assert_eq!(s["op_latency"]["type"], json!(5));
        assert_eq!(s["op_latency"]["priority"], json!(9));
        assert_eq!(s["op_in_bytes"]["units"], json!("bytes"));
        assert_eq!(s["op_w_in_bytes"]["units"], json!("none"));
        assert_eq!(s["numpg"]["type"], json!(2));
        assert_eq!(s["subop_w"]["priority"], json!(0));
        let rs = build_recoverystate();
        assert!(rs.index_of("getinfo_latency").is_some());
        assert!(rs.index_of("peering_latency").is_some());
        let sc = build_scrub();
        assert_eq!(sc.descs()[L_SCRUB_REPAIRS].name, "scrub_repair_copies");
        assert_eq!(sc.descs()[L_SCRUB_LATENCY].name, "scrub_latency");
    }
}
