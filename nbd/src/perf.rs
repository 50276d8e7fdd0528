//! The `nbd` perf counters (Ceph's counter types, served by `perf dump`
//! on the admin socket): requests by kind, bytes, latency from request
//! arrival to completion, errors.

use std::sync::Arc;
use std::time::Duration;

use kalmar_common::perf::{
    CounterKind, PerfCounters, PerfCountersBuilder, Unit, PRIO_CRITICAL, PRIO_USEFUL,
};

use crate::proto::Command;

pub const LOGGER_NAME: &str = "nbd";

pub const L_OP_R: usize = 0;
pub const L_OP_R_BYTES: usize = 1;
pub const L_OP_R_LAT: usize = 2;
pub const L_OP_W: usize = 3;
pub const L_OP_W_BYTES: usize = 4;
pub const L_OP_W_LAT: usize = 5;
pub const L_OP_FLUSH: usize = 6;
pub const L_OP_DISCARD: usize = 7;
pub const L_OP_ERRORS: usize = 8;
pub const L_CONNECTIONS: usize = 9;

pub fn build() -> Arc<PerfCounters> {
    let mut b = PerfCountersBuilder::new(LOGGER_NAME);
    let (c, t, g) = (
        CounterKind::Counter,
        CounterKind::TimeAvg,
        CounterKind::Gauge,
    );
    let (n, by) = (Unit::None, Unit::Bytes);
    let ids = [
        b.add("op_r", c, "Read requests served", "rd", PRIO_CRITICAL, n),
        b.add("op_r_bytes", c, "Bytes read", "rdb", PRIO_USEFUL, by),
        b.add(
            "op_r_lat",
            t,
            "Read latency, request arrival to completion",
            "rlat",
            PRIO_CRITICAL,
            n,
        ),
        b.add("op_w", c, "Write requests served", "wr", PRIO_CRITICAL, n),
        b.add("op_w_bytes", c, "Bytes written", "wrb", PRIO_USEFUL, by),
        b.add(
            "op_w_lat",
            t,
            "Write latency, request arrival to durable",
            "wlat",
            PRIO_CRITICAL,
            n,
        ),
        b.add("op_flush", c, "Flush requests", "fl", PRIO_USEFUL, n),
        b.add(
            "op_discard",
            c,
            "Trim and write-zeroes requests",
            "dis",
            PRIO_USEFUL,
            n,
        ),
        b.add(
            "op_errors",
            c,
            "Requests answered with an error",
            "err",
            PRIO_USEFUL,
            n,
        ),
        b.add("connections", g, "Connections open", "conn", PRIO_USEFUL, n),
    ];
    debug_assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    b.build()
}

/// Accounts one finished request.
pub fn account(p: &PerfCounters, command: &Command, ok: bool, elapsed: Duration) {
    if !ok {
        p.inc(L_OP_ERRORS, 1);
        return;
    }
    match *command {
        Command::Read { len, .. } => {
            p.inc(L_OP_R, 1);
            p.inc(L_OP_R_BYTES, u64::from(len));
            p.tinc(L_OP_R_LAT, elapsed);
        }
        Command::Write { len, .. } => {
            p.inc(L_OP_W, 1);
            p.inc(L_OP_W_BYTES, u64::from(len));
            p.tinc(L_OP_W_LAT, elapsed);
        }
        Command::Flush => p.inc(L_OP_FLUSH, 1),
        Command::Trim { .. } | Command::WriteZeroes { .. } => p.inc(L_OP_DISCARD, 1),
        Command::Disconnect => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_match_declarations_and_accounting_counts() {
        let p = build();
        assert_eq!(p.index_of("op_w_lat"), Some(L_OP_W_LAT));
        assert_eq!(p.index_of("connections"), Some(L_CONNECTIONS));
        account(
            &p,
            &Command::Write {
                offset: 0,
                len: 4096,
                fua: false,
            },
            true,
            Duration::from_micros(50),
        );
        account(
            &p,
            &Command::Read {
                offset: 0,
                len: 512,
            },
            false,
            Duration::ZERO,
        );
        assert_eq!(p.get(L_OP_W_BYTES).value, 4096);
        assert_eq!(p.get(L_OP_ERRORS).value, 1);
        assert_eq!(p.get(L_OP_R).value, 0);
    }
}
