//! kalmar-peering: everything about placement groups that is decision,
//! not I/O. No threads, no clocks, no storage: plain data in, plain data
//! out, so every rule can be tested on its own.
//!
//! # Pieces
//! - Types: [`Eversion`] (`45'123`), [`ReqId`], [`PgLogEntry`], [`PgLog`]
//!   (with dups for resend detection and bounded trimming), [`PgMissing`],
//!   [`ObjectBound`] (`last_backfill`), [`PgHistory`], [`PgInfo`],
//!   [`PastIntervals`], [`PgStateFlags`] (Ceph's `active+clean` strings).
//! - Pure decisions: [`check_new_interval`], [`build_prior`],
//!   [`find_best_info`], [`choose_acting`] (with the PG Temp handoff),
//!   [`merge_log`] / [`proc_replica_log`] (divergent entries),
//!   [`plan_recovery`], [`plan_backfill`], [`copy_counts`], and scrub's
//!   comparison of copies with the authoritative choice and Ceph's error
//!   names ([`scrub::compare_chunk`]) and its schedule
//!   ([`scrub::scrub_due`]).
//! - The state machine: [`Pg`] with [`State`]s, [`Event`]s and
//!   [`Action`]s.
//!
//! # The contract the OSD follows
//!
//! **Creating PGs.** When a pool (or pg_num increase) creates a PG, each OSD
//! of its up set makes [`Pg::create`]. When an OSD finds itself in a PG's
//! up or acting set without a copy (new OSD, remap), it makes
//! [`Pg::new_empty_copy`] with the history and past intervals from
//! [`build_initial_history`] over the maps since the PG was created; such a
//! copy is incomplete and is backfilled. After a restart, [`Pg::load`] from
//! the persisted [`PgMeta`]. Then deliver [`Event::Initialize`].
//!
//! **Maps.** For every new OSDMap epoch, in order and without gaps, deliver
//! [`Event::AdvMap`] with the [`ClusterView`] (share one `Arc` among PGs)
//! and the PG's [`PgMapping`] (up/acting after pg_temp; the primary is
//! `acting[0]`). After a restart the first AdvMap carries the epoch the PG
//! last processed. After the newest epoch, deliver [`Event::ActMap`] once.
//! A mapping with `pool_exists == false` deletes the PG.
//!
//! **Messages.** [`Action::Send`] goes to the named OSD as a peering message
//! for the PG; on receipt, deliver [`Event::Message`] only once the PG has
//! processed a map at least as new as [`PeeringMessage::epoch`] (queue it
//! until then). Messages from one OSD to another must arrive in the order
//! sent (the messenger guarantees it); so must `RemoveOnPeer` and pushes. An
//! OSD that has no copy of a queried PG answers with
//! [`PeeringMessage::reply_without_copy`]; an `Activate` for a PG without a
//! copy creates one first (`Pg::new_empty_copy`).
//!
//! **Persistence.** Actions of one `handle` call are carried out in order;
//! an [`Action::Persist`] must be durable before any later `Send` of the
//! same batch is transmitted (a peer must never learn of state that a crash
//! could lose). The log lives in the store's collection log of the PG,
//! keyed by [`Eversion::log_key`]; info, past intervals and missing set are
//! single values in the PG's metadata object. [`LogWrite::Rewrite`]
//! replaces the whole log; a merge writes only what it appended when it
//! rolled nothing back ([`LogWrite::after_merge`]). Objects in
//! `PgWrite::remove_objects` are deleted in the same transaction.
//!
//! **Client writes** (primary): check [`Pg::readiness`]; for a missing
//! object send [`Event::ClientWaitsFor`] and retry after it is recovered;
//! answer resends from [`Pg::find_reqid`]; build the entry with
//! [`Pg::new_log_entry`], persist [`Pg::append_log`]`(entries,
//! Pg::trim_to())` with the object change in one transaction, send the
//! entry and `trim_to` to each of [`Pg::replication_targets`] (object data
//! only where `with_data`), which call `append_log` with the same
//! `trim_to` in their own transaction. Acknowledge the client only when
//! every target committed; then call [`Pg::on_write_committed`].
//!
//! **Recovery and backfill.** [`Action::Pull`] / [`Action::Push`] copy whole
//! objects; the receiving OSD writes the object and delivers
//! [`Event::ObjectRecovered`] to its PG in the same transaction; the
//! pushing primary then gets [`Event::PushCompleted`]. Scans
//! ([`Action::ScanLocal`], [`Action::ScanPeer`]) list a collection in
//! bytewise object-name order after a bound. Reservations
//! ([`Action::RequestReservation`]) are granted by the OSD's reserver,
//! bounded by `osd_max_backfills` (backfill) and `osd_recovery_max_active`
//! (recovery), with [`Event::ReservationGranted`]; `ReleaseReservation`
//! also cancels a queued request.
//!
//! **Stats and latencies.** [`Action::PublishStats`] carries the PG's
//! `pg dump` line; [`Action::RecordStateLatency`] feeds the
//! `recoverystate_perf` counters; [`Pg::query_json`] renders `pg query`.
//!
//! # Where Kalmar departs from Ceph (found by the simulator)
//! - At activation the primary appends a [`LogOp::Marker`] entry in the
//!   activation epoch. Without it, an activated interval that wrote nothing
//!   keeps an older head than a divergent entry of an earlier interval, and
//!   a later peering can roll back state that was already applied and
//!   visible (losing the data an acknowledged write left).
//! - Log trimming stops below the oldest object any member still misses
//!   (Ceph's `min_last_complete_ondisk`), and always at an entry version.
//! - A member whose log forked below the authoritative tail stays acting
//!   and is backfilled (as Ceph's `activate` does); a primary whose own log
//!   forked records itself incomplete so every later primary agrees.
//! - Recovery pulls from any copy whose log was examined (strays, backfill
//!   targets before their reset), and queries every known copy when
//!   objects are unfound.
//! - Scope: replicated pools only (no EC shards, no async recovery, no
//!   primary_temp); the primary is `acting[0]`.
//!
//! **Scrub.** [`Event::ScrubRequested`] (an admin, or the OSD's schedule
//! from [`scrub::scrub_due`]) waits until the PG is active+clean and holds
//! a scrub slot ([`ReservationKind::Scrub`], `osd_max_scrubs`), then sets
//! `scrubbing` (+`deep`, +`repair`) and asks the OSD with
//! [`Action::StartScrub`]. The OSD compares the members' scrub maps chunk
//! by chunk with [`scrub::compare_chunk`] and reports
//! [`Event::ScrubFinished`]: stamps and `num_scrub_errors` are recorded
//! (`inconsistent` while not zero), and a repair's items become missing
//! objects (on the primary or on a member) that recovery then rewrites
//! from the authoritative copies.
#![deny(clippy::unwrap_used)]

