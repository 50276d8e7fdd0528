//! The state machine: applies committed [`MapCommit`]s to the map keys of
//! the mon store (the same keys a single mon always used, see
//! [`crate::persist`]), in one synced batch per call together with the
//! last applied log id and membership, then tells the mon's server what
//! changed.
//!
//! Snapshots are the map keyspace (`meta/`, `osdmap/`, `mgrmap/`) read
//! from one RocksDB snapshot, framed as `magic, count, (key, value)*,
//! crc32c`.

// openraft's traits fix the error type (a large enum); the helpers here
// return it too.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use kalmar_maps::{Epoch, MgrMap, OsdMap};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{
    CommitResult, Entry, LogId, MapCommit, MonNode, MonRaftConfig, NodeId, StorageError,
    StoredMembership,
};
use crate::monmap_history::{next_epoch, CommittedMonmap, ProbeReply, KEY_MONMAP_EPOCH};
use crate::persist::{self, MGR_FIRST, MGR_LAST, OSD_FIRST, OSD_LAST};
use crate::store::{Batch, MonStore};

const KEY_APPLIED: &str = "raft/last_applied";
const KEY_MEMBERSHIP: &str = "raft/membership";
const KEY_SNAPSHOT: &str = "raft/snapshot";
const KEY_SNAPSHOT_META: &str = "raft/snapshot_meta";
/// The keyspace a snapshot carries.
const SNAPSHOT_PREFIXES: &[&str] = &["meta/", "osdmap/", "mgrmap/", "auth/"];
const SNAPSHOT_MAGIC: &[u8; 8] = b"KMONSNP1";

/// What the state machine tells the server after a synced apply (moved
/// once through a channel; `Reload` is rare).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Applied {
    /// New epochs (each decoded once here); first epochs still held.
    Maps {
        osd: Option<Box<(OsdMap, Vec<u8>)>>,
        mgr: Option<MgrMap>,
        osd_first: Epoch,
        mgr_first: Epoch,
        /// A new auth database version.
        auth: Option<Box<kalmar_auth::AuthDb>>,
    },
    /// A snapshot replaced the whole keyspace: reload it.
    Reload,
    /// A membership entry made this monmap (applied, so committed).
    Monmap(CommittedMonmap),
}

/// What this mon answers to a probe (kept by the state machine, read by
/// the RPC server without waiting for the mon's server task).
pub type SharedProbe = Arc<Mutex<ProbeReply>>;

pub struct StateMachine {
    store: Arc<MonStore>,
    notify: mpsc::UnboundedSender<Applied>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    osd_first: Epoch,
    osd_last: Epoch,
    mgr_first: Epoch,
    mgr_last: Epoch,
    auth_version: u64,
    monmap: CommittedMonmap,
    probe: SharedProbe,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn get_json<T: serde::de::DeserializeOwned>(
    store: &MonStore,
    key: &str,
) -> Result<Option<T>, StorageError> {
    match store.get(key).map_err(sm_read)? {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(&raw).map(Some).map_err(sm_read),
    }
}

/// The members of the newest membership this store applied (empty for a
/// store that applied none: a new mon, or one made with `mkfs --join`
/// that has not heard from the leader yet).
pub fn applied_members(store: &MonStore) -> Result<BTreeMap<NodeId, MonNode>, StorageError> {
    let m: StoredMembership = get_json(store, KEY_MEMBERSHIP)?.unwrap_or_default();
    Ok(nodes_of(&m))
}

fn nodes_of(m: &StoredMembership) -> BTreeMap<NodeId, MonNode> {
    m.membership()
        .nodes()
        .map(|(id, n)| (*id, n.clone()))
        .collect()
}

/// The newest monmap this store applied (epoch 0 and no mons when none).
pub fn applied_monmap(store: &MonStore) -> Result<CommittedMonmap, StorageError> {
    let members = applied_members(store)?;
    let epoch: u64 = get_json(store, KEY_MONMAP_EPOCH)?.unwrap_or(0);
    Ok(CommittedMonmap {
        // A store from before epochs were counted: its monmap is epoch 1.
        epoch: if members.is_empty() {
            epoch
        } else {
            epoch.max(1)
        },
        members,
    })
}

impl StateMachine {
    /// Reads what was applied before (a new store has applied nothing).
    pub fn open(
        store: Arc<MonStore>,
        notify: mpsc::UnboundedSender<Applied>,
        probe: SharedProbe,
    ) -> Result<StateMachine, StorageError> {
        let mut sm = StateMachine {
            store,
            notify,
            last_applied: None,
            membership: StoredMembership::default(),
            osd_first: 0,
            osd_last: 0,
            mgr_first: 0,
            mgr_last: 0,
            auth_version: 0,
            monmap: CommittedMonmap::default(),
            probe,
        };
        sm.reload()?;
        Ok(sm)
    }

