//! The in-memory twin of the database, for tests and the simulator: the
//! same contract as RocksDB as the store uses it, plus [`MemKv::crash`],
//! which drops everything written since the last flush, as a power cut
//! drops RocksDB's memtables.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::Mutex;

use super::{KvOp, KvRead, KvStore};
use crate::error::StoreError;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
struct State {
    /// What a reader sees.
    current: Map,
    /// What survives a crash (the state at the last flush).
    durable: Map,
    /// Writes and flushes refused from now on (a failing disk).
    failing: Option<String>,
}

/// See the module documentation.
#[derive(Default)]
pub struct MemKv {
    state: Mutex<State>,
}

fn apply(map: &mut Map, ops: &[KvOp]) {
    for op in ops {
        match op {
            KvOp::Put(k, v) => {
                map.insert(k.clone(), v.clone());
            }
            KvOp::Delete(k) => {
                map.remove(k);
            }
            KvOp::DeleteRange(s, e) => {
                if s < e {
                    let doomed: Vec<Vec<u8>> = map
                        .range::<[u8], _>((Bound::Included(&s[..]), Bound::Excluded(&e[..])))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
    }
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }

    /// Loses every write since the last flush.
    pub fn crash(&self) {
        let mut st = self.state.lock();
        st.current = st.durable.clone();
        st.failing = None;
    }

    /// Makes later writes and flushes fail with `reason` (until `crash`).
    pub fn fail_writes(&self, reason: &str) {
        self.state.lock().failing = Some(reason.to_string());
    }

    /// Keys held (current view).
    pub fn len(&self) -> usize {
        self.state.lock().current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl KvRead for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.lock().current.get(key).cloned())
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        // Copied out so `f` may read the database again.
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = self
            .state
            .lock()
            .current
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in pairs {
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

impl KvStore for MemKv {
    fn write(&self, ops: &[KvOp]) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        if let Some(r) = &st.failing {
            return Err(StoreError::Kv(r.clone()));
        }
        apply(&mut st.current, ops);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        if let Some(r) = &st.failing {
            return Err(StoreError::Kv(r.clone()));
        }
        st.durable = st.current.clone();
        Ok(())
    }

    fn describe(&self) -> String {
        "in-memory database".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_and_crash() {
        let kv = MemKv::new();
        super::super::tests::conformance(&kv);
        kv.write(&[KvOp::Put(b"kept".to_vec(), b"1".to_vec())])
            .expect("write");
        kv.flush().expect("flush");
        kv.write(&[
            KvOp::Put(b"lost".to_vec(), b"2".to_vec()),
            KvOp::Delete(b"kept".to_vec()),
        ])
        .expect("write");
        kv.crash();
        assert_eq!(kv.get(b"kept").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.get(b"lost").expect("get"), None);
        kv.fail_writes("disk gone");
        assert!(kv.write(&[KvOp::Delete(b"kept".to_vec())]).is_err());
        assert!(kv.flush().is_err());
    }
}
