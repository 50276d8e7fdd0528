//! Rebuilds this package when the checkout moves: its tests read files
//! through `env!("CARGO_MANIFEST_DIR")`, baked in at compile time, and the
//! target dir is shared between checkouts (scripts/env.sh), so a binary
//! built in one checkout would look for its files in another.

fn main() {
    println!("cargo:rerun-if-env-changed=KALMAR_SOURCE_ROOT");
    println!("cargo:rerun-if-changed=build.rs");
}
