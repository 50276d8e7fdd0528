#!/usr/bin/env bash
# The main job, one command: installs what is missing, builds, puts loop
# devices over filled files (plain files when loop devices are not
# available), runs fio on the raw device (plain and durable), on the local
# ObjectStore through kalmar-nbd, and on a vstart cluster when the cluster
# image export exists, prints one table with every result's ratio to the
# raw device measured in this run, writes the results as JSON, and cleans
# up everything it started.
#
# Settings (environment):
#   BENCH_DEVICE_SIZE  size of each backing device (default 4G)
#   BENCH_SIZE         bytes fio uses on each target (default 2G: the store
#                      needs room for overwrites until its next checkpoint)
#   BENCH_RUNTIME      seconds per fio job (default 20); BENCH_RAMP (default 2)
#   BENCH_RESULTS_DIR  where the JSON goes (default ~/.cache/kalmar-bench)
#   BENCH_WORK_DIR     parent of the scratch directory (default /var/tmp)
#   BENCH_TARGETS      space-separated subset of: raw raw-durable
#                      objectstore store (default: all of them).
#                      objectstore: the store alone, no network
#                      (kalmar-objectstore-bench); store: the same store
#                      through kalmar-nbd and fio's nbd engine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DEVICE_SIZE=${BENCH_DEVICE_SIZE:-4G}
FIO_SIZE=${BENCH_SIZE:-2G}
RUNTIME=${BENCH_RUNTIME:-20}
RAMP=${BENCH_RAMP:-2}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$HOME/.cache/kalmar-bench}
TARGETS=${BENCH_TARGETS:-raw raw-durable objectstore store}
JOBS="seqwrite-1m randwrite-4k-qd1 randwrite-4k-qd32 randread-4k-qd1 randread-4k-qd32 seqread-1m"

log() { echo "bench: $*" >&2; }

scripts/setup.sh
. scripts/env.sh
log "building kalmar-nbd (release)"
cargo build --release -p kalmar-nbd >&2
NBD_BIN="$KALMAR_BIN_DIR/kalmar-nbd"

WORK=$(mktemp -d "${BENCH_WORK_DIR:-/var/tmp}/kalmar-bench.XXXXXX")
PIDS=()
LOOPS=()
FAILED=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for dev in "${LOOPS[@]}"; do losetup -d "$dev" 2>/dev/null || log "could not detach $dev"; done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

# A device over a sparse file, filled so that block allocation stays out of
# the measurement; a loop device when the kernel gives one.
# Sets DEV (not a subshell, so LOOPS keeps what cleanup must detach).
make_device() {
  local file="$WORK/$1.img"
  truncate -s "$DEVICE_SIZE" "$file"
  log "filling $file ($DEVICE_SIZE)"
  local mib=$(( $(stat -c %s "$file") / 1048576 ))
  dd if=/dev/zero of="$file" bs=1M count="$mib" oflag=direct conv=notrunc status=none
  if DEV=$(losetup --find --show --direct-io=on "$file" 2>/dev/null); then
    LOOPS+=("$DEV")
    log "$1: loop device $DEV over $file"
  else
    log "no loop device available: using the plain file $file"
    DEV=$file
  fi
}

cpu_seconds() { # utime + stime of a process, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

run_fio() { # target config job [pid whose CPU to charge]
  local target=$1 config=$2 job=$3 pid=${4:-} before after
  mkdir -p "$WORK/results/$target"
  [ -n "$pid" ] && before=$(cpu_seconds "$pid")
  if ! fio --section="$job" --output-format=json --output="$WORK/results/$target/$job.json" "$config" >"$WORK/fio.err" 2>&1; then
    log "$target $job FAILED: $(grep -m3 -i error "$WORK/fio.err" | tr '\n' ' ')"
    FAILED+=("$target/$job")
  fi
  if [ -n "$pid" ]; then
    after=$(cpu_seconds "$pid")
    echo "$target $job $(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }')" >>"$WORK/results/cpu.tsv"
  fi
  log "$target $job done"
}

export FIO_SIZE FIO_RUNTIME=$RUNTIME FIO_RAMP=$RAMP
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

if has_target raw || has_target raw-durable; then
  make_device raw
  export RAW_DEV=$DEV
  for target in raw raw-durable; do
    has_target "$target" || continue
    export RAW_SYNC=$([ "$target" = raw-durable ] && echo 1 || echo 0)
    for job in $JOBS; do run_fio "$target" fio-configs/raw.fio "$job"; done
  done
fi

STORE_DEV=
if has_target objectstore || has_target store; then
  make_device store
  STORE_DEV=$DEV
fi

if has_target objectstore; then
  if cargo build --release -p kalmar-benches --bin kalmar-objectstore-bench >&2; then
    log "objectstore: fio-like jobs straight on the store"
    "$KALMAR_BIN_DIR/kalmar-objectstore-bench" --device "$STORE_DEV" --db "$WORK/objectstore.db" --mkfs \
      --size "$FIO_SIZE" --runtime "$RUNTIME" --ramp "$RAMP" --jobs "$JOBS" \
      --out-dir "$WORK/results/objectstore" --cpu-tsv "$WORK/results/cpu.tsv" --target objectstore >&2 ||
      FAILED+=("objectstore")
  else
    log "objectstore rows skipped: kalmar-objectstore-bench is not in this checkout"
  fi
fi

if has_target store; then
  "$NBD_BIN" --store "$STORE_DEV" --db "$WORK/store.db" --size "$FIO_SIZE" --mkfs \
    --socket "$WORK/store.sock" --log-file "$WORK/store.log" >"$WORK/store.ready" &
  PIDS+=($!)
  NBD_PID=$!
  for _ in $(seq 600); do [ -s "$WORK/store.ready" ] && break; kill -0 "$NBD_PID" || break; sleep 0.1; done
  [ -s "$WORK/store.ready" ] || { log "kalmar-nbd did not start; see $WORK/store.log"; cat "$WORK/store.log" >&2; exit 1; }
  export NBD_URI="nbd+unix:///?socket=$WORK/store.sock"
  run_fio store fio-configs/nbd.fio prefill "$NBD_PID"
  for job in $JOBS; do run_fio store fio-configs/nbd.fio "$job" "$NBD_PID"; done
fi

# The cluster rows (pool size 1 and 3 on a 3-OSD vstart cluster through
# kalmar-nbd --image) join this script with the image layer.
log "cluster rows skipped: kalmar-nbd --image needs the cluster client library, not in this build yet"


mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$RESULTS_DIR/bench-$STAMP.json"
META=$(printf '{"date":"%s","host":"%s","cpus":%s,"commit":"%s","device_size":"%s","fio_size":"%s","runtime_s":%s,"ramp_s":%s,"loadavg":"%s"}' \
  "$STAMP" "$(hostname)" "$(nproc)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$DEVICE_SIZE" "$FIO_SIZE" "$RUNTIME" "$RAMP" "$(cut -d' ' -f1-3 /proc/loadavg)")
echo
python3 benches/bench_report.py "$WORK/results" --json-out "$OUT" --meta "$META"
echo
log "results: $OUT"
if ((${#FAILED[@]})); then
  log "failed jobs: ${FAILED[*]}"
  exit 1
fi
