//! Outbound sessions to other OSDs (one per peer and purpose: cluster
//! traffic or heartbeats). A session follows the OSD's address in the
//! current map: when the peer goes down or comes back at a new address
//! (a restart), the old session is dropped and a new one made.
//!
//! Everything this OSD asks of a peer (peering, replicated writes, pushes,
//! scans) travels on the one outbound session, so it arrives in the order
//! sent; answers come back on the session the request arrived on.

use std::collections::HashMap;
use std::sync::Arc;

use kalmar_maps::{EntityAddr, OsdAddrs, OsdId, OsdMap};
use kalmar_msgr::sink::EventSink;
use kalmar_msgr::{Connection, EntityName, Message, MsgrConfig, SendError, SessionHandle};
use parking_lot::Mutex;
use uuid::Uuid;

/// Picks the address of the purpose (cluster or heartbeat).
pub type AddrOf = fn(&OsdAddrs) -> EntityAddr;

pub fn cluster_addr(a: &OsdAddrs) -> EntityAddr {
    a.cluster
}

pub fn heartbeat_addr(a: &OsdAddrs) -> EntityAddr {
    a.heartbeat_back
}

/// Outbound sessions of one purpose; their events go to `S`. A session
/// runs on the runtime (shard) that first needed it.
pub struct Peers<S> {
    me: EntityName,
    fsid: Uuid,
    config: MsgrConfig,
    addr_of: AddrOf,
    events: S,
    conns: Mutex<HashMap<OsdId, (EntityAddr, Arc<Connection>)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("osd.{0} is not up in the current map")]
    NotUp(OsdId),
    #[error(transparent)]
    Send(#[from] SendError),
}

impl<S: EventSink + Clone> Peers<S> {
    pub fn new(me: EntityName, fsid: Uuid, config: MsgrConfig, addr_of: AddrOf, events: S) -> Self {
        Peers {
            me,
            fsid,
            config,
            addr_of,
            events,
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// The session to `osd` at its address in `map` (made if needed).
    pub fn session(&self, map: &OsdMap, osd: OsdId) -> Result<SessionHandle, PeerError> {
        let slot = map
            .osd(osd)
            .filter(|s| s.is_up())
            .ok_or(PeerError::NotUp(osd))?;
        let addr = (self.addr_of)(&slot.addrs);
        if addr.is_blank() {
            return Err(PeerError::NotUp(osd));
        }
        let mut conns = self.conns.lock();
        if let Some((a, c)) = conns.get(&osd) {
            if *a == addr && !c.handle().is_closed() {
                return Ok(c.handle());
            }
        }
        let conn = Arc::new(Connection::start(
            addr.addr,
            self.me.clone(),
            self.fsid,
            self.config.clone(),
            self.events.clone(),
        ));
        let h = conn.handle();
        conns.insert(osd, (addr, conn));
        Ok(h)
    }

    /// Sends to `osd`, waiting while its send queue is full.
    pub async fn send(&self, map: &OsdMap, osd: OsdId, msg: Message) -> Result<(), PeerError> {
        let h = self.session(map, osd)?;
        h.send(msg).await?;
        Ok(())
    }

    /// Sends without waiting (heartbeats: a full queue means the peer is
    /// not reading, which the missing replies already tell).
    pub fn try_send(&self, map: &OsdMap, osd: OsdId, msg: Message) -> Result<(), PeerError> {
        self.session(map, osd)?.try_send(msg)?;
        Ok(())
    }

    /// Drops sessions to peers that are down or moved in `map`, and to
    /// peers not in `keep` when given.
    pub fn on_map(&self, map: &OsdMap, keep: Option<&dyn Fn(OsdId) -> bool>) {
        self.conns.lock().retain(|&osd, (addr, _)| {
            let current = map
                .osd(osd)
                .filter(|s| s.is_up())
                .map(|s| (self.addr_of)(&s.addrs));
            current == Some(*addr) && keep.is_none_or(|k| k(osd))
        });
    }

    pub fn len(&self) -> usize {
        self.conns.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