pub mod backfill;
pub mod choose;
pub mod error;
pub mod eversion;
pub mod flags;
pub mod history;
pub mod info;
pub mod intervals;
pub mod log;
pub mod machine;
pub mod merge;
pub mod missing;
pub mod object;
pub mod prior;
pub mod recovery;
pub mod scrub;
pub mod settings;
pub mod stats;
pub mod toofull;

pub use backfill::{common_end, plan_backfill, BackfillStep, ScanResult};
pub use choose::{choose_acting, find_best_info, ActingChoice, ActingInputs, BestInfo};
pub use error::PeeringError;
pub use eversion::{Eversion, ReqId};
pub use flags::PgStateFlags;
pub use history::build_initial_history;
pub use info::{PgFastInfo, PgHistory, PgInfo, PgObjectStats};
pub use intervals::{
    check_new_interval, ClusterView, Interval, IntervalChange, OsdView, PastIntervals, PgMapping,
};
pub use log::{CompletedRequest, Few, LogOp, PgLog, PgLogDup, PgLogEntry, TrimOutcome};
pub use machine::{
    Action, Active, Event, LogWrite, Peering, PeeringMessage, Pg, PgMeta, PgStatsReport, PgWrite,
    QueryKind, Replica, ReplicationTarget, ReplicationTargets, ReservationKind, ReserveFor,
    ScrubResult, State, WriteReadiness,
};
pub use merge::{merge_log, proc_replica_log, MergeOutcome, ReplicaState};
pub use missing::{MissingItem, PgMissing};
pub use object::{ObjectBound, ObjectName};
pub use prior::{build_prior, PriorSet};
pub use recovery::{plan_recovery, PeerCopy, RecoveryInputs, RecoveryOp, RecoveryPlan};
pub use settings::PeeringSettings;
pub use stats::{copy_counts, CopyCounts, CopyState};
pub use toofull::{backfill_adds, reservation_verdict, Fullness, TooFull};
