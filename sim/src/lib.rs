//! The whole-cluster simulator (issue 11): the production mon, OSDs and
//! client — their real peering, PG, store and messenger code — in one
//! process, each daemon a host of a simulated network
//! ([`kalmar_msgr::sim::SimNet`]) and each OSD's disk a fault-injecting
//! in-memory device with its metadata database on the same power
//! ([`kalmar_objectstore::kv::PoweredKv`]). A seed chooses the network's
//! latencies and cuts, the faults (OSD crashes, power cuts, partitions,
//! clean restarts) and what every device keeps after a power cut; the
//! check afterwards is that no acknowledged write was lost and no object
//! holds bytes no write gave it.
//!
//! Run it on a current-thread tokio runtime with paused time (the
//! `tests/seeds.rs` harness does): the clock moves only when every task
//! waits, so minutes of simulated failure handling take a fraction of a
//! second, and one thread means one order of events.
//!
//! Not yet deterministic to the bit: the mon's store is RocksDB on a
//! temporary directory, openraft draws its election timeouts from the
//! thread's random generator, and some maps hash with a random seed. A
//! failing seed therefore usually — not always — fails again.

pub mod cluster;
pub mod model;
pub mod run;

pub use cluster::{Cluster, ClusterConfig};
pub use run::{run_seed, Report, SimOptions, Writes};
