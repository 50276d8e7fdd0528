//! Perf counters with Ceph's types, priorities and JSON shapes.
//!
//! A daemon owns one [`PerfCollection`]; each subsystem registers a logger
//! ([`PerfCounters`], e.g. `osd`, `objectstore`) built from a
//! [`PerfCountersBuilder`]. Counters are addressed by the index given at
//! build time, so updating one is a single relaxed atomic add: cheap enough
//! for the data path.
//!
//! `perf dump` and `perf schema` render as Ceph's admin socket does:
//! u64 -> integer; time -> seconds; averages -> `{avgcount, sum[, avgtime]}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::{json, Map, Value};

/// Bits of Ceph's `perfcounter_type_d`.
pub const PERFCOUNTER_TIME: u8 = 0x1;
pub const PERFCOUNTER_U64: u8 = 0x2;
pub const PERFCOUNTER_LONGRUNAVG: u8 = 0x4;
pub const PERFCOUNTER_COUNTER: u8 = 0x8;

/// Ceph's priorities (`PerfCountersBuilder::PRIO_*`).
pub const PRIO_CRITICAL: u8 = 10;
pub const PRIO_INTERESTING: u8 = 8;
pub const PRIO_USEFUL: u8 = 5;
pub const PRIO_UNINTERESTING: u8 = 2;
pub const PRIO_DEBUGONLY: u8 = 0;

/// What a counter measures, which fixes its Ceph type bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// `add_u64`: a gauge (type 2).
    Gauge,
    /// `add_u64_counter`: monotonic (type 10).
    Counter,
    /// `add_u64_avg`: sum and count of u64 samples (type 6).
    U64Avg,
    /// `add_time`: a time value in nanoseconds (type 1).
    Time,
    /// `add_time_avg`: sum and count of durations (type 5).
    TimeAvg,
}

impl CounterKind {
    pub fn type_bits(self) -> u8 {
        match self {
            CounterKind::Gauge => PERFCOUNTER_U64,
            CounterKind::Counter => PERFCOUNTER_U64 | PERFCOUNTER_COUNTER,
            CounterKind::U64Avg => PERFCOUNTER_U64 | PERFCOUNTER_LONGRUNAVG,
            CounterKind::Time => PERFCOUNTER_TIME,
            CounterKind::TimeAvg => PERFCOUNTER_TIME | PERFCOUNTER_LONGRUNAVG,
        }
    }

    pub fn from_type_bits(bits: u8) -> Option<CounterKind> {
        [
            CounterKind::Gauge,
            CounterKind::Counter,
            CounterKind::U64Avg,
            CounterKind::Time,
            CounterKind::TimeAvg,
        ]
        .into_iter()
        .find(|k| k.type_bits() == bits)
    }

    pub fn is_avg(self) -> bool {
        matches!(self, CounterKind::U64Avg | CounterKind::TimeAvg)
    }

    pub fn is_time(self) -> bool {
        matches!(self, CounterKind::Time | CounterKind::TimeAvg)
    }
}

/// Ceph's `unit_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes = 0,
    None = 1,
}

/// The static description of one counter.
#[derive(Debug, Clone)]
pub struct CounterDesc {
    pub name: &'static str,
    pub description: &'static str,
    pub nick: &'static str,
    pub kind: CounterKind,
    pub priority: u8,
    pub unit: Unit,
}

/// Declares the counters of one logger; indexes are the declaration order.
pub struct PerfCountersBuilder {
    name: String,
    descs: Vec<CounterDesc>,
    refresh: Option<RefreshFn>,
}

/// Brings a logger's values up to date just before they are read, for
/// loggers that mirror totals kept elsewhere (the allocator's), so nothing
/// has to copy them periodically. It must only `set`/`inc`, never read.
pub type RefreshFn = fn(&PerfCounters);

impl PerfCountersBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        PerfCountersBuilder {
            name: name.into(),
            descs: Vec::new(),
            refresh: None,
        }
    }

    /// Adds a counter and returns its index. Callers keep the indexes as
    /// named constants and assert them in a test, as Ceph's enums do.
    pub fn add(
        &mut self,
        name: &'static str,
        kind: CounterKind,
        description: &'static str,
        nick: &'static str,
        priority: u8,
        unit: Unit,
    ) -> usize {
        self.descs.push(CounterDesc {
            name,
            description,
            nick,
            kind,
            priority,
            unit,
        });
        self.descs.len() - 1
    }

    /// Calls `f` before every read of the built logger ([`RefreshFn`]).
    pub fn refresh_with(&mut self, f: RefreshFn) {
        self.refresh = Some(f);
    }

    pub fn build(self) -> Arc<PerfCounters> {
        let values = self.descs.iter().map(|_| Slot::default()).collect();
        Arc::new(PerfCounters {
            name: self.name,
            descs: self.descs,
            values,
            refresh: self.refresh,
        })
    }
}

