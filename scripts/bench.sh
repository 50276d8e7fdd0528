#!/usr/bin/env bash
# The main job, one command: installs what is missing, builds (the test
# command's build: nothing more to compile after scripts/test.sh), puts
# loop devices over filled files (plain files when loop devices are not
# available), runs fio on the raw device (plain and durable), on the local
# ObjectStore through kalmar-nbd, and on a vstart cluster, prints one table
# with every result's ratio to the raw device measured in this run, writes
# the results as JSON and as an SVG chart beside it, and cleans up
# everything it started.
#
# By default it answers in a few minutes: raw, raw-durable, store and
# cluster-size3, jobs randwrite-4k-qd1 randwrite-4k-qd32 seqwrite-1m,
# 10 s each. BENCH_FULL=1 runs the whole matrix (every target, every job,
# 20 s each; about 25 minutes on 2 cores). One progress line per job.
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
#   BENCH_FULL         1: every target and job below, 20 s per job
#   BENCH_DEVICE_SIZE  size of each backing device (default 4G)
#   BENCH_SIZE         bytes fio uses on each target (default 2G: the store
#                      needs room for overwrites until its next checkpoint)
#   BENCH_RUNTIME      seconds per fio job (default 10, 20 with BENCH_FULL);
#                      BENCH_RAMP (default 2): seconds of a warm-up run
#                      before each measured run, not counted
#   BENCH_RESULTS_DIR  where the JSON and SVG go (default ~/.cache/kalmar-bench)
#   BENCH_WORK_DIR     parent of the scratch directory (default /var/tmp)
#   BENCH_TARGETS      space-separated subset of: raw raw-durable
#                      objectstore store cluster-size1 cluster-size3
#                      (default: raw raw-durable store cluster-size3; all
#                      of them with BENCH_FULL).
#                      objectstore: the store alone, no network
#                      (kalmar-objectstore-bench); store: the same store
#                      through kalmar-nbd and fio's nbd engine;
#                      cluster-sizeN: a 3-OSD vstart cluster, an image in
#                      a pool of size N, through kalmar-nbd --image.
#   BENCH_JOBS         space-separated subset of the fio jobs: seqwrite-1m
#                      randwrite-4k-qd1 randwrite-4k-qd32 randread-4k-qd1
#                      randread-4k-qd32 seqread-1m (default: the three
#                      write jobs; all six with BENCH_FULL)
#   BENCH_OSD_SIZE     size of each OSD's (filled) device file (default 4G,
#                      6G with BENCH_FULL). Each phase's files are removed
#                      before the next one's are made: the disk needs room
#                      for 3 x BENCH_OSD_SIZE at most.
#   BENCH_CLUSTER_SET  space-separated KEY=VALUE conf settings for the
#                      cluster (e.g. osd_op_num_shards=1)
#   KALMAR_BIN_DIR     the daemons to run (default: this build); point it at
#                      a saved build to measure before and after a change
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE_SIZE=${BENCH_DEVICE_SIZE:-4G}
FIO_SIZE=${BENCH_SIZE:-2G}
if [ "${BENCH_FULL:-0}" = 1 ]; then
  RUNTIME=${BENCH_RUNTIME:-20}
  TARGETS=${BENCH_TARGETS:-raw raw-durable objectstore store cluster-size1 cluster-size3}
  JOBS=${BENCH_JOBS:-seqwrite-1m randwrite-4k-qd1 randwrite-4k-qd32 randread-4k-qd1 randread-4k-qd32 seqread-1m}
  OSD_SIZE=${BENCH_OSD_SIZE:-6G}
else
  RUNTIME=${BENCH_RUNTIME:-10}
  TARGETS=${BENCH_TARGETS:-raw raw-durable store cluster-size3}
  JOBS=${BENCH_JOBS:-randwrite-4k-qd1 randwrite-4k-qd32 seqwrite-1m}
  # One pool (size 3) holds one image of BENCH_SIZE on every OSD.
  OSD_SIZE=${BENCH_OSD_SIZE:-4G}
fi
RAMP=${BENCH_RAMP:-2}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$HOME/.cache/kalmar-bench}

STARTED=$SECONDS
log() { echo "bench: $*" >&2; }

scripts/setup.sh
. scripts/env.sh
# The test command's own build (same profile, target dir and package set,
# hence the same feature resolution): after scripts/test.sh this compiles
# nothing. It holds the helpers too (kalmar-bench-cluster,
# kalmar-bench-chart, kalmar-objectstore-bench).
log "building the workspace's binaries (release; nothing to do after scripts/test.sh)"
cargo build --release --workspace --bins >&2
NBD_BIN="$KALMAR_BIN_DIR/kalmar-nbd"
TOOLS="$CARGO_TARGET_DIR/release"

