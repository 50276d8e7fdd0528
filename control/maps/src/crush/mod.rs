//! CRUSH: maps, Ceph's decompiled text format, and placement that is
//! bit-identical to Ceph's `crush_do_rule` for straw2 maps.

pub mod build;
mod classes;
mod decompile;
pub mod edit;
pub mod hash;
mod ln;
pub mod map;
mod mapper;
pub mod tester;
pub mod text;

pub use map::{Bucket, ChooseMode, CrushMap, Device, Rule, RuleStep, Tunables, WEIGHT_ONE};
pub use mapper::Workspace;
pub use tester::{crush_test, crush_test_string, CrushTestArgs};
pub use text::ParseError;
