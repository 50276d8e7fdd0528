#!/usr/bin/env bash
# The main job, one command: installs what is missing, builds, puts loop
# devices over filled files (plain files when loop devices are not
# available), runs fio on the raw device (plain and durable), on the local
# ObjectStore through kalmar-nbd, and on a vstart cluster when the cluster
# image export exists, prints one table with every result's ratio to the
# raw device measured in this run, writes the results as JSON, and cleans
# up everything it started.
#
# Per Kalmar row, besides fio's figures: the daemons' CPU per I/O, their
# heap allocations per I/O (the `allocator` perf logger of kalmar-osd and
# kalmar-nbd, read from their admin sockets before and after each job) and
# their threads' context switches per I/O (voluntary + involuntary, from
# /proc/PID/task/*/status: the proxy for thread hand-offs per op). The
# daemons are kalmar-nbd for `store`, the three OSDs for `cluster-sizeN`
# (as for CPU: the NBD client is not charged).
#
# Settings (environment):
#   BENCH_DEVICE_SIZE  size of each backing device (default 4G)
#   BENCH_SIZE         bytes fio uses on each target (default 2G: the store
#                      needs room for overwrites until its next checkpoint)
#   BENCH_RUNTIME      seconds per fio job (default 20); BENCH_RAMP (default 2)
#   BENCH_RESULTS_DIR  where the JSON goes (default ~/.cache/kalmar-bench)
#   BENCH_WORK_DIR     parent of the scratch directory (default /var/tmp)
#   BENCH_TARGETS      space-separated subset of: raw raw-durable
#                      objectstore store cluster-size1 cluster-size3
#                      (default: all of them).
#                      objectstore: the store alone, no network
#                      (kalmar-objectstore-bench); store: the same store
#                      through kalmar-nbd and fio's nbd engine;
#                      cluster-sizeN: a 3-OSD vstart cluster, an image in
#                      a pool of size N, through kalmar-nbd --image.
#   BENCH_JOBS         space-separated subset of the fio jobs (default: all
#                      six: seqwrite-1m randwrite-4k-qd1 randwrite-4k-qd32
#                      randread-4k-qd1 randread-4k-qd32 seqread-1m)
#   BENCH_OSD_SIZE     size of each OSD's (filled) device file (default 6G)
#   BENCH_CLUSTER_SET  space-separated KEY=VALUE conf settings for the
#                      cluster (e.g. osd_op_num_shards=1)
#   KALMAR_BIN_DIR     the daemons to run (default: this build); point it at
#                      a saved build to measure before and after a change
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DEVICE_SIZE=${BENCH_DEVICE_SIZE:-4G}
FIO_SIZE=${BENCH_SIZE:-2G}
RUNTIME=${BENCH_RUNTIME:-20}
RAMP=${BENCH_RAMP:-2}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$HOME/.cache/kalmar-bench}
TARGETS=${BENCH_TARGETS:-raw raw-durable objectstore store cluster-size1 cluster-size3}
OSD_SIZE=${BENCH_OSD_SIZE:-6G}
JOBS=${BENCH_JOBS:-seqwrite-1m randwrite-4k-qd1 randwrite-4k-qd32 randread-4k-qd1 randread-4k-qd32 seqread-1m}

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
CLUSTER_DIR=
HELPER="$CARGO_TARGET_DIR/release/examples/bench_cluster"
cleanup() {
  local rc=$?
  if [ -n "$CLUSTER_DIR" ]; then
    "$HELPER" down --dir "$CLUSTER_DIR" >/dev/null 2>&1 || log "vstop of $CLUSTER_DIR failed"
  fi
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

cpu_seconds() { # utime + stime of processes, in seconds, summed
  local pid total=0
  for pid in "$@"; do
    total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print t + ($12 + $13) / hz }' "/proc/$pid/stat")
  done
  echo "$total"
}

