//! The user-facing API: a cluster handle ([`Rados`]) and per-pool I/O
//! contexts ([`IoCtx`]) with librados-like calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kalmar_common::encoding::{Blob, Decode};
use kalmar_maps::{OsdMap, PgId, PoolId};
use kalmar_proto::client::{ListPage, OmapPage, OsdOp, OsdOpReply, StatOut};
use kalmar_proto::mon::MonCommandReply;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::objecter::{Objecter, Target};

/// Objects listed per request when listing a pool.
const LIST_PAGE: u32 = 1000;
/// Omap entries fetched per request by [`IoCtx::omap_get_all`].
const OMAP_PAGE: u32 = 1000;
/// Inconsistent objects fetched per request (Ceph's `rados` asks for 32).
const LIST_INCONSISTENT_PAGE: u32 = 32;

/// A connection to a cluster.
#[derive(Clone)]
pub struct Rados {
    o: Arc<Objecter>,
}

impl Rados {
    /// Connects to the mon and waits for the first OSD map.
    pub async fn connect(config: ClientConfig) -> Result<Rados, ClientError> {
        Ok(Rados {
            o: Objecter::connect(config).await?,
        })
    }

    /// An I/O context for a pool, by name.
    pub fn ioctx(&self, pool: &str) -> Result<IoCtx, ClientError> {
        let id = self.o.pool_id(pool)?;
        Ok(IoCtx {
            o: self.o.clone(),
            pool: id,
            name: pool.to_string(),
        })
    }

    /// The newest OSD map the client has.
    pub fn osdmap(&self) -> Arc<OsdMap> {
        self.o.map()
    }

    /// Runs a mon command (a JSON object with a `prefix`).
    pub async fn mon_command(
        &self,
        cmd: &serde_json::Value,
    ) -> Result<MonCommandReply, ClientError> {
        Ok(self.o.mon.command(cmd, self.o.config.mon_timeout).await?)
    }

    /// Sends a command to a PG's primary ([`OsdOp::PgQuery`],
    /// [`OsdOp::PgScrub`], [`OsdOp::PgListInconsistent`]) and returns its
    /// JSON answer. A PG the map does not have is `NoSuchPg`.
    pub async fn pg_command(&self, pg: PgId, op: OsdOp) -> Result<serde_json::Value, ClientError> {
        if !op.is_pg_command() {
            return Err(ClientError::Invalid(format!(
                "{} is not a PG command",
                op.describe()
            )));
        }
        let map = self.o.map();
        match map.pool(pg.pool) {
            Ok(p) if pg.seed < p.pg_num => {}
            _ => return Err(ClientError::NoSuchPg(pg.to_string())),
        }
        let r = self.o.submit(pg.pool, Target::Pg(pg), vec![op]).await?;
        serde_json::from_slice(&first_output(&r))
            .map_err(|e| ClientError::BadReply(format!("pg {pg} command output: {e}")))
    }

    /// Every inconsistent object the last scrub of `pg` recorded, as
    /// Ceph's `rados list-inconsistent-obj` shows them: `{"epoch",
    /// "inconsistents": [...]}`.
    pub async fn list_inconsistent_obj(&self, pg: PgId) -> Result<serde_json::Value, ClientError> {
        let mut epoch = None;
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let op = OsdOp::PgListInconsistent {
                start_after: after.clone(),
                max: LIST_INCONSISTENT_PAGE,
            };
            let page = self.pg_command(pg, op).await?;
            let e = page["epoch"].as_u64();
            if epoch.is_some() && epoch != e {
                // A new scrub record (new interval) between pages.
                return Err(ClientError::Osd {
                    errno: kalmar_proto::client::errno::EAGAIN,
                    msg: format!("pg {pg}: the scrub record changed while it was listed"),
                });
            }
            epoch = e;
            let items = page["inconsistents"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(last) = items.last().and_then(|i| i["object"]["name"].as_str()) {
                after = last.to_string();
            }
            let more = page["more"].as_bool() == Some(true) && !items.is_empty();
            all.extend(items);
            if !more {
                return Ok(serde_json::json!({
                    "epoch": epoch.unwrap_or(0),
                    "inconsistents": all,
                }));
            }
        }
    }