# Progress: one line per finished job, numbered against the planned total.
read -ra target_list <<<"$TARGETS"
read -ra job_list <<<"$JOBS"
TOTAL=$((${#target_list[@]} * ${#job_list[@]}))
DONE=0
progress() { # target job [fio json]
  DONE=$((DONE + 1))
  local t=$((SECONDS - STARTED)) summary=""
  [ -n "${3:-}" ] && summary=$(python3 benches/bench_report.py --one "$3" 2>/dev/null || echo "no result")
  printf 'bench: [%d/%d %dm%02ds] %s %s%s\n' "$DONE" "$TOTAL" $((t / 60)) $((t % 60)) "$1" "$2" \
    "${summary:+: $summary}" >&2
}
log "plan: $TOTAL jobs (targets: $TARGETS; jobs: $JOBS; ${RUNTIME}s + ${RAMP}s ramp each)"

WORK=$(mktemp -d "${BENCH_WORK_DIR:-/var/tmp}/kalmar-bench.XXXXXX")
PIDS=()
LOOPS=()
FAILED=()
CLUSTER_DIR=
HELPER="$TOOLS/kalmar-bench-cluster"
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

# Gives back a device's space once its rows are measured (the machine's
# disk holds one phase's files at a time, not all of them).
release_device() { # name device
  local keep=() d
  if [ "$2" != "$WORK/$1.img" ]; then
    losetup -d "$2" 2>/dev/null || log "could not detach $2"
    for d in "${LOOPS[@]}"; do [ "$d" = "$2" ] || keep+=("$d"); done
    LOOPS=("${keep[@]}")
  fi
  rm -rf "$WORK/$1.img" "$WORK/$1.db"
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
  # The ramp runs as its own fio run before the measured one (which has no
  # ramp): fio leaves the ramp's I/Os out of its counts, so daemon CPU,
  # allocations and switches sampled around one run with a ramp would be
  # charged to fewer I/Os than caused them (2 s of 12 overstated them ~20 %).
  if [ "$job" != prefill ] && [ "$RAMP" != 0 ]; then
    FIO_RUNTIME=$RAMP FIO_RAMP=0 fio --section="$job" --output-format=json \
      --output="$WORK/fio.warmup.json" "$config" >"$WORK/fio.err" 2>&1 || true
  fi
  if [ -n "$pid" ]; then
    for p in $pid; do stats+=(--pid "$p"); done
    for p in $asoks; do stats+=(--asok "$p"); done
    python3 benches/daemon_stats.py snapshot "${stats[@]}" >"$WORK/daemon-stats.before"
    # shellcheck disable=SC2086 # a list of pids
    before=$(cpu_seconds $pid)
  fi
  if ! FIO_RAMP=0 fio --section="$job" --output-format=json --output="$WORK/results/$target/$job.json" "$config" >"$WORK/fio.err" 2>&1; then
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
  # The prefill job is not a measurement: no progress line.
  [ "$job" = prefill ] || progress "$target" "$job" "$WORK/results/$target/$job.json"
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
    RAW_SYNC=0
    [ "$target" = raw-durable ] && RAW_SYNC=1
    export RAW_SYNC
    for job in $JOBS; do run_fio "$target" fio-configs/raw.fio "$job"; done
  done
  release_device raw "$RAW_DEV"
fi

STORE_DEV=
if has_target objectstore || has_target store; then
  make_device store
  STORE_DEV=$DEV
fi

if has_target objectstore; then
  if [ -x "$KALMAR_BIN_DIR/kalmar-objectstore-bench" ]; then
    log "objectstore: fio-like jobs straight on the store"
    "$KALMAR_BIN_DIR/kalmar-objectstore-bench" --device "$STORE_DEV" --db "$WORK/objectstore.db" --mkfs \
      --size "$FIO_SIZE" --runtime "$RUNTIME" --ramp "$RAMP" --jobs "$JOBS" \
      --out-dir "$WORK/results/objectstore" --cpu-tsv "$WORK/results/cpu.tsv" --target objectstore >&2 ||
      FAILED+=("objectstore")
    for job in $JOBS; do progress objectstore "$job" "$WORK/results/objectstore/$job.json"; done
  else
    log "objectstore rows skipped: no kalmar-objectstore-bench in $KALMAR_BIN_DIR"
  fi
fi

if has_target store; then
  start_nbd store --store "$STORE_DEV" --db "$WORK/store.db" --size "$FIO_SIZE" --mkfs
  run_fio store fio-configs/nbd.fio prefill "$NBD_PID" "$WORK/store.asok"
  for job in $JOBS; do run_fio store fio-configs/nbd.fio "$job" "$NBD_PID" "$WORK/store.asok"; done
  stop_nbd
fi
if [ -n "$STORE_DEV" ]; then
  release_device store "$STORE_DEV"
  rm -rf "$WORK/objectstore.db"
fi

# The cluster: 3 OSDs on filled device files (vstart keeps a device that
# is already large enough), a pool of size 1 then one of size 3, an image
# of FIO_SIZE in each, served by kalmar-nbd --image. CPU per I/O is the
# three OSDs' CPU.
if has_target cluster-size1 || has_target cluster-size3; then
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
  OSD_ASOKS="$(echo "$CLUSTER_DIR"/osd.*.asok)"
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
# A refusal (no raw target in the run) is one line, not a backtrace.
if CHART=$(RUST_BACKTRACE=0 "$TOOLS/kalmar-bench-chart" "$OUT"); then
  log "chart: $CHART"
else
  log "no chart drawn (see above)"
fi
log "wall time: $(( (SECONDS - STARTED) / 60 ))m$(( (SECONDS - STARTED) % 60 ))s"
if ((${#FAILED[@]})); then
  log "failed jobs: ${FAILED[*]}"
  exit 1
fi
