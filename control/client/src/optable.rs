//! The ops in flight: a slab of reusable slots, one per op, each with the
//! place for its reply and its task's waker. Replaces a channel and a map
//! entry per op: a slot, its waker and the request buffers it keeps (the
//! object name's `String`, the ops' `Vec`) are reused by the next op.
//!
//! A request id's `tid` names its slot: `tid = seq << SLOT_BITS | slot`,
//! with `seq` counting up for the objecter's life, so tids never repeat
//! (the OSD deduplicates by them) and a reply finds its slot without a
//! lookup; a reply whose tid no longer matches its slot is stale and is
//! dropped.

use std::task::{Context, Poll, Waker};

use kalmar_maps::{Epoch, OsdId, PgId};
use kalmar_proto::client::{OsdOpReply, OsdOpRequest};

use crate::mapview::Placement;

/// Bits of a tid that name the slot. Ops in flight are bounded by
/// `max_inflight_ops`, clamped to [`MAX_SLOTS`].
pub const SLOT_BITS: u32 = 20;
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;

/// What an op is waiting for, as map changes and lost sessions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Between attempts (placing, backing off): nothing to kick.
    Nothing,
    /// A map of at least this epoch.
    Epoch(Epoch),
    /// The answer to an attempt sent on `session` to `primary`.
    Reply {
        session: u64,
        pgid: PgId,
        primary: OsdId,
    },
}

/// Why a waiting op woke.
#[derive(Debug)]
pub enum Wake {
    Reply(OsdOpReply),
    /// Something it waited on changed (a map, its session, shutdown).
    Kicked,
}

struct Slot {
    /// 0 when the slot is free.
    tid: u64,
    placement: Placement,
    waiting: Waiting,
    reply: Option<OsdOpReply>,
    kicked: bool,
    waker: Option<Waker>,
    /// The request buffers, kept here while the slot is free.
    spare: Option<OsdOpRequest>,
}

/// A slot taken by an op.
pub struct Taken {
    pub slot: u32,
    pub tid: u64,
    /// Cleared request buffers to fill (capacity of earlier ops kept).
    pub req: OsdOpRequest,
}

fn empty_request() -> OsdOpRequest {
    OsdOpRequest {
        tid: 0,
        client: 0,
        nonce: 0,
        pgid: PgId::default(),
        map_epoch: 0,
        oid: String::new(),
        flags: 0,
        ops: Vec::new(),
    }
}

#[derive(Default)]
pub struct OpTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    next_seq: u64,
}

impl OpTable {
    /// A free slot for an op addressed to `placement`. The caller bounds
    /// the ops in flight to at most [`MAX_SLOTS`].
    pub fn take(&mut self, placement: Placement) -> Taken {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    tid: 0,
                    placement,
                    waiting: Waiting::Nothing,
                    reply: None,
                    kicked: false,
                    waker: None,
                    spare: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.next_seq += 1;
        let tid = self.next_seq << SLOT_BITS | u64::from(slot);
        let s = &mut self.slots[slot as usize];
        s.tid = tid;
        s.placement = placement;
        s.waiting = Waiting::Nothing;
        s.kicked = false;
        let req = s.spare.take().unwrap_or_else(empty_request);
        Taken { slot, tid, req }
    }