    /// Test hook: drops every OSD session (ops in flight are resent).
    pub fn reset_osd_sessions(&self) {
        self.o.reset_sessions()
    }

    pub fn client_id(&self) -> u64 {
        self.o.client_id()
    }

    pub async fn shutdown(&self) {
        self.o.shutdown().await
    }
}

/// `stat` of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStat {
    pub size_bytes: u64,
    pub mtime_us: u64,
}

/// Object I/O in one pool.
#[derive(Clone)]
pub struct IoCtx {
    o: Arc<Objecter>,
    pool: PoolId,
    name: String,
}

fn decode<T: Decode>(data: &Bytes, what: &str) -> Result<T, ClientError> {
    T::from_bytes(data).map_err(|e| ClientError::BadReply(format!("{what}: {e}")))
}

fn first_output(r: &OsdOpReply) -> Bytes {
    r.outputs
        .first()
        .map(|o| o.data.clone())
        .unwrap_or_default()
}

impl IoCtx {
    pub fn pool_name(&self) -> &str {
        &self.name
    }

    pub fn pool_id(&self) -> PoolId {
        self.pool
    }

    /// Runs several ops on one object atomically (all reads or all writes).
    pub async fn operate(&self, oid: &str, ops: Vec<OsdOp>) -> Result<OsdOpReply, ClientError> {
        if oid.is_empty() {
            return Err(ClientError::Invalid("object name is empty".into()));
        }
        self.o.submit(self.pool, Target::Object(oid), ops).await
    }

    async fn one(&self, oid: &str, op: OsdOp) -> Result<OsdOpReply, ClientError> {
        self.operate(oid, vec![op]).await
    }

    /// Writes `data` at `offset`; returns the log version (`epoch`, `v`).
    pub async fn write(
        &self,
        oid: &str,
        offset: u64,
        data: Bytes,
    ) -> Result<(u32, u64), ClientError> {
        let r = self.one(oid, OsdOp::Write { offset, data }).await?;
        Ok((r.version_epoch, r.version))
    }

    pub async fn write_full(&self, oid: &str, data: Bytes) -> Result<(u32, u64), ClientError> {
        let r = self.one(oid, OsdOp::WriteFull { data }).await?;
        Ok((r.version_epoch, r.version))
    }

    pub async fn append(&self, oid: &str, data: Bytes) -> Result<(u32, u64), ClientError> {
        let r = self.one(oid, OsdOp::Append { data }).await?;
        Ok((r.version_epoch, r.version))
    }

    /// Reads `len` bytes at `offset` (`len == 0`: to the end).
    pub async fn read(&self, oid: &str, offset: u64, len: u64) -> Result<Bytes, ClientError> {
        let r = self.one(oid, OsdOp::Read { offset, len }).await?;
        Ok(first_output(&r))
    }

    pub async fn stat(&self, oid: &str) -> Result<ObjectStat, ClientError> {
        let r = self.one(oid, OsdOp::Stat).await?;
        let s: StatOut = decode(&first_output(&r), "stat")?;
        Ok(ObjectStat {
            size_bytes: s.size_bytes,
            mtime_us: s.mtime_us,
        })
    }

    pub async fn remove(&self, oid: &str) -> Result<(), ClientError> {
        self.one(oid, OsdOp::Remove).await.map(|_| ())
    }

    pub async fn truncate(&self, oid: &str, size: u64) -> Result<(), ClientError> {
        self.one(oid, OsdOp::Truncate { size }).await.map(|_| ())
    }

    pub async fn create(&self, oid: &str, exclusive: bool) -> Result<(), ClientError> {
        self.one(oid, OsdOp::Create { exclusive }).await.map(|_| ())
    }

    pub async fn setxattr(&self, oid: &str, name: &str, value: Bytes) -> Result<(), ClientError> {
        let op = OsdOp::SetXattr {
            name: name.to_string(),
            value,
        };
        self.one(oid, op).await.map(|_| ())
    }

