//! The client's `osd` caps, checked on every client op when the session
//! was authenticated (cephx). The caps came in the client's ticket and were
//! parsed once, when the session was accepted ([`kalmar_auth::AuthedPeer`]);
//! the check per op is a walk over the parsed grants comparing the op's
//! pool name (looked up by id in the OSD's map) and object name: no
//! allocation, no parsing. Unauthenticated sessions (auth `none`) are not
//! checked at all.
//!
//! What an op needs, as Ceph's OSD decides it: reads (`read`, `stat`,
//! xattr and omap reads, `pgnls`, `scrubls`) need `r`; every write needs
//! `w`; a request of several ops needs the union. Ceph refuses such an op
//! with `-EPERM` (`op_has_sufficient_caps` in the PG). `pg query` and
//! `pg scrub|deep-scrub|repair`, which Ceph sends as commands to the OSD,
//! need `allow *` on the OSD (no pool restriction) and are refused with
//! `-EACCES`, as Ceph's OSD refuses commands.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kalmar_auth::caps::OsdOp as CapOp;
use kalmar_auth::{AuthedPeer, Perms};
use kalmar_maps::OsdMap;
use kalmar_proto::client::{errno, OsdOp, OsdOpRequest};

/// At most one info-level refusal line per this period per OSD; every
/// refusal is logged at debug level.
const INFO_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a request needs from the caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Pool permissions (`r`, `w`, or both).
    Pool(Perms),
    /// A PG command: unrestricted `allow *`.
    AllowAll,
}

/// What `req` needs: the union over its ops.
pub fn need(req: &OsdOpRequest) -> Need {
    let mut perms = Perms::NONE;
    for op in &req.ops {
        perms = perms.union(match op {
            OsdOp::PgQuery | OsdOp::PgScrub { .. } => return Need::AllowAll,
            op if op.is_write() => Perms::W,
            _ => Perms::R,
        });
    }
    Need::Pool(perms)
}

/// A refusal: the errno (negative) and the reason for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub result: i32,
    pub reason: &'static str,
}

/// Whether `caps` (a session's parsed caps) allow `req` on `pool_name`.
pub fn check(peer: &AuthedPeer, pool_name: &str, req: &OsdOpRequest) -> Result<(), Refused> {
    let caps = &peer.caps.osd;
    match need(req) {
        Need::AllowAll if caps.osd_allows_all() => Ok(()),
        Need::AllowAll => Err(Refused {
            result: -errno::EACCES,
            reason: "PG commands need osd caps 'allow *'",
        }),
        Need::Pool(need) => {
            let op = CapOp {
                pool: pool_name,
                namespace: "",
                object: &req.oid,
                need,
            };
            if caps.allows_osd_op(&op) {
                Ok(())
            } else {
                Err(Refused {
                    result: -errno::EPERM,
                    reason: "operation not permitted by the client's osd caps",
                })
            }
        }
    }
}

/// Checks `req` against the session's caps with the OSD's current map.
/// A pool the map does not have (deleted) has no name to check against:
/// the op is answered `ENOENT`, as for an unauthenticated client whose PG
/// is gone, without reaching a PG that may still be going away.
pub fn check_with_map(peer: &AuthedPeer, map: &OsdMap, req: &OsdOpRequest) -> Result<(), Refused> {
    match map.pool(req.pgid.pool) {
        Ok(p) => check(peer, &p.name, req),
        Err(_) => Err(Refused {
            result: -errno::ENOENT,
            reason: "the pool does not exist",
        }),
    }
}

/// Logs refusals: each at debug level, and at info level at most once per
/// [`INFO_LOG_EVERY`] (with how many were refused since).
pub struct RefusalLog {
    start: Instant,
    /// Milliseconds since `start` of the last info line (+1; 0: never).
    last_info_ms: AtomicU64,
    since_info: AtomicU64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            start: kalmar_common::clock::now(),
            last_info_ms: AtomicU64::new(0),
            since_info: AtomicU64::new(0),
        }
    }
}