    /// Frees `slot`, keeping `req`'s buffers (emptied) for the next op.
    pub fn give_back(&mut self, slot: u32, mut req: OsdOpRequest) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        req.oid.clear();
        req.ops.clear();
        s.tid = 0;
        s.waiting = Waiting::Nothing;
        s.reply = None;
        s.kicked = false;
        s.waker = None;
        s.spare = Some(req);
        self.free.push(slot);
    }

    fn slot_of(&mut self, tid: u64) -> Option<&mut Slot> {
        let s = self.slots.get_mut((tid & SLOT_MASK) as usize)?;
        (s.tid == tid && tid != 0).then_some(s)
    }

    pub fn set_waiting(&mut self, tid: u64, waiting: Waiting) {
        if let Some(s) = self.slot_of(tid) {
            s.waiting = waiting;
        }
    }

    /// Records a reply; returns the waker to wake once the lock is
    /// released (none for a stale tid).
    pub fn deliver(&mut self, reply: OsdOpReply) -> Option<Waker> {
        let s = self.slot_of(reply.tid)?;
        s.reply = Some(reply);
        s.waker.take()
    }

    /// Wakes the ops for which `kick` says so (called on map changes,
    /// lost sessions and shutdown, not per op).
    pub fn kick(&mut self, mut kick: impl FnMut(Placement, Waiting) -> bool) {
        for s in self.slots.iter_mut().filter(|s| s.tid != 0) {
            if kick(s.placement, s.waiting) {
                s.kicked = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// A reply or a kick for op `tid`, or registers its waker.
    pub fn poll_wake(&mut self, tid: u64, cx: &mut Context<'_>) -> Poll<Wake> {
        let Some(s) = self.slot_of(tid) else {
            // Not reachable while the op holds its slot; wake it rather
            // than leave it waiting forever.
            return Poll::Ready(Wake::Kicked);
        };
        if let Some(r) = s.reply.take() {
            s.waiting = Waiting::Nothing;
            return Poll::Ready(Wake::Reply(r));
        }
        if std::mem::take(&mut s.kicked) {
            s.waiting = Waiting::Nothing;
            return Poll::Ready(Wake::Kicked);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Ops holding a slot.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake as WakeTrait;

    use super::*;

    struct Count(AtomicUsize);
    impl WakeTrait for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn place() -> Placement {
        Placement::Pg(PgId::new(1, 0))
    }

    fn reply(tid: u64) -> OsdOpReply {
        OsdOpReply {
            tid,
            ..Default::default()
        }
    }

    #[test]
    fn tids_name_their_slot_and_never_repeat() {
        let mut t = OpTable::default();
        let a = t.take(place());
        let b = t.take(place());
        assert_ne!(a.slot, b.slot);
        t.give_back(a.slot, a.req);
        let c = t.take(place());
        assert_eq!(c.slot, a.slot, "a freed slot is reused");
        assert_ne!(c.tid, a.tid, "with a new tid");
        assert_eq!(c.tid & SLOT_MASK, u64::from(c.slot));
        // A reply to the slot's earlier op is stale.
        assert!(t.deliver(reply(a.tid)).is_none());
        assert_eq!(t.in_flight(), 2);
    }

    #[test]
    fn reply_wakes_the_waiter_and_is_taken_once() {
        let mut t = OpTable::default();
        let op = t.take(place());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(t.poll_wake(op.tid, &mut cx).is_pending());
        let w = t.deliver(reply(op.tid)).expect("waker registered");
        w.wake();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(
            matches!(t.poll_wake(op.tid, &mut cx), Poll::Ready(Wake::Reply(r)) if r.tid == op.tid)
        );
        assert!(t.poll_wake(op.tid, &mut cx).is_pending());
    }

    #[test]
    fn kicks_reach_only_the_chosen_ops() {
        let mut t = OpTable::default();
        let a = t.take(place());
        let b = t.take(place());
        let on = |session| Waiting::Reply {
            session,
            pgid: PgId::new(1, 0),
            primary: 0,
        };
        t.set_waiting(a.tid, on(1));
        t.set_waiting(b.tid, on(2));
        t.kick(|_, w| w == on(1));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            t.poll_wake(a.tid, &mut cx),
            Poll::Ready(Wake::Kicked)
        ));
        assert!(t.poll_wake(b.tid, &mut cx).is_pending());
    }

    #[test]
    fn request_buffers_are_kept_for_the_next_op() {
        let mut t = OpTable::default();
        let mut op = t.take(place());
        op.req
            .oid
            .push_str("rbd_data.0123456789ab.0000000000000001");
        let cap = op.req.oid.capacity();
        t.give_back(op.slot, op.req);
        let again = t.take(place());
        assert!(again.req.oid.is_empty());
        assert_eq!(again.req.oid.capacity(), cap);
    }
}
