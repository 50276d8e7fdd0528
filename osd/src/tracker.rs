//! Client ops in flight, for the admin socket's `dump_ops_in_flight`
//! (Ceph's shape: description, initiated_at, age, duration, and the
//! events each op went through).
//!
//! Registering and finishing an op take the registry lock once each;
//! marking an event locks only that op.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kalmar_maps::time::{format_stamp, now_us};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// Events recorded per op at most (later ones replace the last).
const MAX_EVENTS_PER_OP: usize = 16;

struct OpState {
    description: String,
    initiated_us: u64,
    start: Instant,
    flag_point: &'static str,
    events: Vec<(&'static str, u64)>,
}

#[derive(Default)]
struct Registry {
    ops: Mutex<HashMap<u64, Arc<Mutex<OpState>>>>,
    next: AtomicU64,
}

/// The registry of ops in flight.
#[derive(Clone, Default)]
pub struct OpTracker {
    reg: Arc<Registry>,
}

/// One tracked op; dropping it removes the op from the registry.
pub struct TrackedOp {
    id: u64,
    state: Arc<Mutex<OpState>>,
    reg: Arc<Registry>,
}

impl OpTracker {
    pub fn new() -> Self {
        OpTracker::default()
    }

    /// Starts tracking an op (its first event is `initiated`).
    pub fn start(&self, description: String) -> TrackedOp {
        let now = now_us();
        let state = Arc::new(Mutex::new(OpState {
            description,
            initiated_us: now,
            start: Instant::now(),
            flag_point: "initiated",
            events: vec![("initiated", now)],
        }));
        let id = self.reg.next.fetch_add(1, Ordering::Relaxed);
        self.reg.ops.lock().insert(id, state.clone());
        TrackedOp {
            id,
            state,
            reg: self.reg.clone(),
        }
    }

    pub fn num_ops(&self) -> usize {
        self.reg.ops.lock().len()
    }

    /// `dump_ops_in_flight`.
    pub fn dump(&self) -> Value {
        let ops: Vec<Arc<Mutex<OpState>>> = self.reg.ops.lock().values().cloned().collect();
        let now = now_us();
        let mut out: Vec<(u64, Value)> = ops
            .iter()
            .map(|s| {
                let s = s.lock();
                let age = s.start.elapsed().as_secs_f64();
                let events: Vec<Value> = s
                    .events
                    .iter()
                    .map(|(e, t)| json!({"event": e, "time": format_stamp(*t)}))
                    .collect();
                let v = json!({
                    "description": s.description,
                    "initiated_at": format_stamp(s.initiated_us),
                    "age": age,
                    "duration": (now.saturating_sub(s.initiated_us)) as f64 / 1e6,
                    "type_data": {
                        "flag_point": s.flag_point,
                        "events": events,
                    },
                });
                (s.initiated_us, v)
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
        let mut s = self.state.lock();
        s.flag_point = event;
        let entry = (event, now_us());
        if s.events.len() < MAX_EVENTS_PER_OP {
            s.events.push(entry);
        } else if let Some(last) = s.events.last_mut() {
            *last = entry;
        }
    }

    /// Time since the op arrived.
    pub fn age(&self) -> std::time::Duration {
        self.state.lock().start.elapsed()
    }
}

impl Drop for TrackedOp {
    fn drop(&mut self) {
        self.reg.ops.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_and_forgets() {
        let t = OpTracker::new();
        let a = t.start("osd_op(client.1.0:1 1.2 obj [write 0~4])".into());
        a.mark("queued_for_pg");
        a.mark("sub_op_sent");
        let d = t.dump();
        assert_eq!(d["num_ops"], json!(1));
        let op = &d["ops"][0];
        assert_eq!(op["type_data"]["flag_point"], json!("sub_op_sent"));
        assert_eq!(op["type_data"]["events"].as_array().map(Vec::len), Some(3));
        assert!(op["description"]
            .as_str()
            .is_some_and(|s| s.contains("write")));
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
    }
}
