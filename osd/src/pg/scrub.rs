//! The primary's scrubber, and a member's side of it.
//!
//! A scrub walks the PG in chunks of `osd_scrub_chunk_max` objects. For
//! each chunk: writes to its range wait (new ones are queued, in-flight
//! ones are let finish on every member); then every acting member builds
//! its scrub map of the range (`scrub_map`) and the primary compares them
//! (`kalmar_peering::scrub::compare_chunk`); then the range is released
//! and the next chunk starts. Reads are never held: they see committed
//! state, which the chunk's maps describe.
//!
//! The end is reported to the state machine (`Event::ScrubFinished`); a
//! repair's items become missing objects there, which recovery rewrites.
//! What the scrub found is stored with it (`scrub_store`), for
//! `list-inconsistent-obj`, also after a restart.
//! A new interval drops the scrub (the machine resets its flags); a member
//! that fails or does not answer within `osd_scrub_map_timeout` ends it
//! without a result.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kalmar_common::encoding::{Blob, Decode, Encode};
use kalmar_maps::time::now_us;
use kalmar_maps::{OsdId, OsdMapFlags};
use kalmar_msgr::SessionHandle;
use kalmar_peering::scrub::{compare_chunk, scrub_due, Inconsistency, ScrubMap, ScrubSchedule};
use kalmar_peering::{Active, Event, Eversion, ObjectBound, ScrubResult, State};
use kalmar_proto::client::errno;
use kalmar_proto::osd::{PgScrub, PgScrubMap};
use kalmar_proto::Payload;

use super::scrub_map::{build_map, chunk_end, ChunkRange};
use super::scrub_store::{self, ScrubRecord};
use super::{PgActor, PgEvent};
use crate::perf::*;
use crate::service::reply;

/// A member holding this many times the primary's chunk stops listing.
const MEMBER_CHUNK_SLACK: usize = 4;

/// One chunk under way.
struct Chunk {
    id: u64,
    range: ChunkRange,
    /// Maps were asked for (after the range's in-flight writes finished).
    requested: bool,
    waiting: BTreeSet<OsdId>,
    maps: BTreeMap<OsdId, ScrubMap>,
    since: Instant,
}

/// A scrub under way on the primary.
pub(super) struct Scrubber {
    deep: bool,
    repair: bool,
    started: Instant,
    /// Objects after it are still to be scrubbed.
    start: ObjectBound,
    chunk: Option<Chunk>,
    result: ScrubResult,
    objects: u64,
    recorded: Vec<Inconsistency>,
    /// Inconsistent objects beyond `osd_scrub_max_recorded_inconsistent`.
    unrecorded: u64,
}

fn kind(deep: bool, repair: bool) -> &'static str {
    match (deep, repair) {
        (_, true) => "repair",
        (true, false) => "deep-scrub",
        (false, false) => "scrub",
    }
}

impl PgActor {
    /// `Action::StartScrub`: the machine holds the scrub slot and shows
    /// `scrubbing`; the first chunk starts on the next event.
    pub(super) fn start_scrub(&mut self, deep: bool, repair: bool) {
        tracing::info!(pgid = %self.pgid, "{} starts", kind(deep, repair));
        self.svc.scrub_perf.inc(L_SCRUB_STARTED, 1);
        self.scrubber = Some(Scrubber {
            deep,
            repair,
            started: kalmar_common::clock::now(),
            start: ObjectBound::Min,
            chunk: None,
            result: ScrubResult {
                deep,
                repair,
                ..Default::default()
            },
            objects: 0,
            recorded: Vec::new(),
            unrecorded: 0,
        });
        let _ = self.tx.send(PgEvent::ScrubStep);
    }

    /// Whether a write of `oid` must wait for the current chunk.
    pub(super) fn scrub_blocks(&self, oid: &str) -> bool {
        self.scrubber
            .as_ref()
            .and_then(|s| s.chunk.as_ref())
            .is_some_and(|c| c.range.contains(oid))
    }

    /// A chunk waits for in-flight writes of its range.
    pub(super) fn scrub_waits_for_writes(&self) -> bool {
        self.scrubber
            .as_ref()
            .and_then(|s| s.chunk.as_ref())
            .is_some_and(|c| !c.requested)
    }

    fn writes_in_flight_in(&self, range: &ChunkRange) -> bool {
        self.inflight.values().any(|w| range.contains(w.oid()))
    }

