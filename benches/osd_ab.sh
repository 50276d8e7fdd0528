#!/usr/bin/env bash
# Two kalmar-osd builds side by side on one cluster: IOPS, OSD CPU and
# allocations per size-3 client write.
#
#   benches/osd_ab.sh OLD_KALMAR_OSD NEW_KALMAR_OSD
#
# Starts a 3-OSD vstart cluster (filled device files), a size-3 pool and an
# image served by kalmar-nbd --image, prefills it, then runs rounds: in
# each, every OSD is restarted on one binary (same command line, same
# devices and data; one at a time, waiting for all PGs active+clean), a
# warm-up and then the measured fio job; the binaries alternate (old, new,
# old, new, ...). Prints each run and the medians with the ratio new/old.
# Both binaries are copied first, so a rebuild meanwhile changes nothing.
#
# The machine is shared: read the ratio, and run it again when it is
# close. Allocations per write do not depend on load; CPU does somewhat.
#
# Environment:
#   AB_ROUNDS    runs per binary (default 3)
#   AB_SECS      seconds of the measured job (default 15)
#   AB_WARMUP    seconds of the warm-up before it (default 3)
#   AB_JOB       section of fio-configs/nbd.fio (default randwrite-4k-qd32)
#   AB_SIZE      bytes of the image fio uses (default 1G)
#   AB_OSD_SIZE  each OSD's device file (default 4G)
#   AB_LATENCY   1: after each run, each OSD's mean latencies over it
#                (client write on the primary, replicated write, store
#                prepare, journal write, commit): where a write's time goes
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
for b in "$1" "$2"; do [ -x "$b" ] || { echo "osd_ab: $b is not an executable" >&2; exit 2; }; done
# shellcheck source=../scripts/env.sh
source scripts/env.sh
ROUNDS=${AB_ROUNDS:-3}
SECS=${AB_SECS:-15}
WARMUP=${AB_WARMUP:-3}
JOB=${AB_JOB:-randwrite-4k-qd32}
export FIO_SIZE=${AB_SIZE:-1G}
OSD_SIZE=${AB_OSD_SIZE:-4G}
# Bound on the PGs becoming active+clean after an OSD restart.
CLEAN_WAIT_S=120

WORK=$(mktemp -d /var/tmp/kalmar-ab.XXXXXX)
HELPER="$KALMAR_BIN_DIR/kalmar-bench-cluster"
CLI="$KALMAR_BIN_DIR/kalmar"
cp "$1" "$WORK/osd-old"
cp "$2" "$WORK/osd-new"
DIR="$WORK/cluster"
CONF="$DIR/kalmar.conf"
NBD_PID=
OSD_PIDS=()

cleanup() {
  [ -z "$NBD_PID" ] || kill "$NBD_PID" 2>/dev/null || true
  for p in "${OSD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "$HELPER" down --dir "$DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "osd_ab: $*" >&2; }

for i in 0 1 2; do
  mkdir -p "$DIR/osd.$i"
  truncate -s "$OSD_SIZE" "$DIR/osd.$i/device"
  dd if=/dev/zero of="$DIR/osd.$i/device" bs=1M oflag=direct conv=notrunc status=none \
    count=$(( $(stat -c %s "$DIR/osd.$i/device") / 1048576 ))
done
"$HELPER" up --dir "$DIR" --osds 3 --osd-size "$OSD_SIZE" >&2
for i in 0 1 2; do OSD_PIDS[i]=$(cat "$DIR/osd.$i.pid"); done
"$HELPER" pool --conf "$CONF" --pool ab --size 3 --pg-num 32 >&2
"$HELPER" image --conf "$CONF" --image ab/vol --size "$FIO_SIZE" >&2
"$KALMAR_BIN_DIR/kalmar-nbd" --image ab/vol --conf "$CONF" --socket "$WORK/nbd.sock" \
  --log-file "$WORK/nbd.log" >"$WORK/nbd.ready" &
NBD_PID=$!
for _ in $(seq 600); do [ -s "$WORK/nbd.ready" ] && break; sleep 0.1; done
[ -s "$WORK/nbd.ready" ] || { log "kalmar-nbd did not start"; cat "$WORK/nbd.log" >&2; exit 1; }
export NBD_URI="nbd+unix:///?socket=$WORK/nbd.sock"
log "prefilling $FIO_SIZE"
FIO_RUNTIME=1 FIO_RAMP=0 fio --section=prefill fio-configs/nbd.fio >/dev/null

