#!/usr/bin/env bash
# `kalmar rados bench`-style object writes (4 KiB and 4 MiB objects, 16 in
# flight) against a 3-OSD vstart cluster, pools of size 1 and size 3, with
# the OSDs' CPU seconds per operation (from /proc/PID/stat), next to fio on
# the raw device with the same write size and queue depth, plain
# (--direct=1) and durable (--direct=1 --sync=1), all in one run. Prints a
# markdown section (the figures for benches/RESULTS.md) at the end.
#
# Settings (environment):
#   BENCH_SECONDS   seconds per measurement (default 20); 4 MiB runs also stop
#                   after BENCH_MAX_4M_OBJECTS (default 1000, 4 GiB) so they
#                   fit the devices
#   BENCH_OSD_SIZE  size of each OSD's device file, filled (default 6G)
#   BENCH_RAW_SIZE  size of the raw device file, filled (default 4G)
#   BENCH_WORK_DIR  parent of the scratch directory (default /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-20}
MAX_4M=${BENCH_MAX_4M_OBJECTS:-1000}
OSD_SIZE=${BENCH_OSD_SIZE:-6G}
RAW_SIZE=${BENCH_RAW_SIZE:-4G}
QD=16

log() { echo "rados-bench: $*" >&2; }

scripts/setup.sh
. scripts/env.sh
cargo build --release -p kalmar-cli -p kalmar-mon -p kalmar-osd --bins >&2
K="$KALMAR_BIN_DIR/kalmar"

WORK=$(mktemp -d "${BENCH_WORK_DIR:-/var/tmp}/kalmar-rados-bench.XXXXXX")
LOOP=
cleanup() {
  local rc=$?
  [ -d "$WORK/cluster" ] && "$K" vstop --dir "$WORK/cluster" >/dev/null 2>&1
  [ -n "$LOOP" ] && { losetup -d "$LOOP" 2>/dev/null || log "could not detach $LOOP"; }
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM
# shellcheck source=benches/bench_common.sh
. benches/bench_common.sh

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# --- raw device --------------------------------------------------------
log "filling the raw device file ($RAW_SIZE)"
fill "$WORK/raw.img" "$RAW_SIZE"
RAW_DEV="$WORK/raw.img"
if LOOP=$(losetup --find --show --direct-io=on "$WORK/raw.img" 2>/dev/null); then RAW_DEV=$LOOP; fi
for bs in 4k 4m; do
  for sync in 0 1; do
    name="raw-$([ $sync = 1 ] && echo durable || echo plain)"
    fio_raw "$RAW_DEV" "$RAW_SIZE" "$SECS" $bs $QD $sync "$WORK/fio-$name-$bs.json"
    python3 - "$WORK/fio-$name-$bs.json" "$name" "$bs" >>"$RESULTS" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print("\t".join([sys.argv[2], sys.argv[3], "%.1f" % j["iops"], "%.2f" % (j["bw"] / 1024.0),
                 "%.3f" % (j["lat_ns"]["mean"] / 1e6), "-"]))
EOF
    log "$name $bs done"
  done
done

# --- cluster -------------------------------------------------------------
C="$WORK/cluster"
for i in 0 1 2; do
  mkdir -p "$C/osd.$i"
  log "filling osd.$i's device ($OSD_SIZE)"
  fill "$C/osd.$i/device" "$OSD_SIZE"
done
"$K" vstart --osds 3 --mgrs 0 --dir "$C" --osd-size "$OSD_SIZE" >&2
CONF="$C/kalmar.conf"
OSD_PIDS=$(cat "$C"/osd.*.pid | tr '\n' ' ')
"$K" --conf "$CONF" osd pool create size1 32 --size 1 --min-size 1 >&2
"$K" --conf "$CONF" osd pool create size3 32 --size 3 --min-size 2 >&2
for _ in $(seq 120); do
  "$K" --conf "$CONF" -f json pg stat | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["num_pg_by_state"] == [{"name": "active+clean", "num": 64}] else 1)' && break
  sleep 1
done
for pool in size1 size3; do
  for bs in 4K 4M; do
    # shellcheck disable=SC2086 # a list of pids
    before=$(cpu_seconds $OSD_PIDS)
    # 4 MiB objects are removed after each run (the devices hold a few
    # runs' worth only); 4 KiB ones stay, which saves minutes of removals.
    keep=$([ "$bs" = 4K ] && echo --no-cleanup || true)
    max=$([ "$bs" = 4K ] && echo 0 || echo "$MAX_4M")
    # shellcheck disable=SC2086 # an optional flag
    "$K" --conf "$CONF" -f json rados -p "$pool" bench "$SECS" write -b "$bs" -t $QD $keep --max-objects "$max" \
      --run-name "bench_${pool}_${bs}" >"$WORK/bench-$pool-$bs.json"
    # shellcheck disable=SC2086
    after=$(cpu_seconds $OSD_PIDS)
    python3 - "$WORK/bench-$pool-$bs.json" "$pool" "$bs" "$before" "$after" >>"$RESULTS" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
cpu = float(sys.argv[5]) - float(sys.argv[4])
ops = max(j["total_writes_made"], 1)
print("\t".join(["cluster-" + sys.argv[2], sys.argv[3].lower(), "%.1f" % j["average_iops"],
                 "%.2f" % j["bandwidth"], "%.3f" % (j["average_latency"] * 1000), "%.3f" % (cpu / ops * 1000)]))
EOF
    log "$pool $bs done"
  done
done

# --- report ----------------------------------------------------------------
python3 - "$RESULTS" "$SECS" "$MAX_4M" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
raw = {(r[0], r[1]): float(r[2]) for r in rows if r[0].startswith("raw")}
print(f"| target | size | IOPS | MiB/s | mean lat ms | OSD CPU ms/op | x raw plain | x raw durable |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for t, bs, iops, mb, lat, cpu in rows:
    p, d = raw.get(("raw-plain", bs)), raw.get(("raw-durable", bs))
    rp = "%.3f" % (float(iops) / p) if p else "-"
    rd = "%.3f" % (float(iops) / d) if d else "-"
    print(f"| {t} | {bs} | {iops} | {mb} | {lat} | {cpu} | {rp} | {rd} |")
print(f"\n(up to {sys.argv[2]} s per row, 4 MiB cluster rows up to {sys.argv[3]} objects, 16 in flight; cluster rows: new objects written whole, "
      "pool of 32 PGs; raw rows: fio io_uring on the filled device file)")
EOF
