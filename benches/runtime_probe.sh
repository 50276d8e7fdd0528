#!/usr/bin/env bash
# Builds and runs benches/runtime_probe (issue 11: which runtime for the OSD
# shards), with the disk (4 KiB O_DIRECT+DSYNC writes to a filled file on
# /tmp) and without it, and removes the file afterwards. Results are
# printed; copy them into benches/RESULTS.md with the load average shown.
#
# Settings (environment):
#   PROBE_ROUNDS     runs of each variant per queue depth (default 5)
#   PROBE_SECONDS    seconds per run (default 5)
#   PROBE_QD         queue depths, comma-separated (default 1,32)
#   PROBE_VARIANTS   subset of tokio-ring,compio,tokio-uring (default all)
#   PROBE_FILE_MIB   size of the data file in MiB (default 1024)
#   PROBE_MODES      "disk no-disk" (default), or one of them
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

ROUNDS=${PROBE_ROUNDS:-5}
SECONDS_PER_RUN=${PROBE_SECONDS:-5}
QD=${PROBE_QD:-1,32}
VARIANTS=${PROBE_VARIANTS:-tokio-ring,compio,tokio-uring}
FILE_MIB=${PROBE_FILE_MIB:-1024}
MODES=${PROBE_MODES:-disk no-disk}

cargo build --release -p kalmar-benches --features runtime-probe --bin runtime_probe >&2
FILE=$(mktemp /tmp/kalmar-runtime-probe.XXXXXX)
trap 'rm -f "$FILE"' EXIT INT TERM

echo "runtime_probe: $(date -u +%FT%TZ), $(nproc) cpus, kernel $(uname -r), commit $(git rev-parse --short HEAD)"
for mode in $MODES; do
  flag=()
  [ "$mode" = no-disk ] && flag=(--no-disk)
  echo
  echo "== $mode"
  "$CARGO_TARGET_DIR/release/runtime_probe" --variants "$VARIANTS" --qd "$QD" --rounds "$ROUNDS" \
    --seconds "$SECONDS_PER_RUN" --file "$FILE" --file-size-mib "$FILE_MIB" "${flag[@]}"
done
