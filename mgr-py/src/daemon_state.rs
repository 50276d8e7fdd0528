//! Per-daemon metadata and perf counter history, as the mgr's
//! `DaemonStateIndex`: the DaemonServer feeds it from MgrOpen/MgrReport, the
//! Python accessors (`get_counter`, `get_all_perf_counters`, ...) read
//! snapshots of it. Pure data: no Python, no I/O, cheap to ingest.
//!
//! A report carries the counter types declared in this session (once each)
//! and then one packed value per declared counter in declaration order. The
//! packed form here is little-endian u64s: the value (the sum for averages,
//! nanoseconds for time kinds), followed by the sample count for averages.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kalmar_common::perf::{PERFCOUNTER_LONGRUNAVG, PERFCOUNTER_TIME};
use parking_lot::{Mutex, RwLock};

/// Samples kept per counter (Ceph's `PerfCounterInstance` keeps 20).
pub const SAMPLES_PER_COUNTER: usize = 20;

/// Bounds on what one daemon may make the mgr hold.
#[derive(Debug, Clone)]
pub struct DaemonStateLimits {
    /// Daemons tracked at once; reports from more are refused.
    pub max_daemons: usize,
    /// Counters one daemon may declare.
    pub max_counters_per_daemon: usize,
    /// Longest counter path (`logger.counter`), in bytes.
    pub max_path_bytes: usize,
    /// Longest description or nick kept, in bytes (longer ones are cut).
    pub max_description_bytes: usize,
    /// Metadata entries kept per daemon.
    pub max_metadata_entries: usize,
}

impl Default for DaemonStateLimits {
    fn default() -> Self {
        DaemonStateLimits {
            max_daemons: 10_000,
            max_counters_per_daemon: 4_096,
            max_path_bytes: 256,
            max_description_bytes: 1_024,
            max_metadata_entries: 256,
        }
    }
}

/// A daemon: service type (`osd`, `mon`, `mgr`, ...) and id (`"0"`, `"a"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DaemonKey {
    pub svc_type: String,
    pub svc_id: String,
}

impl DaemonKey {
    pub fn new(svc_type: impl Into<String>, svc_id: impl Into<String>) -> Self {
        DaemonKey {
            svc_type: svc_type.into(),
            svc_id: svc_id.into(),
        }
    }

    /// Parses `osd.0` (the id may itself contain dots, as `rgw.a.b`).
    pub fn parse(name: &str) -> Option<DaemonKey> {
        let (t, id) = name.split_once('.')?;
        (!t.is_empty() && !id.is_empty()).then(|| DaemonKey::new(t, id))
    }
}

impl fmt::Display for DaemonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.svc_type, self.svc_id)
    }
}

/// A declared counter, as MMgrReport's `declare_types` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfCounterType {
    /// `logger.counter`, e.g. `osd.op_w`.
    pub path: String,
    pub description: String,
    pub nick: String,
    /// Ceph's type bits (`PERFCOUNTER_*`).
    pub type_bits: u8,
    pub priority: u8,
    /// Ceph's `unit_t`: 0 bytes, 1 none.
    pub unit: u8,
}

impl PerfCounterType {
    pub fn is_avg(&self) -> bool {
        self.type_bits & PERFCOUNTER_LONGRUNAVG != 0
    }

    pub fn is_time(&self) -> bool {
        self.type_bits & PERFCOUNTER_TIME != 0
    }

    /// Packed u64 words this counter takes in a report.
    pub fn packed_words(&self) -> usize {
        if self.is_avg() {
            2
        } else {
            1
        }
    }

    /// Builds the declarations of one kalmar-common logger, as a daemon
    /// would send them (`logger.counter` paths).
    pub fn from_logger(logger: &kalmar_common::perf::PerfCounters) -> Vec<PerfCounterType> {
        logger
            .descs()
            .iter()
            .map(|d| PerfCounterType {
                path: format!("{}.{}", logger.name(), d.name),
                description: d.description.to_string(),
                nick: d.nick.to_string(),
                type_bits: d.kind.type_bits(),
                priority: d.priority,
                unit: d.unit as u8,
            })
            .collect()
    }
}