run_fio() { # target config job ["pids whose CPU to charge"] ["their admin sockets"]
  local target=$1 config=$2 job=$3 pid=${4:-} asoks=${5:-} before after p stats=()
  mkdir -p "$WORK/results/$target"
  if [ -n "$pid" ]; then
    for p in $pid; do stats+=(--pid "$p"); done
    for p in $asoks; do stats+=(--asok "$p"); done
    python3 benches/daemon_stats.py snapshot "${stats[@]}" >"$WORK/daemon-stats.before"
    # shellcheck disable=SC2086 # a list of pids
    before=$(cpu_seconds $pid)
  fi
  if ! fio --section="$job" --output-format=json --output="$WORK/results/$target/$job.json" "$config" >"$WORK/fio.err" 2>&1; then
    log "$target $job FAILED: $(grep -m3 -i error "$WORK/fio.err" | tr '\n' ' ')"
    FAILED+=("$target/$job")
  fi
  if [ -n "$pid" ]; then
    # shellcheck disable=SC2086
    after=$(cpu_seconds $pid)
    echo "$target $job $(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }')" >>"$WORK/results/cpu.tsv"
    # allocations and context switches of the daemons during the job
    echo "$target $job $(python3 benches/daemon_stats.py delta "$WORK/daemon-stats.before" "${stats[@]}")" \
      >>"$WORK/results/daemon.tsv"
  fi
  log "$target $job done"
}

start_nbd() { # name args...: kalmar-nbd in the background, waits until it listens
  local name=$1
  shift
  "$NBD_BIN" "$@" --socket "$WORK/$name.sock" --log-file "$WORK/$name.log" \
    --admin-socket "$WORK/$name.asok" >"$WORK/$name.ready" &
  PIDS+=($!)
  NBD_PID=$!
  for _ in $(seq 600); do [ -s "$WORK/$name.ready" ] && break; kill -0 "$NBD_PID" || break; sleep 0.1; done
  [ -s "$WORK/$name.ready" ] || { log "kalmar-nbd ($name) did not start"; cat "$WORK/$name.log" >&2; exit 1; }
  export NBD_URI="nbd+unix:///?socket=$WORK/$name.sock"
}

stop_nbd() {
  kill -TERM "$NBD_PID" 2>/dev/null || true
  wait "$NBD_PID" 2>/dev/null || true
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
  start_nbd store --store "$STORE_DEV" --db "$WORK/store.db" --size "$FIO_SIZE" --mkfs
  run_fio store fio-configs/nbd.fio prefill "$NBD_PID" "$WORK/store.asok"
  for job in $JOBS; do run_fio store fio-configs/nbd.fio "$job" "$NBD_PID" "$WORK/store.asok"; done
  stop_nbd
fi

# The cluster: 3 OSDs on filled device files (vstart keeps a device that
# is already large enough), a pool of size 1 then one of size 3, an image
# of FIO_SIZE in each, served by kalmar-nbd --image. CPU per I/O is the
# three OSDs' CPU.
if has_target cluster-size1 || has_target cluster-size3; then
  cargo build --release -p kalmar-mon -p kalmar-osd --bins >&2
  cargo build --release -p kalmar-nbd --example bench_cluster >&2
  CLUSTER_DIR="$WORK/cluster"
  for i in 0 1 2; do
    mkdir -p "$CLUSTER_DIR/osd.$i"
    truncate -s "$OSD_SIZE" "$CLUSTER_DIR/osd.$i/device"
    log "filling osd.$i's device ($OSD_SIZE)"
    dd if=/dev/zero of="$CLUSTER_DIR/osd.$i/device" bs=1M oflag=direct conv=notrunc status=none \
      count=$(( $(stat -c %s "$CLUSTER_DIR/osd.$i/device") / 1048576 ))
  done
  SETS=()
  for kv in ${BENCH_CLUSTER_SET:-}; do SETS+=(--set "$kv"); done
  "$HELPER" up --dir "$CLUSTER_DIR" --osds 3 --osd-size "$OSD_SIZE" "${SETS[@]}" >&2
  CONF="$CLUSTER_DIR/kalmar.conf"
  OSD_PIDS="$(cat "$CLUSTER_DIR"/osd.*.pid | tr '\n' ' ')"
  OSD_ASOKS="$(ls "$CLUSTER_DIR"/osd.*.asok | tr '\n' ' ')"
  for size in 1 3; do
    target="cluster-size$size"
    has_target "$target" || continue
    "$HELPER" pool --conf "$CONF" --pool "rbd$size" --size "$size" --pg-num 32 >&2
    "$HELPER" image --conf "$CONF" --image "rbd$size/vol" --size "$FIO_SIZE" >&2
    start_nbd "$target" --image "rbd$size/vol" --conf "$CONF"
    run_fio "$target" fio-configs/nbd.fio prefill "$OSD_PIDS" "$OSD_ASOKS"
    for job in $JOBS; do run_fio "$target" fio-configs/nbd.fio "$job" "$OSD_PIDS" "$OSD_ASOKS"; done
    stop_nbd
    # Frees the OSDs' space for the next pool.
    "$HELPER" rm-image --conf "$CONF" --image "rbd$size/vol" >&2
  done
fi

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