all_clean() {
  "$CLI" -c "$CONF" pg stat --format json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
by = s.get("num_pg_by_state", [])
total = s.get("num_pgs", 0)
clean = sum(x["num"] for x in by if set(x["name"].split("+")) == {"active", "clean"})
sys.exit(0 if total > 0 and clean == total else 1)'
}

# Restarts every OSD on binary $1 with its own command line.
use_binary() {
  local bin=$1 i pid args restart_t0=$SECONDS
  for i in 0 1 2; do
    pid=${OSD_PIDS[i]}
    mapfile -d '' args <"/proc/$pid/cmdline"
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "osd.$i did not stop"; exit 1; }
    setsid "$bin" "${args[@]:1}" >>"$WORK/osd.$i.out" 2>&1 &
    OSD_PIDS[i]=$!
    # The mon learns PG states from the OSDs' reports (about once a
    # second): let the restart show, then ask for two clean answers.
    sleep 3
    local t0=$SECONDS ok=0
    while (( ok < 2 )); do
      (( SECONDS - t0 < CLEAN_WAIT_S )) || { log "PGs not clean $CLEAN_WAIT_S s after restarting osd.$i"; exit 1; }
      if all_clean; then ok=$((ok + 1)); else ok=0; fi
      sleep 1
    done
  done
  # What the restarts cost: the new processes' CPU from their start until
  # every PG was clean again (mount, loading PGs, peering with each other).
  log "restarts on $(basename "$bin"): $(awk -v t="$(cpu_ticks)" -v hz="$HZ" 'BEGIN { printf "%.1f", t / hz }') CPU-s of the new OSDs, $((SECONDS - restart_t0)) s"
}

cpu_ticks() { # summed utime+stime of the OSDs
  local t=0 p
  for p in "${OSD_PIDS[@]}"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done
  echo $t
}

ASOKS=()
for i in 0 1 2; do ASOKS+=(--asok "$DIR/osd.$i.asok"); done
HZ=$(getconf CLK_TCK)
printf '%-5s %-4s %9s %12s %12s\n' round bin IOPS "CPU us/IO" "allocs/IO" | tee "$WORK/runs"
for r in $(seq "$ROUNDS"); do
  for which in old new; do
    use_binary "$WORK/osd-$which"
    FIO_RUNTIME=$WARMUP FIO_RAMP=0 fio --section="$JOB" fio-configs/nbd.fio >/dev/null
    python3 benches/daemon_stats.py snapshot "${ASOKS[@]}" >"$WORK/before.json"
    c0=$(cpu_ticks)
    FIO_RUNTIME=$SECS FIO_RAMP=0 fio --section="$JOB" --output-format=json \
      --output="$WORK/fio.json" fio-configs/nbd.fio
    c1=$(cpu_ticks)
    allocs=$(python3 benches/daemon_stats.py delta "$WORK/before.json" "${ASOKS[@]}" | cut -d' ' -f1)
    if [ "${AB_LATENCY:-0}" = 1 ]; then
      python3 benches/daemon_stats.py latency "$WORK/before.json" "${ASOKS[@]}" | sed 's/^/  /' >&2
    fi
    python3 - "$WORK/fio.json" $((c1 - c0)) "$HZ" "$allocs" "$r" "$which" <<'EOF' | tee -a "$WORK/runs"
import json, sys
fio, ticks, hz, allocs, r, which = sys.argv[1:]
j = json.load(open(fio))["jobs"][0]
ios = j["write"]["total_ios"] + j["read"]["total_ios"]
iops = j["write"]["iops"] + j["read"]["iops"]
cpu = int(ticks) / int(hz) * 1e6 / ios
a = int(allocs) / ios if allocs != "-" else float("nan")
print(f"{r:<5} {which:<4} {iops:9.0f} {cpu:12.1f} {a:12.1f}")
EOF
  done
done
python3 - "$WORK/runs" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
med = {w: [statistics.median(float(r[i]) for r in rows if r[1] == w) for i in (2, 3, 4)]
       for w in ("old", "new")}
print(f"{'median':<10} {med['old'][0]:9.0f} {med['old'][1]:12.1f} {med['old'][2]:12.1f}   old")
print(f"{'':<10} {med['new'][0]:9.0f} {med['new'][1]:12.1f} {med['new'][2]:12.1f}   new")
print(f"{'new/old':<10} {med['new'][0]/med['old'][0]:9.3f} {med['new'][1]/med['old'][1]:12.3f} "
      f"{med['new'][2]/med['old'][2]:12.3f}")
EOF
