//! The PG state machine's named states (Ceph's statechart hierarchy,
//! flattened) and the bounded state history `pg query` shows.

use std::collections::VecDeque;

use serde::Serialize;

/// Sub-states of primary peering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Peering {
    /// Querying the prior set for infos.
    GetInfo,
    /// Fetching the authoritative log from the OSD that has it.
    GetLog,
    /// Fetching replicas' logs to compute their missing sets.
    GetMissing,
    /// Waiting for a map in which our up_thru covers this interval.
    WaitUpThru,
    /// A maybe-rw past interval has no surviving member.
    Down,
    /// No complete authoritative history, or too few usable copies.
    Incomplete,
}

/// Sub-states of an active primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Active {
    /// Activation sent; waiting for every replica to persist it.
    Activating,
    WaitLocalRecoveryReserved,
    WaitRemoteRecoveryReserved,
    Recovering,
    /// A member is too full for recovery (`recovery_toofull`): no
    /// reservation held; asks again after `osd_recovery_retry_interval`.
    NotRecovering,
    WaitLocalBackfillReserved,
    WaitRemoteBackfillReserved,
    Backfilling,
    /// A target is too full for backfill (`backfill_toofull`): no
    /// reservation held; asks again after `osd_backfill_retry_interval`.
    NotBackfilling,
    /// Everything recovered; deciding whether the PG is clean.
    Recovered,
    Clean,
}

/// Sub-states of an active replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Replica {
    RepNotRecovering,
    RepWaitRecoveryReserved,
    RepWaitBackfillReserved,
    RepRecovering,
}

/// A PG's state on one OSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum State {
    /// Created or loaded; waiting for `Initialize`.
    Initial,
    /// A new interval began; peering restarts on the next `ActMap`.
    Reset,
    /// Deciding the role for this interval.
    Start,
    Peering(Peering),
    /// Asked the mon for a pg_temp; waiting for the map that applies it.
    WaitActingChange,
    Active(Active),
    ReplicaActive(Replica),
    /// Holds a copy but is not (yet) an active member this interval.
    Stray,
    /// The copy is to be removed (pool deleted or primary purged it).
    ToDelete,
    /// An impossible input was seen; the PG stops until restarted.
    Crashed,
}

