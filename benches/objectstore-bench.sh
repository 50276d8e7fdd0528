#!/usr/bin/env bash
# The ObjectStore benchmark on its own: the raw device (fio io_uring, plain
# --direct=1 and durable --direct=1 --sync=1) and the ObjectStore
# (kalmar-objectstore-bench, in process, no network) on two equal loop
# devices over filled files, side by side in the same run, printed as one
# table with ratios (benches/bench_report.py). scripts/bench.sh runs the
# same rows (target "objectstore") next to everything else.
#
# Settings (environment):
#   BENCH_DEVICE_SIZE  size of each backing file (default 4G)
#   BENCH_SIZE         bytes the jobs use on each device (default 2G)
#   BENCH_RUNTIME      measured seconds per job (default 20); BENCH_RAMP (2)
#   BENCH_JOBS         jobs (default: seqwrite-1m randwrite-4k-qd1 randwrite-4k-qd32)
#   BENCH_REPEAT       how many times to run the whole comparison (default 1)
#   BENCH_STORE_ARGS   extra kalmar-objectstore-bench flags (store settings,
#                      e.g. --pipeline-depth 4)
#   BENCH_WORK_DIR     parent of the scratch directory (default /var/tmp)
#   BENCH_RESULTS_DIR  where results and the store's perf dumps are kept
#                      (default ~/.cache/kalmar-bench)
#   BENCH_WAIT_QUIET   seconds to wait, before each job, for other fio or
#                      Kalmar benchmark processes on this host to finish
#                      (default 1800; 0 does not wait). A shared disk makes
#                      side-by-side figures meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE_SIZE=${BENCH_DEVICE_SIZE:-4G}
FIO_SIZE=${BENCH_SIZE:-2G}
RUNTIME=${BENCH_RUNTIME:-20}
RAMP=${BENCH_RAMP:-2}
JOBS=${BENCH_JOBS:-seqwrite-1m randwrite-4k-qd1 randwrite-4k-qd32}
REPEAT=${BENCH_REPEAT:-1}
OUT="${BENCH_RESULTS_DIR:-$HOME/.cache/kalmar-bench}/objectstore-$(date -u +%Y%m%dT%H%M%SZ)"

WAIT_QUIET=${BENCH_WAIT_QUIET:-1800}
STORE_ARGS=${BENCH_STORE_ARGS:-}

log() { echo "objectstore-bench: $*" >&2; }

# Waits while someone else's fio, kalmar-nbd, kalmar-osd or store
# benchmark runs (ours run one at a time, so any found is not ours).
wait_quiet() {
  local waited=0
  while [ "$waited" -lt "$WAIT_QUIET" ] && pgrep -f '^(fio|[^ ]*/kalmar-(nbd|osd|objectstore-bench)) ' >/dev/null; do
    [ $((waited % 60)) -eq 0 ] && log "waiting for other benchmarks to finish ($(pgrep -fa '^(fio|[^ ]*/kalmar-(nbd|osd|objectstore-bench)) ' | head -1 | cut -c1-80))"
    sleep 5
    waited=$((waited + 5))
  done
}

scripts/setup.sh
. scripts/env.sh
cargo build --release -p kalmar-benches --bin kalmar-objectstore-bench >&2
BENCH_BIN="$KALMAR_BIN_DIR/kalmar-objectstore-bench"

WORK=$(mktemp -d "${BENCH_WORK_DIR:-/var/tmp}/kalmar-osbench.XXXXXX")
LOOPS=()
cleanup() {
  local rc=$?
  for dev in "${LOOPS[@]}"; do losetup -d "$dev" 2>/dev/null || log "could not detach $dev"; done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

# A loop device over a filled file (a plain file when no loop device can
# be had). Sets DEV.
make_device() {
  local file="$WORK/$1.img"
  truncate -s "$DEVICE_SIZE" "$file"
  log "filling $file ($DEVICE_SIZE)"
  dd if=/dev/zero of="$file" bs=1M count=$(( $(stat -c %s "$file") / 1048576 )) oflag=direct conv=notrunc status=none
  if DEV=$(losetup --find --show --direct-io=on "$file" 2>/dev/null); then
    LOOPS+=("$DEV")
  else
    log "no loop device available: using the plain file $file"
    DEV=$file
  fi
  log "$1: $DEV"
}

make_device raw
RAW_DEV=$DEV
make_device objectstore
STORE_DEV=$DEV
export RAW_DEV FIO_SIZE FIO_RUNTIME=$RUNTIME FIO_RAMP=$RAMP

for rep in $(seq "$REPEAT"); do
  RES="$WORK/run$rep"
  mkdir -p "$RES/raw" "$RES/raw-durable"
  # Job by job, the three targets back to back: what is compared runs
  # minutes apart at most, whatever else the host does.
  for job in $JOBS; do
    for target in raw raw-durable; do
      wait_quiet
      export RAW_SYNC=$([ "$target" = raw-durable ] && echo 1 || echo 0)
      fio --section="$job" --output-format=json --output="$RES/$target/$job.json" fio-configs/raw.fio
      log "run $rep: $target $job done"
    done
    wait_quiet
    "$BENCH_BIN" --device "$STORE_DEV" --db "$WORK/objectstore.db" --mkfs --size "$FIO_SIZE" \
      --runtime "$RUNTIME" --ramp "$RAMP" --jobs "$job" --out-dir "$RES/objectstore" \
      --cpu-tsv "$RES/cpu.tsv" --target objectstore $STORE_ARGS \
      2> >(tee -a "$RES/objectstore.log" | grep -v ' perf: ' >&2)
    rm -rf "$WORK/objectstore.db"
  done
  echo
  echo "run $rep of $REPEAT ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)):"
  python3 benches/bench_report.py "$RES" --json-out "$RES/report.json"
  mkdir -p "$OUT"
  cp -r "$RES" "$OUT/"
done
log "results and perf dumps: $OUT"