#[derive(Default)]
struct Slot {
    /// Value, or sum for averages (nanoseconds for time kinds).
    sum: AtomicU64,
    count: AtomicU64,
}

/// One logger's live counters.
pub struct PerfCounters {
    name: String,
    descs: Vec<CounterDesc>,
    values: Vec<Slot>,
    refresh: Option<RefreshFn>,
}

/// A consistent-enough reading of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterValue {
    /// The value, or the sum for averages; time kinds in nanoseconds.
    pub value: u64,
    /// Number of samples for averages, 0 otherwise.
    pub count: u64,
}

impl PerfCounters {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn descs(&self) -> &[CounterDesc] {
        &self.descs
    }

    /// Adds to a gauge or counter.
    pub fn inc(&self, idx: usize, by: u64) {
        self.values[idx].sum.fetch_add(by, Ordering::Relaxed);
    }

    /// Subtracts from a gauge, saturating at zero.
    pub fn dec(&self, idx: usize, by: u64) {
        let slot = &self.values[idx].sum;
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(by))
        });
    }

    /// Sets a gauge.
    pub fn set(&self, idx: usize, v: u64) {
        self.values[idx].sum.store(v, Ordering::Relaxed);
    }

    /// Adds one sample to a u64 average.
    pub fn avg_add(&self, idx: usize, sample: u64) {
        let s = &self.values[idx];
        s.sum.fetch_add(sample, Ordering::Relaxed);
        s.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one duration to a time average (or to a plain time counter).
    pub fn tinc(&self, idx: usize, d: Duration) {
        let s = &self.values[idx];
        s.sum.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        if self.descs[idx].kind.is_avg() {
            s.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, idx: usize) -> CounterValue {
        if let Some(refresh) = self.refresh {
            refresh(self);
        }
        let s = &self.values[idx];
        // Read count first: a concurrent sample may make sum slightly ahead
        // of count, never a count without its sum.
        let count = s.count.load(Ordering::Relaxed);
        let value = s.sum.load(Ordering::Relaxed);
        CounterValue { value, count }
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.descs.iter().position(|d| d.name == name)
    }

    /// Zeroes every counter (`perf reset`).
    pub fn reset(&self) {
        for s in &self.values {
            s.sum.store(0, Ordering::Relaxed);
            s.count.store(0, Ordering::Relaxed);
        }
    }

    /// This logger's `perf dump` object.
    pub fn dump(&self) -> Value {
        let mut m = Map::new();
        for (i, d) in self.descs.iter().enumerate() {
            m.insert(d.name.to_string(), dump_value(d.kind, self.get(i)));
        }
        Value::Object(m)
    }

    /// This logger's `perf schema` object.
    pub fn schema(&self) -> Value {
        let mut m = Map::new();
        for d in &self.descs {
            m.insert(d.name.to_string(), schema_entry(d));
        }
        Value::Object(m)
    }
}

fn nanos_to_secs(ns: u64) -> f64 {
    // Ceph prints seconds with nine decimals; round through the integer
    // parts so the JSON carries no binary noise.
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    secs as f64 + frac as f64 / 1e9
}

/// Renders one value as Ceph's `perf dump` does.
pub fn dump_value(kind: CounterKind, v: CounterValue) -> Value {
    match kind {
        CounterKind::Gauge | CounterKind::Counter => json!(v.value),
        CounterKind::Time => json!(nanos_to_secs(v.value)),
        CounterKind::U64Avg => json!({"avgcount": v.count, "sum": v.value}),
        CounterKind::TimeAvg => {
            let avg = v.value.checked_div(v.count).unwrap_or(0);
            json!({
                "avgcount": v.count,
                "sum": nanos_to_secs(v.value),
                "avgtime": nanos_to_secs(avg),
            })
        }
    }
}

/// One counter's `perf schema` entry.
pub fn schema_entry(d: &CounterDesc) -> Value {
    let metric_type = if d.kind.type_bits() & (PERFCOUNTER_COUNTER | PERFCOUNTER_LONGRUNAVG)
        == PERFCOUNTER_COUNTER
    {
        "counter"
    } else {
        "gauge"
    };
    let value_type = match d.kind {
        CounterKind::Gauge | CounterKind::Counter => "integer",
        CounterKind::Time => "real",
        CounterKind::U64Avg => "integer-integer-pair",
        CounterKind::TimeAvg => "real-integer-pair",
    };
    json!({
        "type": d.kind.type_bits(),
        "metric_type": metric_type,
        "value_type": value_type,
        "description": d.description,
        "nick": d.nick,
        "priority": d.priority,
        "units": match d.unit { Unit::Bytes => "bytes", Unit::None => "none" },
    })
}

/// All loggers of one daemon.
#[derive(Default)]
pub struct PerfCollection {
    loggers: RwLock<Vec<Arc<PerfCounters>>>,
}

impl PerfCollection {
    pub fn new() -> Arc<Self> {
        Arc::new(PerfCollection::default())
    }

    /// Registers a logger; a logger of the same name is replaced.
    pub fn add(&self, logger: Arc<PerfCounters>) {
        let mut l = self.loggers.write();
        l.retain(|x| x.name != logger.name);
        l.push(logger);
        l.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn remove(&self, name: &str) {
        self.loggers.write().retain(|x| x.name != name);
    }

    pub fn loggers(&self) -> Vec<Arc<PerfCounters>> {
        self.loggers.read().clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<PerfCounters>> {
        self.loggers.read().iter().find(|l| l.name == name).cloned()
    }

    /// `perf dump [logger [counter]]`.
    pub fn dump(&self, logger: Option<&str>, counter: Option<&str>) -> Value {
        let mut m = Map::new();
        for l in self.loggers.read().iter() {
            if logger.is_some_and(|n| n != l.name) {
                continue;
            }
            let mut v = l.dump();
            if let (Some(c), Value::Object(obj)) = (counter, &mut v) {
                obj.retain(|k, _| k == c);
            }
            m.insert(l.name.clone(), v);
        }
        Value::Object(m)
    }

    /// `perf schema`.
    pub fn schema(&self) -> Value {
        let mut m = Map::new();
        for l in self.loggers.read().iter() {
            m.insert(l.name.clone(), l.schema());
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_ceph() {
        let mut b = PerfCountersBuilder::new("osd");
        let op_w = b.add(
            "op_w",
            CounterKind::Counter,
            "Client write operations",
            "",
            PRIO_USEFUL,
            Unit::None,
        );
        let lat = b.add(
            "op_w_latency",
            CounterKind::TimeAvg,
            "Latency of write operation (including queue time)",
            "",
            PRIO_USEFUL,
            Unit::None,
        );
        let numpg = b.add(
            "numpg",
            CounterKind::Gauge,
            "Placement groups",
            "pgs",
            PRIO_USEFUL,
            Unit::None,
        );
        let pc = b.build();
        pc.inc(op_w, 3);
        pc.tinc(lat, Duration::from_millis(2));
        pc.tinc(lat, Duration::from_millis(4));
        pc.set(numpg, 45);
        let c = PerfCollection::new();
        c.add(pc);
        let d = c.dump(None, None);
        assert_eq!(d["osd"]["op_w"], json!(3));
        assert_eq!(d["osd"]["numpg"], json!(45));
        assert_eq!(d["osd"]["op_w_latency"]["avgcount"], json!(2));
        assert_eq!(d["osd"]["op_w_latency"]["sum"], json!(0.006));
        assert_eq!(d["osd"]["op_w_latency"]["avgtime"], json!(0.003));
        let s = c.schema();
        assert_eq!(s["osd"]["op_w"]["type"], json!(10));
        assert_eq!(s["osd"]["op_w"]["metric_type"], json!("counter"));
        assert_eq!(s["osd"]["op_w_latency"]["type"], json!(5));
        assert_eq!(s["osd"]["op_w_latency"]["metric_type"], json!("gauge"));
        assert_eq!(
            s["osd"]["op_w_latency"]["value_type"],
            json!("real-integer-pair")
        );
        assert_eq!(s["osd"]["numpg"]["nick"], json!("pgs"));
        let one = c.dump(Some("osd"), Some("op_w"));
        assert_eq!(one["osd"].as_object().map(|o| o.len()), Some(1));
    }
}
