//! The user-facing API: a cluster handle ([`Rados`]) and per-pool I/O
//! contexts ([`IoCtx`]) with librados-like calls.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use kalmar_common::encoding::{Blob, Decode};
use kalmar_maps::{OsdMap, PgId, PoolId};
use kalmar_msgr::{event_channel, EntityName, EntityType};
use kalmar_proto::client::{ListPage, OmapPage, OsdOp, OsdOpReply, StatOut};
use kalmar_proto::mon::{MonCommandReply, OsdMapMsg};
use kalmar_proto::monc::{MonClient, MonEvent};
use tokio::sync::mpsc;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::msgr_transport::{reply_task, MsgrTransport};
use crate::objecter::{Objecter, Target};
use crate::transport::Transport;

/// Objects listed per request when listing a pool.
const LIST_PAGE: u32 = 1000;
/// Omap entries fetched per request by [`IoCtx::omap_get_all`].
const OMAP_PAGE: u32 = 1000;
/// Inconsistent objects fetched per request (Ceph's `rados` asks for 32).
const LIST_INCONSISTENT_PAGE: u32 = 32;

/// How often a keyed client renews before it knows the lifetime the mon
/// grants (Ceph's default `auth_service_ticket_ttl`, 1 h, quartered).
const DEFAULT_RENEWAL: std::time::Duration = std::time::Duration::from_secs(900);
/// Pause before retrying a failed renewal (at the next mon).
const RENEWAL_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Re-authenticates with a mon while the client lives, every quarter of
/// the ticket lifetime the mon last granted (see
/// `kalmar_auth::client::renewal_period`: at least 2 s), so sessions
/// to OSDs it opens later still get in whatever `auth_service_ticket_ttl`
/// the mons run with. The renewed tickets land in the `ClientAuth` the
/// OSD sessions share. A failure is logged and retried at the next mon
/// after [`RENEWAL_RETRY`].
async fn renew_tickets(
    o: std::sync::Weak<Objecter<MsgrTransport>>,
    mons: Vec<std::net::SocketAddr>,
    me: EntityName,
    msgr: kalmar_msgr::MsgrConfig,
) {
    let period = |msgr: &kalmar_msgr::MsgrConfig| {
        msgr.auth
            .client
            .as_ref()
            .and_then(|c| c.renewal_period())
            .unwrap_or(DEFAULT_RENEWAL)
    };
    let mut turn = 0usize;
    let mut pause = period(&msgr);
    loop {
        tokio::time::sleep(pause).await;
        if o.strong_count() == 0 || mons.is_empty() {
            return;
        }
        let addr = mons[turn % mons.len()];
        turn += 1;
        let (tx, _rx) = event_channel(&msgr);
        pause = match kalmar_msgr::Connection::connect(
            addr,
            me.clone(),
            uuid::Uuid::nil(),
            msgr.clone(),
            tx,
        )
        .await
        {
            Ok(c) => {
                c.close().await;
                let p = period(&msgr);
                tracing::debug!(mon = %addr, next_in = ?p, "renewed tickets");
                p
            }
            Err(e) => {
                tracing::warn!(mon = %addr, "renewing tickets failed: {e}");
                RENEWAL_RETRY
            }
        };
    }
}

/// A connection to a cluster.
#[derive(Clone)]
pub struct Rados {
    o: Arc<Objecter<MsgrTransport>>,
    mon: Arc<MonClient>,
}

impl Rados {
    /// Connects to the mon and waits for the first OSD map.
    pub async fn connect(config: ClientConfig) -> Result<Rados, ClientError> {
        let client_id = rand::random::<u64>() >> 1;
        let nonce = u64::from(std::process::id()) << 32 | u64::from(rand::random::<u32>());
        // With a key the client is the key's entity (`client.admin`);
        // without, an anonymous `client.ID` (auth off).
        let keyed = config.msgr.auth.client.as_ref().filter(|c| c.has_key());
        let me = match keyed.map(|c| c.entity().parse::<EntityName>()) {
            Some(Ok(e)) => e,
            _ => EntityName::new(EntityType::Client, client_id.to_string()),
        };
        let renews = keyed.is_some();
        let mons: Vec<std::net::SocketAddr> = std::iter::once(config.mon)
            .chain(config.other_mons.iter().copied())
            .collect();
        let (mon, mon_events) =
            MonClient::connect_any(&mons, me.clone(), uuid::Uuid::nil(), config.msgr.clone())
                .await?;
        mon.subscribe("osdmap", 0, false).await?;
        let mon = Arc::new(mon);
        let (events, osd_events) = event_channel(&config.msgr);
        let (me_for_renewal, msgr_for_renewal) = (me.clone(), config.msgr.clone());
        let transport = MsgrTransport::new(me, config.msgr.clone(), events);
        let limit = config.mon_timeout;
        let o = Objecter::new(transport, config, client_id, nonce);
        tokio::spawn(map_task(
            Arc::downgrade(&o),
            Arc::downgrade(&mon),
            mon_events,
        ));
        tokio::spawn(reply_task(Arc::downgrade(&o), osd_events));
        if renews {
            tokio::spawn(renew_tickets(
                Arc::downgrade(&o),
                mons,
                me_for_renewal,
                msgr_for_renewal,
            ));
        }
        if !o.wait_for_map(limit).await {
            return Err(ClientError::NoMap(limit.as_millis()));
        }
        Ok(Rados { o, mon })
    }