    /// Moves the scrub on: picks the next chunk, or asks for the maps of
    /// the current one once its in-flight writes are done.
    pub(super) async fn scrub_step(&mut self) {
        let Some(s) = self.scrubber.as_ref() else {
            return;
        };
        if s.chunk.is_none() {
            let start = s.start.clone();
            let max = self.svc.opts.osd_scrub_chunk_max;
            let end = match chunk_end(&self.svc.store, &self.coll, &start, max).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(pgid = %self.pgid, "scrub listing failed: {e}");
                    return self.finish_scrub(true).await;
                }
            };
            self.scrub_tid += 1;
            let chunk = Chunk {
                id: self.scrub_tid,
                range: ChunkRange { start, end },
                requested: false,
                waiting: BTreeSet::new(),
                maps: BTreeMap::new(),
                since: kalmar_common::clock::now(),
            };
            if let Some(s) = self.scrubber.as_mut() {
                s.chunk = Some(chunk);
            }
        }
        let range = match self.scrubber.as_ref().and_then(|s| s.chunk.as_ref()) {
            Some(c) if !c.requested => c.range.clone(),
            _ => return,
        };
        if self.writes_in_flight_in(&range) {
            return; // `acked` steps again when they finish
        }
        self.request_maps().await;
    }

    async fn request_maps(&mut self) {
        let members: Vec<OsdId> = self
            .pg
            .mapping()
            .acting_members()
            .filter(|&o| o != self.whoami)
            .collect();
        let Some(s) = self.scrubber.as_mut() else {
            return;
        };
        let deep = s.deep;
        let Some(c) = s.chunk.as_mut() else {
            return;
        };
        c.requested = true;
        c.since = kalmar_common::clock::now();
        c.waiting = members.iter().copied().collect();
        c.waiting.insert(self.whoami);
        let (id, range) = (c.id, c.range.clone());
        let m = PgScrub {
            pgid: self.pgid,
            from: self.whoami,
            map_epoch: self.epoch,
            interval: self.interval(),
            scrub_id: id,
            start: Blob(range.start.to_bytes()),
            end: Blob(range.end.to_bytes()),
            deep,
        };
        let msg = m.to_message();
        for osd in members {
            self.svc.send_osd(osd, msg.clone()).await;
        }
        let (store, coll, tx) = (self.svc.store.clone(), self.coll.clone(), self.tx.clone());
        let stride = self.svc.opts.osd_deep_scrub_stride;
        let max = self.svc.opts.osd_scrub_chunk_max * MEMBER_CHUNK_SLACK;
        let from = self.whoami;
        tokio::spawn(async move {
            let r = build_map(&store, &coll, &range, deep, stride, max).await;
            let _ = tx.send(PgEvent::ScrubMap {
                from,
                id,
                map: r.map_err(|e| e.to_string()),
            });
        });
    }

    /// A member's map (or this OSD's own).
    pub(super) async fn on_scrub_map(
        &mut self,
        from: OsdId,
        id: u64,
        map: Result<(ScrubMap, u64), String>,
    ) {
        let Some(c) = self.scrubber.as_mut().and_then(|s| s.chunk.as_mut()) else {
            return;
        };
        if c.id != id || !c.waiting.remove(&from) {
            return;
        }
        match map {
            Ok((m, bytes)) => {
                self.svc.scrub_perf.inc(L_SCRUB_BYTES, bytes);
                c.maps.insert(from, m);
            }
            Err(e) => {
                tracing::warn!(pgid = %self.pgid, osd = from, "scrub map failed: {e}; scrub abandoned");
                return self.finish_scrub(true).await;
            }
        }
        if c.waiting.is_empty() {
            self.compare_current_chunk().await;
        }
    }

    /// Objects of the range whose newest log entry deletes them.
    fn deleted_in_log(&self, range: &ChunkRange) -> BTreeMap<String, Eversion> {
        let mut out = BTreeMap::new();
        for e in self.pg.log().entries() {
            if !e.op.changes_object() || !range.contains(&e.oid) {
                continue;
            }
            if e.op.is_delete() {
                out.insert(e.oid.clone(), e.version);
            } else {
                out.remove(&e.oid);
            }
        }
        out
    }

    async fn compare_current_chunk(&mut self) {
        let Some(c) = self.scrubber.as_mut().and_then(|s| s.chunk.take()) else {
            return;
        };
        let deleted = self.deleted_in_log(&c.range);
        let out = compare_chunk(self.whoami, &c.maps, &deleted);
        let limit = self.svc.opts.osd_scrub_max_recorded_inconsistent;
        let perf = self.svc.scrub_perf.clone();
        perf.inc(L_SCRUB_CHUNKS, 1);
        perf.inc(L_SCRUB_OBJECTS, out.objects);
        perf.inc(L_SCRUB_ERRORS, out.inconsistents.len() as u64);
        let Some(s) = self.scrubber.as_mut() else {
            return;
        };
        s.objects += out.objects;
        s.result.shallow_errors += out.shallow_errors;
        s.result.deep_errors += out.deep_errors;
        for inc in out.inconsistents {
            let shard_errors: Vec<String> = inc
                .shards
                .iter()
                .filter(|sh| !sh.errors.is_empty())
                .map(|sh| format!("osd.{} {:?}", sh.osd, sh.errors.names()))
                .collect();
            let bad_copies = inc.repair.as_ref().map(|r| &r.to);
            tracing::error!(pgid = %self.pgid, object = %inc.oid, errors = ?inc.errors.names(), ?shard_errors, ?bad_copies, auth = ?inc.auth, "scrub found an inconsistent object");
            match &inc.repair {
                Some(r) if !r.to.is_empty() => {
                    perf.inc(L_SCRUB_REPAIRS, r.to.len() as u64);
                    s.result.repairs.push(r.clone());
                }
                Some(_) => {}
                None if inc.is_deep() => s.result.unrepairable_deep += 1,
                None => s.result.unrepairable_shallow += 1,
            }
            if s.recorded.len() < limit {
                s.recorded.push(inc);
            } else {
                s.unrecorded += 1;
            }
        }
        let done = c.range.end.is_max();
        s.start = c.range.end;
        if done {
            return self.finish_scrub(false).await;
        }
        // Writes to the chunk go on now; the next chunk after the pause.
        self.retry_waiting().await;
        let sleep = self.svc.opts.osd_scrub_sleep;
        if sleep.is_zero() {
            let _ = self.tx.send(PgEvent::ScrubStep);
        } else {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(sleep).await;
                let _ = tx.send(PgEvent::ScrubStep);
            });
        }
    }

    /// Reports the end to the machine; what was found is stored in the
    /// transaction that persists the machine's new error counts.
    async fn finish_scrub(&mut self, aborted: bool) {
        let Some(s) = self.scrubber.take() else {
            return;
        };
        let what = kind(s.deep, s.repair);
        let errors = s.result.shallow_errors + s.result.deep_errors;
        let perf = &self.svc.scrub_perf;
        if aborted {
            perf.inc(L_SCRUB_ABORTED, 1);
            tracing::warn!(pgid = %self.pgid, "{what} abandoned");
        } else {
            perf.inc(L_SCRUB_COMPLETED, 1);
            perf.tinc(L_SCRUB_LATENCY, s.started.elapsed());
            if errors == 0 {
                tracing::info!(pgid = %self.pgid, objects = s.objects, "{what} ok");
            } else {
                tracing::error!(pgid = %self.pgid, objects = s.objects, errors, "{what}: {errors} inconsistent objects");
            }
        }
        // The machine records only a scrub it is running.
        let record = (!aborted && self.pg.is_scrubbing()).then(|| ScrubRecord {
            interval: self.interval(),
            deep: s.deep,
            stamp_us: 0,
            inconsistents: s.recorded,
            unrecorded: s.unrecorded,
        });
        let mut result = s.result;
        result.aborted = aborted;
        self.machine_with(Event::ScrubFinished(result), |pg, t| {
            if let Some(mut r) = record {
                r.stamp_us = pg.pg.info().history.last_scrub_stamp_us;
                scrub_store::add_record(t, &pg.coll, &r);
                pg.scrub_record = Some(r);
            }
        })
        .await;
        self.retry_waiting().await;
    }

    /// The stored record if it is the PG's latest scrub: a scrub another
    /// primary ran since (the history's stamp moved on) makes it stale.
    pub(super) fn scrub_record(&self) -> Option<&ScrubRecord> {
        self.scrub_record
            .as_ref()
            .filter(|r| r.stamp_us == self.pg.info().history.last_scrub_stamp_us)
    }

    /// A new interval: the machine has dropped the scrub already.
    pub(super) fn scrub_new_interval(&mut self) {
        if self.scrubber.take().is_some() {
            self.svc.scrub_perf.inc(L_SCRUB_ABORTED, 1);
            tracing::info!(pgid = %self.pgid, "scrub ended by a new interval");
        }
    }

    /// Periodic: abandons a chunk whose maps are overdue, and asks the
    /// machine for a scheduled scrub when one is due.
    pub(super) async fn scrub_tick(&mut self) {
        let timeout = self.svc.opts.osd_scrub_map_timeout;
        let overdue = self
            .scrubber
            .as_ref()
            .and_then(|s| s.chunk.as_ref())
            .filter(|c| c.requested && kalmar_common::clock::since(c.since) > timeout)
            .map(|c| c.waiting.clone());
        if let Some(waiting) = overdue {
            tracing::warn!(pgid = %self.pgid, ?waiting, "scrub maps overdue ({} s)", timeout.as_secs());
            return self.finish_scrub(true).await;
        }
        let idle = self.pg.is_primary()
            && self.pg.state() == State::Active(Active::Clean)
            && self.scrubber.is_none()
            && !self.pg.is_scrubbing()
            && self.pg.scrub_requested().is_none();
        if !idle {
            return;
        }
        let o = &self.svc.opts;
        let us = |d: Duration| d.as_micros().min(u64::MAX as u128) as u64;
        let sched = ScrubSchedule {
            min_interval_us: us(o.osd_scrub_min_interval),
            deep_interval_us: us(o.osd_deep_scrub_interval),
            noscrub: self.map.test_flag(OsdMapFlags::NOSCRUB),
            nodeep_scrub: self.map.test_flag(OsdMapFlags::NODEEP_SCRUB),
        };
        let h = self.pg.info().history;
        let due = scrub_due(
            now_us(),
            h.last_scrub_stamp_us,
            h.last_deep_scrub_stamp_us,
            self.since_us,
            &sched,
        );
        if let Some(deep) = due {
            tracing::info!(pgid = %self.pgid, deep, "scheduled scrub due");
            self.machine(Event::ScrubRequested {
                deep,
                repair: false,
            })
            .await;
        }
    }

    /// Member: build our map of the primary's chunk and send it back.
    pub(super) async fn on_scrub_request(&mut self, from: SessionHandle, req: PgScrub) {
        if req.map_epoch > self.epoch {
            self.pending_cluster
                .push(PgEvent::ScrubRequest { from, req });
            return;
        }
        if req.interval != self.interval() {
            return;
        }
        let mut answer = PgScrubMap {
            pgid: self.pgid,
            from: self.whoami,
            interval: req.interval,
            scrub_id: req.scrub_id,
            ..Default::default()
        };
        let range = match (
            ObjectBound::from_bytes(&req.start.0),
            ObjectBound::from_bytes(&req.end.0),
        ) {
            (Ok(start), Ok(end)) => ChunkRange { start, end },
            _ => {
                answer.result = -errno::EINVAL;
                reply(&from, answer.to_message());
                return;
            }
        };
        let (store, coll) = (self.svc.store.clone(), self.coll.clone());
        let stride = self.svc.opts.osd_deep_scrub_stride;
        let max = self.svc.opts.osd_scrub_chunk_max * MEMBER_CHUNK_SLACK;
        let perf = self.svc.scrub_perf.clone();
        tokio::spawn(async move {
            match build_map(&store, &coll, &range, req.deep, stride, max).await {
                Ok((m, bytes)) => {
                    perf.inc(L_SCRUB_BYTES, bytes);
                    answer.map = Blob(m.to_bytes());
                }
                Err(e) => {
                    tracing::error!(%coll, "scrub map for the primary failed: {e}");
                    answer.result = -errno::EIO;
                }
            }
            reply(&from, answer.to_message());
        });
    }

    /// Primary: a member's answer.
    pub(super) async fn on_scrub_map_reply(&mut self, r: PgScrubMap) {
        if r.interval != self.interval() {
            return;
        }
        let map = if r.result < 0 {
            Err(format!(
                "osd.{} answered {}",
                r.from,
                errno::describe(r.result)
            ))
        } else {
            ScrubMap::from_bytes(&r.map.0)
                .map(|m| (m, 0))
                .map_err(|e| format!("osd.{} sent a bad map: {e}", r.from))
        };
        self.on_scrub_map(r.from, r.scrub_id, map).await;
    }

    /// The `scrubber` section of `pg query`.
    pub(super) fn scrub_query_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "active": self.scrubber.is_some(),
            "requested": self.pg.scrub_requested().map(|(deep, repair)| serde_json::json!({"deep": deep, "repair": repair})),
        });
        if let Some(s) = &self.scrubber {
            v["deep"] = s.deep.into();
            v["repair"] = s.repair.into();
            v["objects_scrubbed"] = s.objects.into();
            v["errors"] = (s.result.shallow_errors + s.result.deep_errors).into();
            if let Some(c) = &s.chunk {
                v["chunk_start"] = c.range.start.to_string().into();
                v["chunk_end"] = c.range.end.to_string().into();
                v["waiting_on"] = serde_json::json!(c.waiting);
            }
        }
        if let Some(r) = self.scrub_record() {
            v["last_result"] = serde_json::json!({
                "interval": r.interval,
                "deep": r.deep,
                "inconsistent_objects": r.inconsistents.len() as u64 + r.unrecorded,
            });
        }
        v
    }
}