impl State {
    /// Ceph's path name (`Started/Primary/Peering/GetInfo`).
    pub fn name(self) -> &'static str {
        use Active as A;
        use Peering as P;
        use Replica as R;
        match self {
            State::Initial => "Initial",
            State::Reset => "Reset",
            State::Start => "Started/Start",
            State::Peering(P::GetInfo) => "Started/Primary/Peering/GetInfo",
            State::Peering(P::GetLog) => "Started/Primary/Peering/GetLog",
            State::Peering(P::GetMissing) => "Started/Primary/Peering/GetMissing",
            State::Peering(P::WaitUpThru) => "Started/Primary/Peering/WaitUpThru",
            State::Peering(P::Down) => "Started/Primary/Peering/Down",
            State::Peering(P::Incomplete) => "Started/Primary/Peering/Incomplete",
            State::WaitActingChange => "Started/Primary/WaitActingChange",
            State::Active(A::Activating) => "Started/Primary/Active/Activating",
            State::Active(A::WaitLocalRecoveryReserved) => {
                "Started/Primary/Active/WaitLocalRecoveryReserved"
            }
            State::Active(A::WaitRemoteRecoveryReserved) => {
                "Started/Primary/Active/WaitRemoteRecoveryReserved"
            }
            State::Active(A::Recovering) => "Started/Primary/Active/Recovering",
            State::Active(A::WaitLocalBackfillReserved) => {
                "Started/Primary/Active/WaitLocalBackfillReserved"
            }
            State::Active(A::WaitRemoteBackfillReserved) => {
                "Started/Primary/Active/WaitRemoteBackfillReserved"
            }
            State::Active(A::Backfilling) => "Started/Primary/Active/Backfilling",
            State::Active(A::NotRecovering) => "Started/Primary/Active/NotRecovering",
            State::Active(A::NotBackfilling) => "Started/Primary/Active/NotBackfilling",
            State::Active(A::Recovered) => "Started/Primary/Active/Recovered",
            State::Active(A::Clean) => "Started/Primary/Active/Clean",
            State::ReplicaActive(R::RepNotRecovering) => "Started/ReplicaActive/RepNotRecovering",
            State::ReplicaActive(R::RepWaitRecoveryReserved) => {
                "Started/ReplicaActive/RepWaitRecoveryReserved"
            }
            State::ReplicaActive(R::RepWaitBackfillReserved) => {
                "Started/ReplicaActive/RepWaitBackfillReserved"
            }
            State::ReplicaActive(R::RepRecovering) => "Started/ReplicaActive/RepRecovering",
            State::Stray => "Started/Stray",
            State::ToDelete => "Started/ToDelete",
            State::Crashed => "Crashed",
        }
    }

    /// The `recoverystate_perf` latency counter of this state.
    pub fn perf_counter(self) -> &'static str {
        use Active as A;
        use Peering as P;
        use Replica as R;
        match self {
            State::Initial => "initial_latency",
            State::Reset => "reset_latency",
            State::Start => "start_latency",
            State::Peering(P::GetInfo) => "getinfo_latency",
            State::Peering(P::GetLog) => "getlog_latency",
            State::Peering(P::GetMissing) => "getmissing_latency",
            State::Peering(P::WaitUpThru) => "waitupthru_latency",
            State::Peering(P::Down) => "down_latency",
            State::Peering(P::Incomplete) => "incomplete_latency",
            State::WaitActingChange => "waitactingchange_latency",
            State::Active(A::Activating) => "activating_latency",
            State::Active(A::WaitLocalRecoveryReserved) => "waitlocalrecoveryreserved_latency",
            State::Active(A::WaitRemoteRecoveryReserved) => "waitremoterecoveryreserved_latency",
            State::Active(A::Recovering) => "recovering_latency",
            State::Active(A::WaitLocalBackfillReserved) => "waitlocalbackfillreserved_latency",
            State::Active(A::WaitRemoteBackfillReserved) => "waitremotebackfillreserved_latency",
            State::Active(A::Backfilling) => "backfilling_latency",
            State::Active(A::NotRecovering) => "notrecovering_latency",
            State::Active(A::NotBackfilling) => "notbackfilling_latency",
            State::Active(A::Recovered) => "recovered_latency",
            State::Active(A::Clean) => "clean_latency",
            State::ReplicaActive(R::RepNotRecovering) => "repnotrecovering_latency",
            State::ReplicaActive(R::RepWaitRecoveryReserved) => "repwaitrecoveryreserved_latency",
            State::ReplicaActive(R::RepWaitBackfillReserved) => "repwaitbackfillreserved_latency",
            State::ReplicaActive(R::RepRecovering) => "reprecovering_latency",
            State::Stray => "stray_latency",
            State::ToDelete => "deleting_latency",
            State::Crashed => "crashed_latency",
        }
    }

    pub fn is_peering(self) -> bool {
        matches!(self, State::Peering(_))
    }

    pub fn is_active_primary(self) -> bool {
        matches!(self, State::Active(_))
    }
}

/// One entry of the state history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateHistoryEntry {
    pub state: &'static str,
    pub enter_us: u64,
    /// `None` while current.
    pub exit_us: Option<u64>,
}

/// The last states a PG went through, bounded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateHistory {
    entries: VecDeque<StateHistoryEntry>,
    #[serde(skip)]
    max: usize,
}

impl StateHistory {
    pub fn new(max: usize) -> Self {
        StateHistory {
            entries: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// Closes the current entry at `now_us` and opens one for `state`.
    /// Returns the closed entry's duration.
    pub fn enter(&mut self, state: State, now_us: u64) -> Option<(&'static str, u64)> {
        let closed = self.entries.back_mut().and_then(|e| {
            if e.exit_us.is_none() {
                e.exit_us = Some(now_us);
                Some((e.state, now_us.saturating_sub(e.enter_us)))
            } else {
                None
            }
        });
        self.entries.push_back(StateHistoryEntry {
            state: state.name(),
            enter_us: now_us,
            exit_us: None,
        });
        while self.entries.len() > self.max {
            self.entries.pop_front();
        }
        closed
    }

    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &StateHistoryEntry> {
        self.entries.iter()
    }
}