impl RefusalLog {
    pub fn log(&self, peer: &AuthedPeer, pool: &str, req: &OsdOpRequest, r: &Refused) {
        let entity = peer.entity.as_deref().unwrap_or("?");
        let kind = req.ops.first().map_or("none", OsdOp::kind);
        tracing::debug!(entity, pool, op = kind, object = %req.oid, result = r.result, "op refused: {}", r.reason);
        let n = self.since_info.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last_info_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= INFO_LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_info_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since_info.store(0, Ordering::Relaxed);
            tracing::info!(
                entity,
                pool,
                op = kind,
                refused = n,
                "client op refused: {} (refusals since the last such line: {n})",
                r.reason
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_maps::PgId;
    use std::collections::BTreeMap;

    fn peer(osd_caps: &str) -> AuthedPeer {
        let texts: BTreeMap<String, String> = [("osd".to_string(), osd_caps.to_string())].into();
        AuthedPeer {
            entity: Some("client.t".into()),
            global_id: 1,
            caps: kalmar_auth::EntityCaps::parse(&texts).expect("caps"),
            caps_text: texts,
            connection_key: None,
        }
    }

    fn req(ops: Vec<OsdOp>) -> OsdOpRequest {
        OsdOpRequest {
            tid: 1,
            client: 1,
            nonce: 1,
            pgid: PgId { pool: 1, seed: 0 },
            map_epoch: 1,
            oid: "obj".into(),
            flags: 0,
            ops,
        }
    }

    fn read() -> OsdOp {
        OsdOp::Read { offset: 0, len: 0 }
    }

    fn write() -> OsdOp {
        OsdOp::WriteFull {
            data: bytes::Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn needs_per_op_kind() {
        assert_eq!(need(&req(vec![read()])), Need::Pool(Perms::R));
        assert_eq!(need(&req(vec![OsdOp::Stat])), Need::Pool(Perms::R));
        assert_eq!(
            need(&req(vec![OsdOp::PgLs {
                start_after: String::new(),
                max: 1
            }])),
            Need::Pool(Perms::R)
        );
        assert_eq!(need(&req(vec![write()])), Need::Pool(Perms::W));
        assert_eq!(need(&req(vec![OsdOp::Remove])), Need::Pool(Perms::W));
        assert_eq!(need(&req(vec![read(), write()])), Need::Pool(Perms::RW));
        assert_eq!(need(&req(vec![OsdOp::PgQuery])), Need::AllowAll);
        assert_eq!(
            need(&req(vec![OsdOp::PgListInconsistent {
                start_after: String::new(),
                max: 1
            }])),
            Need::Pool(Perms::R)
        );
    }

    #[test]
    fn checks_by_pool_and_kind() {
        let eperm = Err(Refused {
            result: -errno::EPERM,
            reason: "operation not permitted by the client's osd caps",
        });
        let r_a = peer("allow r pool=a");
        assert_eq!(check(&r_a, "a", &req(vec![read()])), Ok(()));
        assert_eq!(check(&r_a, "a", &req(vec![write()])), eperm);
        assert_eq!(check(&r_a, "b", &req(vec![read()])), eperm);
        assert_eq!(check(&r_a, "a", &req(vec![read(), write()])), eperm);
        let rw_a = peer("allow rw pool=a");
        assert_eq!(check(&rw_a, "a", &req(vec![read(), write()])), Ok(()));
        assert_eq!(check(&rw_a, "b", &req(vec![write()])), eperm);
        let rbd = peer("profile rbd pool=a");
        assert_eq!(check(&rbd, "a", &req(vec![write()])), Ok(()));
        assert_eq!(check(&rbd, "b", &req(vec![write()])), eperm);
        let none = peer("");
        assert_eq!(check(&none, "a", &req(vec![read()])), eperm);
        // PG commands: allow * only.
        let q = req(vec![OsdOp::PgQuery]);
        assert_eq!(check(&peer("allow *"), "a", &q), Ok(()));
        assert_eq!(check(&peer("profile osd"), "a", &q), Ok(()));
        assert_eq!(
            check(&peer("allow rwx"), "a", &q).map_err(|r| r.result),
            Err(-errno::EACCES)
        );
    }

    #[test]
    fn refusal_log_rate_limits() {
        let log = RefusalLog::default();
        let p = peer("");
        let r = Refused {
            result: -errno::EPERM,
            reason: "x",
        };
        for _ in 0..100 {
            log.log(&p, "a", &req(vec![read()]), &r);
        }
        // One info line went out; the other 99 are counted for the next.
        assert_eq!(log.since_info.load(Ordering::Relaxed), 99);
        assert_ne!(log.last_info_ms.load(Ordering::Relaxed), 0);
    }
}
