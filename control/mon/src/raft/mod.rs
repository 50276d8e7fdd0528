//! The mons' consensus: every map change is an entry of a replicated log
//! (openraft), committed by a majority of the mons, and applied by each
//! mon's state machine to its store in log order.
//!
//! - [`log_store`]: the log, vote and purge point in the mon's RocksDB.
//! - [`state_machine`]: applies committed [`MapCommit`]s to the map keys of
//!   the store, builds and installs snapshots of them.
//! - [`network`]: the Raft RPCs between mons over the messenger.
//!
//! Epochs stay unique and gap-free across leader changes because an entry
//! names the epochs it makes and the state machine applies it only when
//! those are the next ones (a compare-and-set every mon decides the same
//! way on the same log); a leader whose entry lost that race is told and
//! rebuilds its change on the newer map.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use kalmar_maps::Epoch;
use serde::{Deserialize, Serialize};

pub use crate::monmap::MonNode;

pub mod log_store;
pub mod network;
pub mod state_machine;

pub type NodeId = u64;

/// One OSDMap epoch as the log carries it (sealed bytes, stored as is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsdEpoch {
    pub epoch: Epoch,
    #[serde(with = "hex_bytes")]
    pub full: Vec<u8>,
    /// Absent for epoch 1.
    #[serde(with = "hex_opt")]
    pub inc: Option<Vec<u8>>,
    /// First epoch kept after this one (the leader's trimming decision, so
    /// every mon trims the same).
    pub new_first: Epoch,
}

/// One MgrMap epoch as the log carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MgrEpoch {
    pub epoch: Epoch,
    #[serde(with = "hex_bytes")]
    pub map: Vec<u8>,
    pub new_first: Epoch,
}

/// One version of the auth database, whole (it is small: keys and caps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthVersion {
    pub version: u64,
    /// The encoded `kalmar_auth::AuthDb`.
    #[serde(with = "hex_bytes")]
    pub db: Vec<u8>,
}

/// A log entry's application data: the next epoch of one or both maps,
/// and/or the next version of the auth database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MapCommit {
    pub osd: Option<OsdEpoch>,
    pub mgr: Option<MgrEpoch>,
    /// Absent in entries written before auth existed.
    #[serde(default)]
    pub auth: Option<AuthVersion>,
}

/// What applying a [`MapCommit`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitResult {
    pub applied: bool,
    /// Why not, when not.
    pub reason: String,
}

openraft::declare_raft_types!(
    /// The mon's consensus types.
    pub MonRaftConfig:
        D = MapCommit,
        R = CommitResult,
        NodeId = NodeId,
        Node = MonNode,
        Entry = openraft::Entry<MonRaftConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<MonRaftConfig>;
pub type Entry = openraft::Entry<MonRaftConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, MonNode>;

/// The consensus timers (conf: `mon_election_timeout`,
/// `mon_heartbeat_interval`). A leader's loss is noticed after one
/// election timeout (randomized up to twice it), then one vote round.
pub fn raft_config(
    heartbeat: Duration,
    election_timeout: Duration,
) -> Result<Arc<openraft::Config>, String> {
    let hb = heartbeat.as_millis().max(10) as u64;
    let el = (election_timeout.as_millis() as u64).max(hb * 3);
    let c = openraft::Config {
        cluster_name: "kalmar-mon".into(),
        heartbeat_interval: hb,
        election_timeout_min: el,
        election_timeout_max: el * 2,
        // Snapshots copy the whole map keyspace: take one every few
        // thousand commits and keep a tail of log for lagging mons.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 1000,
        install_snapshot_timeout: 10_000,
        ..openraft::Config::default()
    };
    c.validate().map(Arc::new).map_err(|e| e.to_string())
}

/// Members as `initialize` takes them.
pub fn members_of(m: &BTreeMap<NodeId, MonNode>) -> BTreeMap<NodeId, MonNode> {
    m.clone()
}

/// Byte fields as hex strings in the log's JSON (half the size of a JSON
/// array of numbers, and readable in a dump).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        super::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&super::to_hex(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => super::from_hex(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

fn to_hex(v: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(v.len() * 2);
    for b in v {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let digit = |c: u8| -> Result<u8, String> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(format!("'{}' is not a hex digit", c as char)),
        }
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    b.chunks(2)
        .map(|p| Ok((digit(p[0])? << 4) | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_round_trip_through_json() {
        let c = MapCommit {
            osd: Some(OsdEpoch {
                epoch: 7,
                full: vec![0, 1, 0xab, 0xff],
                inc: None,
                new_first: 1,
            }),
            mgr: Some(MgrEpoch {
                epoch: 3,
                map: vec![],
                new_first: 1,
            }),
            auth: Some(AuthVersion {
                version: 2,
                db: vec![1, 2],
            }),
        };
        let j = serde_json::to_string(&c).expect("encodes");
        assert!(j.contains("\"0001abff\""), "{j}");
        let back: MapCommit = serde_json::from_str(&j).expect("decodes");
        assert_eq!(back, c);
        // An entry from before auth existed still reads.
        let old: MapCommit = serde_json::from_str(r#"{"osd":null,"mgr":null}"#).expect("old");
        assert_eq!(old.auth, None);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }
}

/// openraft's own storage test suite against the RocksDB adapter.
#[cfg(test)]
mod storage_suite {
    use std::sync::Arc;

    use openraft::testing::{StoreBuilder, Suite};

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::{MonRaftConfig, StorageError};
    use crate::store::MonStore;

    struct Builder;

    impl StoreBuilder<MonRaftConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Arc::new(MonStore::create(&dir.path().join("mon")).expect("store"));
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let sm = StateMachine::open(store.clone(), tx, Default::default())?;
            Ok((dir, LogStore::new(store), sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("the adapter passes openraft's storage suite");
    }
}
