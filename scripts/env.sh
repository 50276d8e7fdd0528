# shellcheck shell=bash
# Sourced by the scripts: one target dir outside the clone so repeated runs
# (and CI on the same machine) reuse the RocksDB build, and the system
# python3 for pyo3 so the mgr links the libpython it will load.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kalmar-target}"
# Crates that find files through CARGO_MANIFEST_DIR rebuild when this
# changes (their build.rs), so a shared target dir never serves a binary
# that points into another checkout.
KALMAR_SOURCE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KALMAR_SOURCE_ROOT
export PYO3_PYTHON="${PYO3_PYTHON:-/usr/bin/python3}"
# shellcheck disable=SC1091 # the toolchain's own file
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# A preset KALMAR_BIN_DIR runs other binaries (e.g. a saved build, to
# benchmark before and after a change side by side).
export KALMAR_BIN_DIR="${KALMAR_BIN_DIR:-$CARGO_TARGET_DIR/release}"
