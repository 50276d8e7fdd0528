//! A toy per-OSD store: objects as (version, value) and the PG metadata
//! kept the way the OSD keeps it in the omap (one key per log entry/dup).

use std::collections::BTreeMap;

use kalmar_peering::{
    Eversion, LogWrite, ObjectBound, ObjectName, PastIntervals, PgInfo, PgLog, PgLogDup,
    PgLogEntry, PgMeta, PgMissing, PgWrite, ScanResult,
};

/// Object content: the version that wrote it and a value.
pub type Obj = (Eversion, u64);

#[derive(Debug, Clone, Default)]
pub struct Store {
    pub objects: BTreeMap<ObjectName, Obj>,
    pub info: Option<PgInfo>,
    pub past: PastIntervals,
    pub missing: PgMissing,
    pub log_keys: BTreeMap<Eversion, PgLogEntry>,
    pub dup_keys: BTreeMap<Eversion, PgLogDup>,
    /// Map epoch the PG last processed.
    pub pg_epoch: u32,
}

impl Store {
    pub fn apply(&mut self, w: &PgWrite) {
        if let Some(i) = &w.info {
            self.info = Some(i.clone());
        }
        if let Some(p) = &w.past_intervals {
            self.past = p.clone();
        }
        if let Some(m) = &w.missing {
            self.missing = m.clone();
        }
        match &w.log {
            None => {}
            Some(LogWrite::Rewrite(log)) => {
                self.log_keys = log.entries().map(|e| (e.version, e.clone())).collect();
                self.dup_keys = log.dups().map(|d| (d.version, *d)).collect();
            }
            Some(LogWrite::Delta {
                append,
                remove,
                dups_add,
                dups_remove,
            }) => {
                for e in append {
                    self.log_keys.insert(e.version, e.clone());
                }
                for v in remove {
                    self.log_keys.remove(v);
                }
                for d in dups_add {
                    self.dup_keys.insert(d.version, *d);
                }
                for d in dups_remove {
                    self.dup_keys.remove(&d.version);
                }
            }
        }
        for o in &w.remove_objects {
            self.objects.remove(o);
        }
    }

    /// What a restarted OSD loads.
    pub fn meta(&self) -> Option<PgMeta> {
        let info = self.info.clone()?;
        let log = PgLog::from_parts(
            info.log_tail,
            self.log_keys.values().cloned(),
            self.dup_keys.values().copied(),
        )
        .expect("stored log is ordered");
        Some(PgMeta {
            info,
            log,
            missing: self.missing.clone(),
            past_intervals: self.past.clone(),
        })
    }

    pub fn scan(&self, begin: &ObjectBound, max: usize) -> ScanResult {
        let mut objects = BTreeMap::new();
        let mut end = ObjectBound::Max;
        for (o, (v, _)) in self.objects.iter().filter(|(o, _)| !begin.covers(o)) {
            if objects.len() == max {
                break;
            }
            objects.insert(o.clone(), *v);
            if objects.len() == max {
                end = ObjectBound::Object(o.clone());
            }
        }
        // A full page that happens to hold the last object still ends there.
        ScanResult {
            begin: begin.clone(),
            end,
            objects,
        }
    }

    pub fn wipe(&mut self) {
        *self = Store::default();
    }
}