    fn reload(&mut self) -> Result<(), StorageError> {
        let s = &self.store;
        self.last_applied = get_json::<Option<LogId>>(s, KEY_APPLIED)?.flatten();
        self.membership = get_json(s, KEY_MEMBERSHIP)?.unwrap_or_default();
        let u = |k: &str| s.get_u32(k).map(|v| v.unwrap_or(0)).map_err(sm_read);
        self.osd_first = u(OSD_FIRST)?;
        self.osd_last = u(OSD_LAST)?;
        self.mgr_first = u(MGR_FIRST)?;
        self.mgr_last = u(MGR_LAST)?;
        self.auth_version = persist::load_auth(s).map_err(sm_read)?.version;
        self.monmap = applied_monmap(s)?;
        self.publish_probe();
        Ok(())
    }

    fn publish_probe(&self) {
        // `last_log` is the log's to keep (see `Consensus::start`).
        let mut p = self.probe.lock();
        p.monmap = self.monmap.clone();
        p.last_applied = self.last_applied.map(|l| l.index);
    }

    /// Checks `c` against the epochs held and adds it to `b`. Every mon
    /// decides the same on the same entry and store.
    fn apply_commit(
        &mut self,
        b: &mut Batch,
        c: &MapCommit,
        notes: &mut Vec<Applied>,
    ) -> CommitResult {
        let refuse = |reason: String| CommitResult {
            applied: false,
            reason,
        };
        if c.osd.is_none() && c.mgr.is_none() && c.auth.is_none() {
            return refuse("an empty map commit".into());
        }
        let mut auth = None;
        if let Some(a) = &c.auth {
            use kalmar_common::encoding::Decode;
            if a.version != self.auth_version + 1 {
                return refuse(format!(
                    "auth version {} is not the next one (the log has {})",
                    a.version, self.auth_version
                ));
            }
            match kalmar_auth::AuthDb::from_bytes(&a.db) {
                Ok(db) if db.version == a.version => auth = Some(Box::new(db)),
                Ok(db) => {
                    return refuse(format!("auth {} holds version {}", a.version, db.version))
                }
                Err(e) => return refuse(format!("auth {}: {e}", a.version)),
            }
        }
        let mut osd = None;
        if let Some(o) = &c.osd {
            if o.epoch != self.osd_last + 1 {
                return refuse(format!(
                    "osdmap epoch {} is not the next one (the log has {})",
                    o.epoch, self.osd_last
                ));
            }
            if o.epoch > 1 && o.inc.is_none() {
                return refuse(format!("osdmap epoch {} has no incremental", o.epoch));
            }
            match OsdMap::decode_sealed(&o.full) {
                Ok(m) if m.epoch == o.epoch => osd = Some(m),
                Ok(m) => return refuse(format!("osdmap {} holds epoch {}", o.epoch, m.epoch)),
                Err(e) => return refuse(format!("osdmap {}: {e}", o.epoch)),
            }
        }
        let mut mgr = None;
        if let Some(m) = &c.mgr {
            if m.epoch != self.mgr_last + 1 {
                return refuse(format!(
                    "mgrmap epoch {} is not the next one (the log has {})",
                    m.epoch, self.mgr_last
                ));
            }
            match MgrMap::decode_sealed(&m.map) {
                Ok(map) if map.epoch == m.epoch => mgr = Some(map),
                Ok(map) => return refuse(format!("mgrmap {} holds epoch {}", m.epoch, map.epoch)),
                Err(e) => return refuse(format!("mgrmap {}: {e}", m.epoch)),
            }
        }
        if let Some(o) = &c.osd {
            let new_first = o.new_first.clamp(self.osd_first, o.epoch);
            self.osd_first = persist::put_osdmap_bytes(
                b,
                o.epoch,
                &o.full,
                o.inc.as_deref(),
                self.osd_first,
                new_first,
            );
            self.osd_last = o.epoch;
        }
        if let Some(m) = &c.mgr {
            let new_first = m.new_first.clamp(self.mgr_first, m.epoch);
            self.mgr_first =
                persist::put_mgrmap_bytes(b, m.epoch, &m.map, self.mgr_first, new_first);
            self.mgr_last = m.epoch;
        }
        if let Some(a) = &c.auth {
            b.put(persist::AUTH_DB, a.db.clone());
            self.auth_version = a.version;
        }
        let osd = osd.map(|map| {
            let inc = c
                .osd
                .as_ref()
                .and_then(|o| o.inc.clone())
                .unwrap_or_default();
            Box::new((map, inc))
        });
        notes.push(Applied::Maps {
            osd,
            mgr,
            osd_first: self.osd_first,
            mgr_first: self.mgr_first,
            auth,
        });
        CommitResult {
            applied: true,
            reason: String::new(),
        }
    }

