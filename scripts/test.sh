#!/usr/bin/env bash
# The test command of the README and of CI: installs what is missing, builds
# the workspace once (release profile, the binaries users run) and runs every
# test. Multi-process tests find the daemons through KALMAR_BIN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo build --release --workspace --bins
cargo test --release --workspace -- --test-threads="${KALMAR_TEST_THREADS:-2}"