    pub async fn getxattr(&self, oid: &str, name: &str) -> Result<Bytes, ClientError> {
        let r = self
            .one(
                oid,
                OsdOp::GetXattr {
                    name: name.to_string(),
                },
            )
            .await?;
        Ok(first_output(&r))
    }

    pub async fn rmxattr(&self, oid: &str, name: &str) -> Result<(), ClientError> {
        self.one(
            oid,
            OsdOp::RmXattr {
                name: name.to_string(),
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn getxattrs(&self, oid: &str) -> Result<BTreeMap<String, Bytes>, ClientError> {
        let r = self.one(oid, OsdOp::GetXattrs).await?;
        let m: BTreeMap<String, Blob> = decode(&first_output(&r), "xattrs")?;
        Ok(m.into_iter().map(|(k, v)| (k, Bytes::from(v.0))).collect())
    }

    pub async fn omap_set(
        &self,
        oid: &str,
        entries: Vec<(String, Bytes)>,
    ) -> Result<(), ClientError> {
        self.one(oid, OsdOp::OmapSetVals { entries })
            .await
            .map(|_| ())
    }

    pub async fn omap_rm_keys(&self, oid: &str, keys: Vec<String>) -> Result<(), ClientError> {
        self.one(oid, OsdOp::OmapRmKeys { keys }).await.map(|_| ())
    }

    pub async fn omap_clear(&self, oid: &str) -> Result<(), ClientError> {
        self.one(oid, OsdOp::OmapClear).await.map(|_| ())
    }

    /// One page of omap entries after `start_after`; `true` if more follow.
    pub async fn omap_get_vals(
        &self,
        oid: &str,
        start_after: &str,
        max: u32,
    ) -> Result<(BTreeMap<String, Bytes>, bool), ClientError> {
        let op = OsdOp::OmapGetVals {
            start_after: start_after.to_string(),
            max,
        };
        let r = self.one(oid, op).await?;
        let page: OmapPage = decode(&first_output(&r), "omap page")?;
        Ok((
            page.entries
                .into_iter()
                .map(|(k, v)| (k, Bytes::from(v.0)))
                .collect(),
            page.more,
        ))
    }

    /// Every omap entry of an object.
    pub async fn omap_get_all(&self, oid: &str) -> Result<BTreeMap<String, Bytes>, ClientError> {
        let mut out = BTreeMap::new();
        let mut after = String::new();
        loop {
            let (page, more) = self.omap_get_vals(oid, &after, OMAP_PAGE).await?;
            if let Some(k) = page.keys().next_back() {
                after = k.clone();
            }
            out.extend(page);
            if !more {
                return Ok(out);
            }
        }
    }

    pub async fn omap_get_vals_by_keys(
        &self,
        oid: &str,
        keys: Vec<String>,
    ) -> Result<BTreeMap<String, Bytes>, ClientError> {
        let r = self.one(oid, OsdOp::OmapGetValsByKeys { keys }).await?;
        let m: BTreeMap<String, Blob> = decode(&first_output(&r), "omap values")?;
        Ok(m.into_iter().map(|(k, v)| (k, Bytes::from(v.0))).collect())
    }

    /// Every object name in the pool (PG by PG, each in name order).
    pub async fn list_objects(&self) -> Result<Vec<String>, ClientError> {
        let map = self.o.map();
        let pool = map
            .pool(self.pool)
            .map_err(|_| ClientError::NoSuchPool(self.name.clone()))?;
        let mut out = Vec::new();
        for pg in pool.pgs() {
            out.extend(self.list_pg(pg).await?);
        }
        Ok(out)
    }

    /// The object names of one PG.
    pub async fn list_pg(&self, pg: PgId) -> Result<Vec<String>, ClientError> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let op = OsdOp::PgLs {
                start_after: after.clone(),
                max: LIST_PAGE,
            };
            let r = self.o.submit(self.pool, Target::Pg(pg), vec![op]).await?;
            let page: ListPage = decode(&first_output(&r), "listing")?;
            if let Some(last) = page.names.last() {
                after = last.clone();
            }
            let more = page.more && !page.names.is_empty();
            out.extend(page.names);
            if !more {
                return Ok(out);
            }
        }
    }
}