    fn put_state(&self, b: &mut Batch) -> Result<(), StorageError> {
        b.put(
            KEY_APPLIED,
            serde_json::to_vec(&self.last_applied).map_err(sm_write)?,
        );
        b.put(
            KEY_MEMBERSHIP,
            serde_json::to_vec(&self.membership).map_err(sm_write)?,
        );
        b.put(
            KEY_MONMAP_EPOCH,
            serde_json::to_vec(&self.monmap.epoch).map_err(sm_write)?,
        );
        Ok(())
    }
}

impl RaftStateMachine<MonRaftConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommitResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut b = Batch::default();
        let mut replies = Vec::new();
        let mut notes = Vec::new();
        for e in entries {
            self.last_applied = Some(e.log_id);
            let r = match &e.payload {
                EntryPayload::Blank => CommitResult::default(),
                EntryPayload::Normal(c) => {
                    let r = self.apply_commit(&mut b, c, &mut notes);
                    if !r.applied {
                        tracing::info!(
                            index = e.log_id.index,
                            "map commit not applied: {}",
                            r.reason
                        );
                    }
                    r
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(e.log_id), m.clone());
                    let nodes = nodes_of(&self.membership);
                    let epoch = next_epoch(&self.monmap, &nodes);
                    if epoch != self.monmap.epoch || nodes != self.monmap.members {
                        self.monmap = CommittedMonmap {
                            epoch,
                            members: nodes,
                        };
                        notes.push(Applied::Monmap(self.monmap.clone()));
                    }
                    CommitResult::default()
                }
            };
            replies.push(r);
        }
        self.put_state(&mut b)?;
        self.store.commit(&b).map_err(sm_write)?;
        self.publish_probe();
        for n in notes {
            // A server that stopped listening is stopping too.
            let _ = self.notify.send(n);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, MonNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let kvs = decode_snapshot(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                &std::io::Error::other(e),
            ))
        })?;
        let (old, _) = self
            .store
            .snapshot_scan(SNAPSHOT_PREFIXES, &[])
            .map_err(sm_read)?;
        let kvs_epoch: Option<u64> = kvs
            .iter()
            .find(|(k, _)| k == KEY_MONMAP_EPOCH)
            .and_then(|(_, v)| serde_json::from_slice(v).ok());
        let mut b = Batch::default();
        for (k, _) in old {
            b.delete(k);
        }
        for (k, v) in kvs {
            b.put(k, v);
        }
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        // The snapshot's monmap epoch, which put_state writes back.
        let epoch = kvs_epoch.unwrap_or(0);
        let members = nodes_of(&self.membership);
        self.monmap = CommittedMonmap {
            epoch: if members.is_empty() {
                epoch
            } else {
                epoch.max(1)
            },
            members,
        };
        self.put_state(&mut b)?;
        b.put(KEY_SNAPSHOT, data);
        b.put(
            KEY_SNAPSHOT_META,
            serde_json::to_vec(meta).map_err(sm_write)?,
        );
        self.store.commit(&b).map_err(sm_write)?;
        self.reload()?;
        tracing::info!(last = ?meta.last_log_id, "installed a snapshot from the leader");
        let _ = self.notify.send(Applied::Reload);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<MonRaftConfig>>, StorageError> {
        let Some(meta) = get_json::<SnapshotMeta<NodeId, MonNode>>(&self.store, KEY_SNAPSHOT_META)?
        else {
            return Ok(None);
        };
        let data = self
            .store
            .get(KEY_SNAPSHOT)
            .map_err(sm_read)?
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a snapshot from one consistent read of the store.
pub struct SnapshotBuilder {
    store: Arc<MonStore>,
}

impl RaftSnapshotBuilder<MonRaftConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MonRaftConfig>, StorageError> {
        let (kvs, vals) = self
            .store
            .snapshot_scan(SNAPSHOT_PREFIXES, &[KEY_APPLIED, KEY_MEMBERSHIP])
            .map_err(sm_read)?;
        let parse = |v: &Option<Vec<u8>>| -> Result<Option<serde_json::Value>, StorageError> {
            match v {
                None => Ok(None),
                Some(raw) => serde_json::from_slice(raw).map(Some).map_err(sm_read),
            }
        };
        let last_log_id: Option<LogId> = match parse(&vals[0])? {
            Some(v) => serde_json::from_value(v).map_err(sm_read)?,
            None => None,
        };
        let last_membership: StoredMembership = match parse(&vals[1])? {
            Some(v) => serde_json::from_value(v).map_err(sm_read)?,
            None => StoredMembership::default(),
        };
        let data = encode_snapshot(&kvs);
        let snapshot_id = format!(
            "{}-{}-{:08x}",
            last_log_id.map(|l| l.leader_id.term).unwrap_or(0),
            last_log_id.map(|l| l.index).unwrap_or(0),
            crc32c::crc32c(&data)
        );
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let mut b = Batch::default();
        b.put(KEY_SNAPSHOT, data.clone());
        b.put(
            KEY_SNAPSHOT_META,
            serde_json::to_vec(&meta).map_err(sm_write)?,
        );
        self.store.commit(&b).map_err(sm_write)?;
        tracing::info!(id = %meta.snapshot_id, keys = kvs.len(), bytes = data.len(), "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn encode_snapshot(kvs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(kvs.len() as u32).to_le_bytes());
    for (k, v) in kvs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_snapshot(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    if data.len() < SNAPSHOT_MAGIC.len() + 8 || &data[..8] != SNAPSHOT_MAGIC {
        return Err("not a mon snapshot (bad magic or too short)".into());
    }
    let (body, tail) = data.split_at(data.len() - 4);
    let want = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if crc32c::crc32c(body) != want {
        return Err("mon snapshot crc mismatch".into());
    }
    let mut pos = 8;
    let u32_at = |pos: &mut usize| -> Result<usize, String> {
        let b = body.get(*pos..*pos + 4).ok_or("mon snapshot truncated")?;
        *pos += 4;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = u32_at(&mut pos)?;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let kl = u32_at(&mut pos)?;
        let k = body.get(pos..pos + kl).ok_or("mon snapshot truncated")?;
        pos += kl;
        let vl = u32_at(&mut pos)?;
        let v = body.get(pos..pos + vl).ok_or("mon snapshot truncated")?;
        pos += vl;
        let k = String::from_utf8(k.to_vec()).map_err(|_| "a snapshot key is not UTF-8")?;
        out.push((k, v.to_vec()));
    }
    if pos != body.len() {
        return Err("mon snapshot has trailing bytes".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_frames_round_trip_and_refuse_damage() {
        let kvs = vec![
            ("meta/fsid".to_string(), vec![1, 2]),
            ("osdmap/last".into(), vec![]),
        ];
        let data = encode_snapshot(&kvs);
        assert_eq!(decode_snapshot(&data).expect("decodes"), kvs);
        let mut bad = data.clone();
        bad[10] ^= 1;
        assert!(decode_snapshot(&bad).is_err());
        assert!(decode_snapshot(&data[..data.len() - 1]).is_err());
        assert!(decode_snapshot(b"nope").is_err());
    }
}