/// One sample: time in seconds since the epoch, value (sum for averages)
/// and count (averages only, 0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub v: u64,
    pub c: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    #[error(
        "{daemon}: the mgr already tracks {limit} daemons (limit max_daemons); report refused"
    )]
    TooManyDaemons { daemon: String, limit: usize },
    #[error("{daemon}: more than {limit} counters declared (limit max_counters_per_daemon)")]
    TooManyCounters { daemon: String, limit: usize },
    #[error("{daemon}: counter path {path:?} is empty or longer than {limit} bytes")]
    BadPath {
        daemon: String,
        path: String,
        limit: usize,
    },
    #[error("{daemon}: packed values are {got} bytes, the declared counters need {want}")]
    PackedLength {
        daemon: String,
        got: usize,
        want: usize,
    },
}

/// What one MMgrReport carries for the perf counters.
#[derive(Debug, Clone, Copy)]
pub struct ReportData<'a> {
    pub declare_types: &'a [PerfCounterType],
    pub undeclare_types: &'a [String],
    /// Little-endian u64 words, see the module doc.
    pub packed: &'a [u8],
    pub timestamp: SystemTime,
}

/// A counter and its recent samples.
#[derive(Debug)]
struct CounterHistory {
    ty: Arc<PerfCounterType>,
    samples: VecDeque<Sample>,
}

