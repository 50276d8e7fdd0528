//! The mgr's own perf counters (`mgr` logger, on its admin socket).

use std::sync::Arc;

use kalmar_common::perf::{
    CounterKind, PerfCounters, PerfCountersBuilder, Unit, PRIO_INTERESTING, PRIO_USEFUL,
};

pub const L_SESSIONS: usize = 0;
pub const L_OPENS: usize = 1;
pub const L_REPORTS: usize = 2;
pub const L_REPORT_BYTES: usize = 3;
pub const L_REPORTS_REFUSED: usize = 4;
pub const L_PG_STATS: usize = 5;
pub const L_COMMANDS: usize = 6;

pub fn build() -> Arc<PerfCounters> {
    let mut b = PerfCountersBuilder::new("mgr");
    let c = CounterKind::Counter;
    let specs: [(
        &'static str,
        CounterKind,
        &'static str,
        &'static str,
        u8,
        Unit,
    ); 7] = [
        (
            "daemon_sessions",
            CounterKind::Gauge,
            "Daemon sessions open",
            "sess",
            PRIO_INTERESTING,
            Unit::None,
        ),
        (
            "daemon_opens",
            c,
            "MgrOpen messages accepted",
            "open",
            PRIO_USEFUL,
            Unit::None,
        ),
        (
            "reports",
            c,
            "MgrReport messages ingested",
            "rep",
            PRIO_INTERESTING,
            Unit::None,
        ),
        (
            "report_bytes",
            c,
            "Packed counter bytes ingested",
            "repb",
            PRIO_USEFUL,
            Unit::Bytes,
        ),
        (
            "reports_refused",
            c,
            "Reports refused (bad declarations)",
            "ref",
            PRIO_USEFUL,
            Unit::None,
        ),
        (
            "pg_stats",
            c,
            "PG stats messages applied",
            "pgs",
            PRIO_USEFUL,
            Unit::None,
        ),
        (
            "commands",
            c,
            "Commands served",
            "cmd",
            PRIO_USEFUL,
            Unit::None,
        ),
    ];
    for (i, (name, kind, desc, nick, prio, unit)) in specs.into_iter().enumerate() {
        let idx = b.add(name, kind, desc, nick, prio, unit);
        debug_assert_eq!(idx, i);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn indexes_match_names() {
        let p = super::build();
        assert_eq!(p.index_of("daemon_sessions"), Some(super::L_SESSIONS));
        assert_eq!(p.index_of("commands"), Some(super::L_COMMANDS));
        assert_eq!(p.index_of("pg_stats"), Some(super::L_PG_STATS));
    }
}
