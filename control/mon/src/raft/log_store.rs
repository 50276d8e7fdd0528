//! The Raft log in the mon's RocksDB (column family
//! [`crate::store::RAFT_CF`]): entries under `l` + big-endian index (so
//! they sort by index), the vote, the committed id and the purge point
//! under `m/`. Appends and votes are
//! synced before openraft hears they are done.

// openraft's traits fix the error type (a large enum); the helpers here
// return it too.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};

use super::{Entry, LogId, MonRaftConfig, NodeId, StorageError};
use crate::store::MonStore;

const KEY_VOTE: &[u8] = b"m/vote";
const KEY_COMMITTED: &[u8] = b"m/committed";
const KEY_PURGED: &[u8] = b"m/purged";
/// Bound on entries read in one call (a lagging follower catches up in
/// several rounds rather than one huge read).
pub const MAX_ENTRIES_PER_READ: usize = 4096;

fn log_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'l';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Just past every log key.
const LOG_END: &[u8] = b"m";

#[derive(Clone)]
pub struct LogStore {
    store: Arc<MonStore>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    pub fn new(store: Arc<MonStore>) -> LogStore {
        LogStore { store }
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.store.raft_get(key).map_err(read_err)? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw).map(Some).map_err(read_err),
        }
    }

    fn put_json<T: serde::Serialize>(
        &self,
        key: &[u8],
        v: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let raw = serde_json::to_vec(v).map_err(write_err)?;
        self.store
            .raft_write(&[(key.to_vec(), raw)], None, sync)
            .map_err(write_err)
    }

    fn last_entry(&self) -> Result<Option<Entry>, StorageError> {
        match self
            .store
            .raft_last_before(&log_key(0), LOG_END)
            .map_err(read_err)?
        {
            None => Ok(None),
            Some((_, raw)) => serde_json::from_slice(&raw).map(Some).map_err(read_err),
        }
    }
}

impl RaftLogReader<MonRaftConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => log_key(i.saturating_add(1)).to_vec(),
            Bound::Excluded(i) => log_key(*i).to_vec(),
            Bound::Unbounded => LOG_END.to_vec(),
        };
        let rows = self
            .store
            .raft_range(&log_key(start), &end, MAX_ENTRIES_PER_READ)
            .map_err(read_err)?;
        rows.iter()
            .map(|(_, raw)| serde_json::from_slice(raw).map_err(read_err))
            .collect()
    }
}

impl RaftLogStorage<MonRaftConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<MonRaftConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_json(KEY_PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(e) => Some(e.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let raw = serde_json::to_vec(vote).map_err(write_err)?;
        self.store
            .raft_write(&[(KEY_VOTE.to_vec(), raw)], None, true)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_json(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: it only saves re-applying entries after a crash.
        self.put_json(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_json::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<MonRaftConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut puts = Vec::new();
        for e in entries {
            let raw = serde_json::to_vec(&e).map_err(write_err)?;
            puts.push((log_key(e.log_id.index).to_vec(), raw));
        }
        let r = self.store.raft_write(&puts, None, true);
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.store
            .raft_write(&[], Some((&log_key(log_id.index), LOG_END)), true)
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let raw = serde_json::to_vec(&Some(log_id)).map_err(write_err)?;
        self.store
            .raft_write(
                &[(KEY_PURGED.to_vec(), raw)],
                Some((&log_key(0), &log_key(log_id.index.saturating_add(1)))),
                true,
            )
            .map_err(write_err)
    }
}
