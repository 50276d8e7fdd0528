//! Building MgrReports from a daemon's perf counters: which counters this
//! session has declared (each once), and the packed values of all of them
//! in declaration order. No I/O.

use std::collections::HashMap;
use std::sync::Arc;

use kalmar_common::encoding::Blob;
use kalmar_common::perf::{PerfCollection, PerfCounters};
use kalmar_proto::mgr::{MgrReport, PerfCounterDecl};

/// One declared counter: where its value is read from.
#[derive(Clone)]
struct Declared {
    path: String,
    logger: Arc<PerfCounters>,
    index: usize,
    avg: bool,
}

/// The declarations of one session with the mgr.
#[derive(Clone, Default)]
pub struct ReportBuilder {
    declared: Vec<Declared>,
}

/// What [`ReportBuilder::build`] changed, so a report that could not be
/// sent can be taken back ([`ReportBuilder::rollback`]).
pub struct Pending {
    before: Vec<Declared>,
}

impl ReportBuilder {
    /// A new session: nothing declared yet.
    pub fn new() -> Self {
        ReportBuilder::default()
    }

    /// Counters declared so far in this session.
    pub fn declared_len(&self) -> usize {
        self.declared.len()
    }

    /// The next report: counters of `perf` with `priority >= threshold`;
    /// new ones are declared, vanished ones (a removed logger) undeclared,
    /// and every declared counter's value is packed in declaration order.
    pub fn build(
        &mut self,
        daemon_name: &str,
        service_name: &str,
        perf: &PerfCollection,
        threshold: u8,
    ) -> (MgrReport, Pending) {
        let before = self.declared.clone();
        let mut current: HashMap<String, Declared> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for logger in perf.loggers() {
            for (index, d) in logger.descs().iter().enumerate() {
                if d.priority < threshold {
                    continue;
                }
                let path = format!("{}.{}", logger.name(), d.name);
                order.push(path.clone());
                current.insert(
                    path.clone(),
                    Declared {
                        path,
                        logger: logger.clone(),
                        index,
                        avg: d.kind.is_avg(),
                    },
                );
            }
        }
        let mut undeclare_types = Vec::new();
        self.declared.retain_mut(|d| match current.remove(&d.path) {
            // A replaced logger (same name) is read from its new instance.
            Some(now) => {
                *d = now;
                true
            }
            None => {
                undeclare_types.push(d.path.clone());
                false
            }
        });
        let mut declare_types = Vec::new();
        for path in order {
            let Some(d) = current.remove(&path) else {
                continue;
            };
            let desc = &d.logger.descs()[d.index];
            declare_types.push(PerfCounterDecl {
                path: d.path.clone(),
                description: desc.description.to_string(),
                nick: desc.nick.to_string(),
                type_bits: desc.kind.type_bits(),
                priority: desc.priority,
                unit: desc.unit as u8,
            });
            self.declared.push(d);
        }
        let mut packed = Vec::with_capacity(self.declared.len() * 16);
        for d in &self.declared {
            let v = d.logger.get(d.index);
            packed.extend_from_slice(&v.value.to_le_bytes());
            if d.avg {
                packed.extend_from_slice(&v.count.to_le_bytes());
            }
        }
        let report = MgrReport {
            daemon_name: daemon_name.to_string(),
            service_name: service_name.to_string(),
            declare_types,
            undeclare_types,
            packed: Blob(packed),
            daemon_status: Default::default(),
        };
        (report, Pending { before })
    }

    /// Takes back the declarations of a report that was not sent.
    pub fn rollback(&mut self, pending: Pending) {
        self.declared = pending.before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::perf::{CounterKind, PerfCountersBuilder, Unit};

    fn logger(name: &str) -> Arc<PerfCounters> {
        let mut b = PerfCountersBuilder::new(name);
        b.add("op_w", CounterKind::Counter, "writes", "wr", 8, Unit::None);
        b.add(
            "op_w_lat",
            CounterKind::TimeAvg,
            "latency",
            "l",
            9,
            Unit::None,
        );
        b.add("debug", CounterKind::Gauge, "debug only", "", 0, Unit::None);
        b.build()
    }

    fn words(b: &Blob) -> Vec<u64> {
        b.0.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }

    #[test]
    fn declares_once_packs_in_order_and_undeclares() {
        let perf = PerfCollection::new();
        let osd = logger("osd");
        perf.add(osd.clone());
        osd.inc(0, 3);
        osd.tinc(1, std::time::Duration::from_nanos(50));
        let mut rb = ReportBuilder::new();
        let (r, _) = rb.build("osd.0", "osd", &perf, 5);
        let paths: Vec<&str> = r.declare_types.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["osd.op_w", "osd.op_w_lat"], "priority 0 filtered");
        assert_eq!(words(&r.packed), [3, 50, 1]);
        osd.inc(0, 2);
        let (r, _) = rb.build("osd.0", "osd", &perf, 5);
        assert!(r.declare_types.is_empty());
        assert_eq!(words(&r.packed), [5, 50, 1]);
        // A second logger: only its counters are declared, packed after.
        perf.add(logger("objectstore"));
        let (r, p) = rb.build("osd.0", "osd", &perf, 5);
        assert_eq!(r.declare_types.len(), 2);
        assert_eq!(words(&r.packed).len(), 6);
        // Not sent: the next report declares them again.
        rb.rollback(p);
        let (r, _) = rb.build("osd.0", "osd", &perf, 5);
        assert_eq!(r.declare_types.len(), 2);
        perf.remove("osd");
        let (r, _) = rb.build("osd.0", "osd", &perf, 5);
        assert_eq!(r.undeclare_types, ["osd.op_w", "osd.op_w_lat"]);
        assert_eq!(words(&r.packed).len(), 3);
        assert_eq!(rb.declared_len(), 2);
    }
}
