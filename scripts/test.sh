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