impl CounterHistory {
    fn push(&mut self, s: Sample) {
        if self.samples.len() == SAMPLES_PER_COUNTER {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }
}

/// Everything known about one daemon.
#[derive(Debug, Default)]
struct DaemonRecord {
    metadata: BTreeMap<String, String>,
    status: BTreeMap<String, String>,
    /// Declared counters of the current session, in declaration order:
    /// indexes into `counters`.
    declared: Vec<usize>,
    counters: Vec<CounterHistory>,
    by_path: HashMap<String, usize>,
    last_report: Option<f64>,
}

/// Latest value of one counter, with its declaration.
#[derive(Debug, Clone)]
pub struct CounterSnapshot {
    pub ty: Arc<PerfCounterType>,
    pub latest: Option<Sample>,
}

/// The index. Cheap to share (`Arc`), safe from any thread.
#[derive(Default)]
pub struct DaemonStateIndex {
    limits: DaemonStateLimits,
    daemons: RwLock<BTreeMap<DaemonKey, Arc<Mutex<DaemonRecord>>>>,
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl DaemonStateIndex {
    pub fn new(limits: DaemonStateLimits) -> Arc<Self> {
        Arc::new(DaemonStateIndex {
            limits,
            daemons: RwLock::new(BTreeMap::new()),
        })
    }

    pub fn limits(&self) -> &DaemonStateLimits {
        &self.limits
    }

    fn record(&self, key: &DaemonKey) -> Result<Arc<Mutex<DaemonRecord>>, IngestError> {
        if let Some(r) = self.daemons.read().get(key) {
            return Ok(r.clone());
        }
        let mut w = self.daemons.write();
        if let Some(r) = w.get(key) {
            return Ok(r.clone());
        }
        if w.len() >= self.limits.max_daemons {
            return Err(IngestError::TooManyDaemons {
                daemon: key.to_string(),
                limit: self.limits.max_daemons,
            });
        }
        let r = Arc::new(Mutex::new(DaemonRecord::default()));
        w.insert(key.clone(), r.clone());
        Ok(r)
    }

    fn bounded(&self, m: BTreeMap<String, String>) -> BTreeMap<String, String> {
        m.into_iter()
            .take(self.limits.max_metadata_entries)
            .collect()
    }

    /// MMgrOpen: a (re)connecting daemon starts a session; it declares its
    /// counters again. History of counters it re-declares is kept.
    pub fn open_session(
        &self,
        key: &DaemonKey,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), IngestError> {
        let metadata = self.bounded(metadata);
        let rec = self.record(key)?;
        let mut r = rec.lock();
        r.metadata = metadata;
        r.declared.clear();
        Ok(())
    }

    /// Replaces a daemon's metadata (e.g. fetched from the mon).
    pub fn set_metadata(
        &self,
        key: &DaemonKey,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), IngestError> {
        let metadata = self.bounded(metadata);
        self.record(key)?.lock().metadata = metadata;
        Ok(())
    }

    /// Replaces a daemon's status strings (MMgrReport `daemon_status`).
    pub fn set_status(
        &self,
        key: &DaemonKey,
        status: BTreeMap<String, String>,
    ) -> Result<(), IngestError> {
        let status = self.bounded(status);
        self.record(key)?.lock().status = status;
        Ok(())
    }

    /// Forgets a daemon (removed from the OSDMap, ...).
    pub fn remove(&self, key: &DaemonKey) {
        self.daemons.write().remove(key);
    }

    /// One MMgrReport: apply declarations, then one sample per declared
    /// counter. All-or-nothing: a malformed report changes nothing.
    pub fn ingest_report(
        &self,
        key: &DaemonKey,
        report: &ReportData<'_>,
    ) -> Result<(), IngestError> {
        let rec = self.record(key)?;
        let mut guard = rec.lock();
        let r = &mut *guard;
        let daemon = || key.to_string();

        // Validate everything before touching state.
        for t in report.declare_types {
            if t.path.is_empty() || t.path.len() > self.limits.max_path_bytes {
                return Err(IngestError::BadPath {
                    daemon: daemon(),
                    path: cut(&t.path, self.limits.max_path_bytes),
                    limit: self.limits.max_path_bytes,
                });
            }
        }
        let mut declared: Vec<usize> = r.declared.clone();
        if !report.undeclare_types.is_empty() {
            declared.retain(|&i| !report.undeclare_types.contains(&r.counters[i].ty.path));
        }
        let new_paths = report
            .declare_types
            .iter()
            .filter(|t| !r.by_path.contains_key(&t.path))
            .count();
        if r.counters.len() + new_paths > self.limits.max_counters_per_daemon {
            return Err(IngestError::TooManyCounters {
                daemon: daemon(),
                limit: self.limits.max_counters_per_daemon,
            });
        }
        let mut want_words: usize = declared
            .iter()
            .map(|&i| r.counters[i].ty.packed_words())
            .sum();
        want_words += report
            .declare_types
            .iter()
            .map(|t| t.packed_words())
            .sum::<usize>();
        if report.packed.len() != want_words * 8 {
            return Err(IngestError::PackedLength {
                daemon: daemon(),
                got: report.packed.len(),
                want: want_words * 8,
            });
        }

        // Apply declarations.
        for t in report.declare_types {
            let ty = Arc::new(PerfCounterType {
                path: t.path.clone(),
                description: cut(&t.description, self.limits.max_description_bytes),
                nick: cut(&t.nick, self.limits.max_description_bytes),
                type_bits: t.type_bits,
                priority: t.priority,
                unit: t.unit,
            });
            let idx = match r.by_path.get(&t.path) {
                Some(&i) => {
                    // A changed type makes old samples meaningless.
                    if *r.counters[i].ty != *ty {
                        r.counters[i].samples.clear();
                    }
                    r.counters[i].ty = ty;
                    i
                }
                None => {
                    r.counters.push(CounterHistory {
                        ty,
                        samples: VecDeque::new(),
                    });
                    let i = r.counters.len() - 1;
                    r.by_path.insert(t.path.clone(), i);
                    i
                }
            };
            declared.retain(|&j| j != idx);
            declared.push(idx);
        }
        r.declared = declared;

        // One sample per declared counter.
        let t = secs(report.timestamp);
        let mut words = report
            .packed
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        for pos in 0..r.declared.len() {
            let idx = r.declared[pos];
            let h = &mut r.counters[idx];
            let v = words.next().unwrap_or(0);
            let c = if h.ty.is_avg() {
                words.next().unwrap_or(0)
            } else {
                0
            };
            h.push(Sample { t, v, c });
        }
        r.last_report = Some(t);
        Ok(())
    }

    /// Every tracked daemon, sorted.
    pub fn daemons(&self) -> Vec<DaemonKey> {
        self.daemons.read().keys().cloned().collect()
    }

    /// Daemons matching a type and id; `""` matches any.
    pub fn matching(&self, svc_type: &str, svc_id: &str) -> Vec<DaemonKey> {
        self.daemons
            .read()
            .keys()
            .filter(|k| {
                (svc_type.is_empty() || k.svc_type == svc_type)
                    && (svc_id.is_empty() || k.svc_id == svc_id)
            })
            .cloned()
            .collect()
    }

    pub fn exists(&self, key: &DaemonKey) -> bool {
        self.daemons.read().contains_key(key)
    }

    pub fn metadata(&self, key: &DaemonKey) -> Option<BTreeMap<String, String>> {
        let rec = self.daemons.read().get(key).cloned()?;
        let m = rec.lock().metadata.clone();
        Some(m)
    }

    pub fn status(&self, key: &DaemonKey) -> Option<BTreeMap<String, String>> {
        let rec = self.daemons.read().get(key).cloned()?;
        let m = rec.lock().status.clone();
        Some(m)
    }

    /// Declared counters of a daemon with their latest sample, in
    /// declaration order.
    pub fn counters(&self, key: &DaemonKey) -> Vec<CounterSnapshot> {
        let Some(rec) = self.daemons.read().get(key).cloned() else {
            return Vec::new();
        };
        let r = rec.lock();
        r.declared
            .iter()
            .map(|&i| CounterSnapshot {
                ty: r.counters[i].ty.clone(),
                latest: r.counters[i].samples.back().copied(),
            })
            .collect()
    }

    /// The declaration and all kept samples of one counter, oldest first.
    pub fn history(
        &self,
        key: &DaemonKey,
        path: &str,
    ) -> Option<(Arc<PerfCounterType>, Vec<Sample>)> {
        let rec = self.daemons.read().get(key).cloned()?;
        let r = rec.lock();
        let &i = r.by_path.get(path)?;
        let h = &r.counters[i];
        Some((h.ty.clone(), h.samples.iter().copied().collect()))
    }

    /// Time of the daemon's last report, seconds since the epoch.
    pub fn last_report(&self, key: &DaemonKey) -> Option<f64> {
        let rec = self.daemons.read().get(key).cloned()?;
        let t = rec.lock().last_report;
        t
    }
}

/// Packs values as a daemon would for [`DaemonStateIndex::ingest_report`]:
/// `(value, count)` per declared counter, count only written for averages.
pub fn pack_values(types: &[PerfCounterType], values: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(types.len() * 16);
    for (t, (v, c)) in types.iter().zip(values) {
        out.extend_from_slice(&v.to_le_bytes());
        if t.is_avg() {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kalmar_common::perf::{PERFCOUNTER_COUNTER, PERFCOUNTER_U64};
    use proptest::prelude::*;
    use std::time::Duration;

    fn ty(path: &str, bits: u8) -> PerfCounterType {
        PerfCounterType {
            path: path.into(),
            description: format!("{path} description"),
            nick: String::new(),
            type_bits: bits,
            priority: 5,
            unit: 1,
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn declare_once_then_values_in_order() {
        let idx = DaemonStateIndex::new(DaemonStateLimits::default());
        let k = DaemonKey::new("osd", "0");
        idx.open_session(&k, BTreeMap::from([("hostname".into(), "h1".into())]))
            .unwrap();
        let types = vec![
            ty("osd.op_w", PERFCOUNTER_U64 | PERFCOUNTER_COUNTER),
            ty("osd.op_w_latency", 5),
        ];
        let packed = pack_values(&types, &[(3, 0), (6_000_000, 2)]);
        idx.ingest_report(
            &k,
            &ReportData {
                declare_types: &types,
                undeclare_types: &[],
                packed: &packed,
                timestamp: at(100),
            },
        )
        .unwrap();
        // Later reports carry values only.
        let packed = pack_values(&types, &[(5, 0), (9_000_000, 3)]);
        idx.ingest_report(
            &k,
            &ReportData {
                declare_types: &[],
                undeclare_types: &[],
                packed: &packed,
                timestamp: at(105),
            },
        )
        .unwrap();
        let (_, h) = idx.history(&k, "osd.op_w").unwrap();
        assert_eq!(
            h.iter().map(|s| (s.t, s.v)).collect::<Vec<_>>(),
            vec![(100.0, 3), (105.0, 5)]
        );
        let (_, h) = idx.history(&k, "osd.op_w_latency").unwrap();
        assert_eq!((h[1].v, h[1].c), (9_000_000, 3));
        let c = idx.counters(&k);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].ty.path, "osd.op_w");
        assert_eq!(idx.metadata(&k).unwrap()["hostname"], "h1");
    }

    #[test]
    fn malformed_report_changes_nothing() {
        let idx = DaemonStateIndex::new(DaemonStateLimits::default());
        let k = DaemonKey::new("osd", "1");
        let types = vec![ty("osd.op", 10)];
        let err = idx
            .ingest_report(
                &k,
                &ReportData {
                    declare_types: &types,
                    undeclare_types: &[],
                    packed: &[0; 7],
                    timestamp: at(1),
                },
            )
            .unwrap_err();
        assert!(matches!(
            err,
            IngestError::PackedLength {
                got: 7,
                want: 8,
                ..
            }
        ));
        assert!(idx.counters(&k).is_empty());
    }

    #[test]
    fn limits_are_enforced() {
        let limits = DaemonStateLimits {
            max_daemons: 1,
            max_counters_per_daemon: 2,
            ..Default::default()
        };
        let idx = DaemonStateIndex::new(limits);
        let k = DaemonKey::new("osd", "0");
        let types: Vec<_> = (0..3).map(|i| ty(&format!("osd.c{i}"), 2)).collect();
        let packed = pack_values(&types, &[(1, 0), (2, 0), (3, 0)]);
        let e = idx
            .ingest_report(
                &k,
                &ReportData {
                    declare_types: &types,
                    undeclare_types: &[],
                    packed: &packed,
                    timestamp: at(1),
                },
            )
            .unwrap_err();
        assert!(matches!(e, IngestError::TooManyCounters { limit: 2, .. }));
        let e = idx
            .open_session(&DaemonKey::new("osd", "9"), BTreeMap::new())
            .unwrap_err();
        assert!(matches!(e, IngestError::TooManyDaemons { limit: 1, .. }));
    }

    #[test]
    fn undeclare_and_redeclare_after_reconnect() {
        let idx = DaemonStateIndex::new(DaemonStateLimits::default());
        let k = DaemonKey::new("osd", "0");
        let types = vec![ty("osd.a", 2), ty("osd.b", 2)];
        let p = pack_values(&types, &[(1, 0), (2, 0)]);
        idx.ingest_report(
            &k,
            &ReportData {
                declare_types: &types,
                undeclare_types: &[],
                packed: &p,
                timestamp: at(1),
            },
        )
        .unwrap();
        let und = vec!["osd.a".to_string()];
        let p = pack_values(&types[1..], &[(7, 0)]);
        idx.ingest_report(
            &k,
            &ReportData {
                declare_types: &[],
                undeclare_types: &und,
                packed: &p,
                timestamp: at(2),
            },
        )
        .unwrap();
        assert_eq!(idx.counters(&k).len(), 1);
        idx.open_session(&k, BTreeMap::new()).unwrap();
        let p = pack_values(&types, &[(3, 0), (8, 0)]);
        idx.ingest_report(
            &k,
            &ReportData {
                declare_types: &types,
                undeclare_types: &[],
                packed: &p,
                timestamp: at(3),
            },
        )
        .unwrap();
        let (_, h) = idx.history(&k, "osd.b").unwrap();
        assert_eq!(h.iter().map(|s| s.v).collect::<Vec<_>>(), vec![2, 7, 8]);
    }

    proptest! {
        #[test]
        fn keeps_the_last_twenty_samples(values in proptest::collection::vec(any::<u64>(), 1..60)) {
            let idx = DaemonStateIndex::new(DaemonStateLimits::default());
            let k = DaemonKey::new("osd", "0");
            let types = vec![ty("osd.op", 10)];
            for (i, v) in values.iter().enumerate() {
                let decl: &[PerfCounterType] = if i == 0 { &types } else { &[] };
                let p = pack_values(&types, &[(*v, 0)]);
                idx.ingest_report(&k, &ReportData { declare_types: decl, undeclare_types: &[], packed: &p, timestamp: at(i as u64) }).unwrap();
            }
            let (_, h) = idx.history(&k, "osd.op").unwrap();
            let start = values.len().saturating_sub(SAMPLES_PER_COUNTER);
            prop_assert_eq!(h.iter().map(|s| s.v).collect::<Vec<_>>(), values[start..].to_vec());
        }

        #[test]
        fn any_packed_length_but_the_right_one_is_refused(len in 0usize..64) {
            let idx = DaemonStateIndex::new(DaemonStateLimits::default());
            let k = DaemonKey::new("osd", "0");
            let types = vec![ty("osd.op", 10), ty("osd.lat", 5)];
            let r = idx.ingest_report(&k, &ReportData { declare_types: &types, undeclare_types: &[], packed: &vec![0u8; len], timestamp: at(1) });
            prop_assert_eq!(r.is_ok(), len == 24);
        }
    }
}