    /// An I/O context for a pool, by name.
    pub fn ioctx(&self, pool: &str) -> Result<IoCtx, ClientError> {
        IoCtx::new(self.o.clone(), pool)
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
        Ok(self.mon.command(cmd, self.o.config.mon_timeout).await?)
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
        let r = self.o.submit(pg.pool, Target::Pg(pg), [op]).await?;
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
                    errno: nix::errno::Errno::EAGAIN,
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

/// Brings the objecter's map forward from the mon's osdmap messages;
/// asks for a full map when a message does not connect to the map it has.
async fn map_task(
    o: Weak<Objecter<MsgrTransport>>,
    mon: Weak<MonClient>,
    mut rx: mpsc::Receiver<MonEvent>,
) {
    while let Some(ev) = rx.recv().await {
        let Some(o) = o.upgrade() else { return };
        match ev {
            MonEvent::OsdMap(m) => {
                let gap = !apply_osdmap(&o, &m);
                if gap {
                    let Some(mon) = mon.upgrade() else { return };
                    if let Err(e) = mon.subscribe("osdmap", 0, true).await {
                        tracing::debug!("asking for a full map: {e}");
                    }
                }
            }
            MonEvent::Closed(reason) => {
                tracing::warn!("mon session closed: {reason}");
            }
            _ => {}
        }
    }
}

/// Applies an osdmap message; false when it has a gap (a full map is
/// needed).
fn apply_osdmap<T: Transport>(o: &Objecter<T>, msg: &OsdMapMsg) -> bool {
    let cur = o.map();
    let base = (cur.epoch > 0).then_some(&*cur);
    match msg.advance(base) {
        Ok(Some(m)) => {
            o.apply_map(m);
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!("bad osdmap from the mon: {e}");
            true
        }
    }
}

/// Object I/O in one pool.
pub struct IoCtx<T: Transport = MsgrTransport> {
    o: Arc<Objecter<T>>,
    pool: PoolId,
    name: String,
}

impl<T: Transport> Clone for IoCtx<T> {
    fn clone(&self) -> Self {
        IoCtx {
            o: self.o.clone(),
            pool: self.pool,
            name: self.name.clone(),
        }
    }
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

impl<T: Transport> IoCtx<T> {
    /// An I/O context for the pool named `pool` in the objecter's map.
    pub fn new(o: Arc<Objecter<T>>, pool: &str) -> Result<Self, ClientError> {
        let id = o.pool_id(pool)?;
        Ok(IoCtx {
            o,
            pool: id,
            name: pool.to_string(),
        })
    }

    pub fn pool_name(&self) -> &str {
        &self.name
    }

    pub fn pool_id(&self) -> PoolId {
        self.pool
    }

    /// Runs several ops on one object atomically (all reads or all writes).
    pub async fn operate(&self, oid: &str, ops: Vec<OsdOp>) -> Result<OsdOpReply, ClientError> {
        self.submit(oid, ops).await
    }

    async fn submit(
        &self,
        oid: &str,
        ops: impl IntoIterator<Item = OsdOp>,
    ) -> Result<OsdOpReply, ClientError> {
        if oid.is_empty() {
            return Err(ClientError::Invalid("object name is empty".into()));
        }
        self.o
            .submit(self.pool, Target::Object(oid), ops)
            .await
            .map_err(|e| self.named(e))
    }

    /// The pool's name in place of its id.
    fn named(&self, e: ClientError) -> ClientError {
        match e {
            ClientError::NoSuchPool(_) => ClientError::NoSuchPool(self.name.clone()),
            e => e,
        }
    }

    async fn one(&self, oid: &str, op: OsdOp) -> Result<OsdOpReply, ClientError> {
        self.submit(oid, [op]).await
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
            let r = self
                .o
                .submit(self.pool, Target::Pg(pg), [op])
                .await
                .map_err(|e| self.named(e))?;
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
