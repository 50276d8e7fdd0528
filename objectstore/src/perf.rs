//! The `objectstore` perf counter logger.

use std::sync::Arc;

use kalmar_common::perf::{
    CounterKind, PerfCounters, PerfCountersBuilder, Unit, PRIO_CRITICAL, PRIO_INTERESTING,
    PRIO_USEFUL,
};

/// Name of the logger in `perf dump`.
pub const LOGGER_NAME: &str = "objectstore";

pub const L_TXNS: usize = 0;
pub const L_TXN_ERRORS: usize = 1;
pub const L_COMMIT_LAT: usize = 2;
pub const L_JOURNAL_WRITE_LAT: usize = 3;
pub const L_JOURNAL_RECORDS: usize = 4;
pub const L_JOURNAL_BYTES: usize = 5;
pub const L_GROUP_COMMIT_TXNS: usize = 6;
pub const L_KV_COMMIT_LAT: usize = 7;
pub const L_KV_FLUSH_LAT: usize = 8;
pub const L_CHECKPOINT_LAT: usize = 9;
pub const L_CHECKPOINTS: usize = 10;
pub const L_READ_LAT: usize = 11;
pub const L_READ_OPS: usize = 12;
pub const L_READ_BYTES: usize = 13;
pub const L_BYTES_WRITTEN: usize = 14;
pub const L_DEFERRED_WRITE_OPS: usize = 15;
pub const L_DEFERRED_WRITE_BYTES: usize = 16;
pub const L_BIG_WRITE_OPS: usize = 17;
pub const L_BIG_WRITE_BYTES: usize = 18;
pub const L_ALLOCATIONS: usize = 19;
pub const L_ALLOCATED_BYTES: usize = 20;
pub const L_CSUM_ERRORS: usize = 21;
pub const L_DEFERRED_APPLY_LAT: usize = 22;
pub const L_PREPARE_LAT: usize = 23;
pub const L_JOURNAL_FLUSH_LAT: usize = 24;

/// Builds the logger; register it in a daemon's `PerfCollection` with
/// [`crate::ObjectStore::perf_counters`].
pub fn build() -> Arc<PerfCounters> {
    let mut b = PerfCountersBuilder::new(LOGGER_NAME);
    let n = Unit::None;
    let by = Unit::Bytes;
    let add = |b: &mut PerfCountersBuilder, name, kind, desc, nick, prio, unit| {
        b.add(name, kind, desc, nick, prio, unit)
    };
    let c = CounterKind::Counter;
    let t = CounterKind::TimeAvg;
    let ids = [
        add(
            &mut b,
            "txns",
            c,
            "Transactions committed",
            "txn",
            PRIO_CRITICAL,
            n,
        ),
        add(
            &mut b,
            "txn_errors",
            c,
            "Transactions refused (no effect)",
            "terr",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "commit_lat",
            t,
            "Queue to durable commit latency",
            "clat",
            PRIO_CRITICAL,
            n,
        ),
        add(
            &mut b,
            "journal_write_lat",
            t,
            "Journal record write (FUA) latency",
            "jlat",
            PRIO_INTERESTING,
            n,
        ),
        add(
            &mut b,
            "journal_records",
            c,
            "Journal records written",
            "jrec",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "journal_bytes",
            c,
            "Journal bytes written",
            "jwb",
            PRIO_USEFUL,
            by,
        ),
        add(
            &mut b,
            "group_commit_txns",
            CounterKind::U64Avg,
            "Transactions per journal record",
            "grp",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "kv_commit_lat",
            t,
            "Metadata database batch write latency",
            "kvcl",
            PRIO_INTERESTING,
            n,
        ),
        add(
            &mut b,
            "kv_flush_lat",
            t,
            "Metadata database flush latency (checkpoint)",
            "kvfl",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "checkpoint_lat",
            t,
            "Checkpoint latency",
            "cpl",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "checkpoints",
            c,
            "Checkpoints (journal trims)",
            "cp",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "read_lat",
            t,
            "Object data read latency",
            "rlat",
            PRIO_CRITICAL,
            n,
        ),
        add(
            &mut b,
            "read_ops",
            c,
            "Object data reads",
            "rop",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "read_bytes",
            c,
            "Object data bytes read",
            "rb",
            PRIO_USEFUL,
            by,
        ),
        add(
            &mut b,
            "bytes_written",
            c,
            "Object data bytes written by transactions",
            "wb",
            PRIO_INTERESTING,
            by,
        ),
        add(
            &mut b,
            "deferred_write_ops",
            c,
            "Writes that rode in the journal",
            "dwo",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "deferred_write_bytes",
            c,
            "Bytes of blocks written through the journal",
            "dwb",
            PRIO_USEFUL,
            by,
        ),
        add(
            &mut b,
            "big_write_ops",
            c,
            "Writes to newly allocated space",
            "bwo",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "big_write_bytes",
            c,
            "Bytes of blocks written to new space",
            "bwb",
            PRIO_USEFUL,
            by,
        ),
        add(
            &mut b,
            "allocations",
            c,
            "Allocator calls",
            "allc",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "allocated_bytes",
            CounterKind::Gauge,
            "Data area bytes in use",
            "used",
            PRIO_INTERESTING,
            by,
        ),
        add(
            &mut b,
            "checksum_errors",
            c,
            "Reads failed by a checksum mismatch",
            "csum",
            PRIO_CRITICAL,
            n,
        ),
        add(
            &mut b,
            "deferred_apply_lat",
            t,
            "Writing journaled blocks home, per batch",
            "dal",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "prepare_lat",
            t,
            "Turning a transaction into physical changes",
            "prep",
            PRIO_USEFUL,
            n,
        ),
        add(
            &mut b,
            "journal_flush_lat",
            t,
            "Device flush making written records durable",
            "jfl",
            PRIO_USEFUL,
            n,
        ),
    ];
    debug_assert!(ids.iter().enumerate().all(|(i, &id)| i == id));
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_match_names() {
        let p = build();
        for (idx, name) in [
            (L_TXNS, "txns"),
            (L_COMMIT_LAT, "commit_lat"),
            (L_KV_COMMIT_LAT, "kv_commit_lat"),
            (L_READ_LAT, "read_lat"),
            (L_CSUM_ERRORS, "checksum_errors"),
            (L_PREPARE_LAT, "prepare_lat"),
        ] {
            assert_eq!(p.index_of(name), Some(idx));
        }
        assert_eq!(p.descs().len(), L_JOURNAL_FLUSH_LAT + 1);
    }
}
