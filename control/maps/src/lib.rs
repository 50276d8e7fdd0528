//! Cluster maps and placement shared by the mon, OSDs, mgr and clients.
//!
//! - [`osdmap`]: the [`OsdMap`] (pools, OSD states, pg_temp, primary_temp
//!   and the CRUSH map) with its [`Incremental`]s and versioned encodings.
//! - [`crush`]: CRUSH maps, Ceph's decompiled text format, straw2 placement
//!   bit-identical to Ceph's, and `crushtool --test` output.
//! - [`placement`]: object name -> PG -> up/acting OSDs as Ceph computes it,
//!   with `osd map` / `pg map` lines and JSON structs.
//! - [`mgrmap`]: the [`MgrMap`] (active mgr, standbys, modules).
//! - [`dump`]: Ceph-shaped JSON and plain-text renderings (`osd dump`,
//!   `osd tree`, `osd crush dump`).
#![deny(clippy::unwrap_used)]

pub mod addr;
pub mod crush;
pub mod dump;
pub mod error;
pub mod hash;
pub mod incremental;
pub mod mgrmap;
pub mod osd;
pub mod osdmap;
pub mod pg;
pub mod placement;
pub mod pool;
pub mod time;

pub use addr::EntityAddr;
pub use crush::CrushMap;
pub use error::MapError;
pub use incremental::Incremental;
pub use mgrmap::{MgrMap, MgrModuleInfo, MgrStandby};
pub use osd::{OsdAddrs, OsdInfo, OsdSlot, OsdState};
pub use osdmap::{OsdMap, OsdMapFlags};
pub use pg::PgId;
pub use placement::{ObjectMapping, PgMapping, UpActing};
pub use pool::{PgPool, PoolType};

/// A map epoch.
pub type Epoch = u32;
/// An OSD id (`osd.N`); negative values never name an OSD.
pub type OsdId = i32;
/// A pool id.
pub type PoolId = u64;
/// Ceph's "no OSD here" marker (`CRUSH_ITEM_NONE`), kept in EC-style
/// position-stable sets and printed as 2147483647.
pub const ITEM_NONE: OsdId = 0x7fff_ffff;
