#!/usr/bin/env bash
# The test command of the README and of CI: installs what is missing, builds
# the workspace once (release profile, the binaries users run) and runs every
# test. Multi-process tests find the daemons through KALMAR_BIN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo fmt --all -- --check
cargo build --release --workspace --bins
# Lints on every target, sharing the release build (RocksDB is built once).
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace -- --test-threads="${KALMAR_TEST_THREADS:-2}"
# Pure logic and wire crates again with debug assertions and overflow
# checks (the release run compiles them out); they do not need RocksDB.
cargo test --profile checked -p kalmar-peering -p kalmar-maps -p kalmar-common \
  -p kalmar-io -p kalmar-msgr -p kalmar-proto -- --test-threads="${KALMAR_TEST_THREADS:-2}"
# The whole-cluster simulator (the OSD, mon and store code under faults)
# with the same checks; it links the store, so this profile builds
# RocksDB once more (~11 minutes cold on 2 cores, cached after).
cargo test --profile checked -p kalmar-sim -- --test-threads="${KALMAR_TEST_THREADS:-2}"
# The store's whole suite and the OSD's unit tests with the same checks
# (both crates are built for the simulator already; ~1.5 minutes warm).
cargo test --profile checked -p kalmar-objectstore -- --test-threads="${KALMAR_TEST_THREADS:-2}"
cargo test --profile checked -p kalmar-osd --lib -- --test-threads="${KALMAR_TEST_THREADS:-2}"
