//! Client ops in flight, for the admin socket's `dump_ops_in_flight`
//! (Ceph's shape: description, initiated_at, age, duration, and the
//! events each op went through).
//!
//! Ops record structured fields (client, tid, PG, object, the first few
//! operations) and events into a slot reused from op to op; the
//! description is formatted only when someone dumps. Starting and finishing
//! an op take the registry lock once each; marking an event locks only the
//! op's slot (never contended but by a dump). No allocation once the slots
//! and their name buffers have grown to the largest op seen.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use kalmar_maps::time::{format_stamp, now_us};
use kalmar_maps::PgId;
use kalmar_proto::client::{OsdOp, OsdOpRequest};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// Events recorded per op at most (later ones replace the last).
const MAX_EVENTS_PER_OP: usize = 16;
/// Operations of a request named in its description at most.
const MAX_OPS_DESCRIBED: usize = 3;

/// One operation of a request as the description shows it.
#[derive(Clone, Copy, Default)]
struct OpBrief {
    name: &'static str,
    extent: Option<(u64, u64)>,
}

fn brief(op: &OsdOp) -> OpBrief {
    let (name, extent) = op.brief();
    OpBrief { name, extent }
}

struct Slot {
    in_use: bool,
    client: u64,
    nonce: u64,
    tid: u64,
    pgid: PgId,
    map_epoch: u32,
    /// Reused buffer: the object name.
    oid: String,
    ops: [OpBrief; MAX_OPS_DESCRIBED],
    n_ops: usize,
    initiated_us: u64,
    start: Instant,
    flag_point: &'static str,
    events: [(&'static str, u64); MAX_EVENTS_PER_OP],
    n_events: usize,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            in_use: false,
            client: 0,
            nonce: 0,
            tid: 0,
            pgid: PgId::default(),
            map_epoch: 0,
            oid: String::new(),
            ops: [OpBrief::default(); MAX_OPS_DESCRIBED],
            n_ops: 0,
            initiated_us: 0,
            start: kalmar_common::clock::now(),
            flag_point: "",
            events: [("", 0); MAX_EVENTS_PER_OP],
            n_events: 0,
        }
    }

    /// Ceph's `osd_op(client.C.N:T PGID OID [ops] eE)`.
    fn description(&self) -> String {
        let mut s = format!(
            "osd_op(client.{}.{}:{} {} {} [",
            self.client, self.nonce, self.tid, self.pgid, self.oid
        );
        for (i, op) in self.ops[..self.n_ops].iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(op.name);
            if let Some((off, len)) = op.extent {
                let _ = write!(s, " {off}~{len}");
            }
        }
        let _ = write!(s, "] e{})", self.map_epoch);
        s
    }
}

#[derive(Default)]
struct Registry {
    slots: Vec<Arc<Mutex<Slot>>>,
    free: Vec<usize>,
}

/// The registry of ops in flight.
#[derive(Clone, Default)]
pub struct OpTracker {
    reg: Arc<Mutex<Registry>>,
}

/// One tracked op; dropping it frees its slot.
pub struct TrackedOp {
    index: usize,
    slot: Arc<Mutex<Slot>>,
    reg: Arc<Mutex<Registry>>,
}

impl OpTracker {
    pub fn new() -> Self {
        OpTracker::default()
    }

    /// Starts tracking a client request (its first event is `initiated`).
    pub fn start(&self, req: &OsdOpRequest) -> TrackedOp {
        let (index, slot) = {
            let mut reg = self.reg.lock();
            match reg.free.pop() {
                Some(i) => (i, reg.slots[i].clone()),
                None => {
                    let s = Arc::new(Mutex::new(Slot::empty()));
                    reg.slots.push(s.clone());
                    (reg.slots.len() - 1, s)
                }
            }
        };
        let now = now_us();
        {
            let mut s = slot.lock();
            s.in_use = true;
            s.client = req.client;
            s.nonce = req.nonce;
            s.tid = req.tid;
            s.pgid = req.pgid;
            s.map_epoch = req.map_epoch;
            s.oid.clear();
            s.oid.push_str(&req.oid);
            s.n_ops = req.ops.len().min(MAX_OPS_DESCRIBED);
            for (dst, op) in s.ops.iter_mut().zip(&req.ops) {
                *dst = brief(op);
            }
            s.initiated_us = now;
            s.start = kalmar_common::clock::now();
            s.flag_point = "initiated";
            s.events[0] = ("initiated", now);
            s.n_events = 1;
        }
        TrackedOp {
            index,
            slot,
            reg: self.reg.clone(),
        }
    }

    pub fn num_ops(&self) -> usize {
        let reg = self.reg.lock();
        reg.slots.len() - reg.free.len()
    }

    /// `dump_ops_in_flight`.
    pub fn dump(&self) -> Value {
        let slots: Vec<Arc<Mutex<Slot>>> = self.reg.lock().slots.clone();
        let now = now_us();
        let mut out: Vec<(u64, Value)> = slots
            .iter()
            .filter_map(|s| {
                let s = s.lock();
                if !s.in_use {
                    return None;
                }
                let events: Vec<Value> = s.events[..s.n_events]
                    .iter()
                    .map(|(e, t)| json!({"event": e, "time": format_stamp(*t)}))
                    .collect();
                let v = json!({
                    "description": s.description(),
                    "initiated_at": format_stamp(s.initiated_us),
                    "age": s.start.elapsed().as_secs_f64(),
                    "duration": (now.saturating_sub(s.initiated_us)) as f64 / 1e6,
                    "type_data": {
                        "flag_point": s.flag_point,
                        "events": events,
                    },
                });
                Some((s.initiated_us, v))
            })
            .collect();
        out.sort_by_key(|(t, _)| *t);
        let ops: Vec<Value> = out.into_iter().map(|(_, v)| v).collect();
        json!({"ops": ops, "num_ops": ops.len()})
    }
}

impl TrackedOp {
    /// Records an event; it also becomes the op's flag point.
    pub fn mark(&self, event: &'static str) {
        let mut s = self.slot.lock();
        s.flag_point = event;
        let entry = (event, now_us());
        let n = s.n_events;
        if n < MAX_EVENTS_PER_OP {
            s.events[n] = entry;
            s.n_events = n + 1;
        } else {
            s.events[MAX_EVENTS_PER_OP - 1] = entry;
        }
    }

    /// Time since the op arrived.
    pub fn age(&self) -> std::time::Duration {
        self.slot.lock().start.elapsed()
    }
}

impl Drop for TrackedOp {
    fn drop(&mut self) {
        self.slot.lock().in_use = false;
        self.reg.lock().free.push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(tid: u64) -> OsdOpRequest {
        OsdOpRequest {
            tid,
            client: 1,
            nonce: 0,
            pgid: PgId::new(1, 2),
            map_epoch: 7,
            oid: "obj".into(),
            flags: 0,
            ops: vec![OsdOp::Write {
                offset: 0,
                data: Bytes::from_static(&[0u8; 4]),
            }],
        }
    }

    #[test]
    fn tracks_reuses_slots_and_forgets() {
        let t = OpTracker::new();
        let a = t.start(&req(1));
        a.mark("queued_for_pg");
        a.mark("sub_op_sent");
        let d = t.dump();
        assert_eq!(d["num_ops"], json!(1));
        let op = &d["ops"][0];
        assert_eq!(op["type_data"]["flag_point"], json!("sub_op_sent"));
        assert_eq!(op["type_data"]["events"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            op["description"],
            json!("osd_op(client.1.0:1 1.2 obj [write 0~4] e7)")
        );
        for _ in 0..40 {
            a.mark("x");
        }
        assert_eq!(
            t.dump()["ops"][0]["type_data"]["events"]
                .as_array()
                .map(Vec::len),
            Some(MAX_EVENTS_PER_OP)
        );
        drop(a);
        assert_eq!(t.dump()["num_ops"], json!(0));
        // The freed slot serves the next op.
        let b = t.start(&req(2));
        assert_eq!(t.reg.lock().slots.len(), 1);
        assert_eq!(t.num_ops(), 1);
        drop(b);
        assert_eq!(t.num_ops(), 0);
    }
}
