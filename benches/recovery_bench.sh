#!/usr/bin/env bash
# Recovery after an OSD was down while data was written, on a 3-OSD vstart
# cluster over filled device files (pool size 3, min_size 2, 32 PGs):
#
#   1. fio on the raw device (filled file on a loop device, io_uring,
#      --direct=1, 4 MiB sequential writes, 16 in flight), plain and
#      --sync=1: the bandwidth recovery is compared with;
#   2. the client write rate with all OSDs up (`rados bench`-style 4 KiB
#      writes, 16 in flight) -- "before";
#   3. osd.2 is stopped (noout set); RECOVERY_GIB GiB are written as 4 MiB
#      objects while it is down;
#   4. osd.2 is restarted, and once it is up the same client bench runs
#      until a few seconds after recovery ends -- "during" counts the
#      bench's seconds that ended before every PG was active+clean,
#      "after" the others;
#   5. time from the restart to all PGs active+clean, and the bytes that
#      reached osd.2 by recovery (its subop_push_in_bytes: pushes and pull
#      replies) over that time, as a fraction of the raw bandwidth.
#
# Prints a markdown section for benches/RESULTS.md at the end.
#
# Settings (environment):
#   RECOVERY_GIB       GiB written while osd.2 is down (default 1);
#                      RECOVERY_MIB overrides it in MiB (a multiple of 4)
#   BENCH_SECONDS      seconds of each fio and client bench run (default 10)
#   BENCH_OSD_SIZE     size of each OSD's device file, filled (default 4G)
#   BENCH_RAW_SIZE     size of the raw device file, filled (default 2G)
#   RECOVERY_TIMEOUT   bound on recovery, seconds (default 1800)
#   BENCH_WORK_DIR     parent of the scratch directory (default /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${RECOVERY_MIB:-$(( ${RECOVERY_GIB:-1} * 1024 ))}
SECS=${BENCH_SECONDS:-10}
OSD_SIZE=${BENCH_OSD_SIZE:-4G}
RAW_SIZE=${BENCH_RAW_SIZE:-2G}
TIMEOUT=${RECOVERY_TIMEOUT:-1800}
QD=16
PGS=32

log() { echo "recovery-bench: $*" >&2; }

scripts/setup.sh
. scripts/env.sh
cargo build --release -p kalmar-cli -p kalmar-mon -p kalmar-osd --bins >&2
K="$KALMAR_BIN_DIR/kalmar"

WORK=$(mktemp -d "${BENCH_WORK_DIR:-/var/tmp}/kalmar-recovery-bench.XXXXXX")
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

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. raw device --------------------------------------------------------
log "filling the raw device file ($RAW_SIZE)"
fill "$WORK/raw.img" "$RAW_SIZE"
RAW_DEV="$WORK/raw.img"
if LOOP=$(losetup --find --show --direct-io=on "$WORK/raw.img" 2>/dev/null); then RAW_DEV=$LOOP; fi
for sync in 0 1; do
  fio_raw "$RAW_DEV" "$RAW_SIZE" "$SECS" 4m $QD $sync "$WORK/fio-$sync.json"
done
[ -n "$LOOP" ] && { losetup -d "$LOOP" || log "could not detach $LOOP"; LOOP=; }
rm -f "$WORK/raw.img"
log "raw device done"

# --- cluster ----------------------------------------------------------------
C="$WORK/cluster"
for i in 0 1 2; do
  mkdir -p "$C/osd.$i"
  log "filling osd.$i's device ($OSD_SIZE)"
  fill "$C/osd.$i/device" "$OSD_SIZE"
done
"$K" vstart --osds 3 --mgrs 0 --dir "$C" --osd-size "$OSD_SIZE" >&2
CONF="$C/kalmar.conf"
kc() { "$K" --conf "$CONF" "$@"; }
kc osd pool create rec $PGS --size 3 --min-size 2 >&2

# pg_state STATE...: exit 0 when every PG's state holds all the words
pg_state() {
  kc -f json pg dump pgs_brief | python3 -c '
import json, sys
want = set(sys.argv[2:])
d = json.load(sys.stdin)
pgs = d.get("pg_stats", d) if isinstance(d, dict) else d
ok = len(pgs) == int(sys.argv[1]) and all(want <= set(p["state"].split("+")) for p in pgs)
sys.exit(0 if ok else 1)' "$PGS" "$@"
}
wait_state() { # seconds state...
  local n=$1
  shift
  for _ in $(seq $((n * 2))); do
    pg_state "$@" && return 0
    sleep 0.5
  done
  log "PGs not $* after $n s"
  return 1
}
wait_state 120 active clean

# --- 2. client rate before ------------------------------------------------------
kc rados -p rec bench "$SECS" write -b 4K -t $QD --no-cleanup --run-name before >"$WORK/before.txt"
log "client bench before: $(grep -E '^Average IOPS' "$WORK/before.txt")"

# --- 3. osd.2 down, data written ------------------------------------------------
kc osd set noout >&2
OSD2=$(cat "$C/osd.2.pid")
kill -TERM "$OSD2"
for _ in $(seq 600); do kill -0 "$OSD2" 2>/dev/null || break; sleep 0.1; done
kill -0 "$OSD2" 2>/dev/null && { log "osd.2 did not stop"; exit 1; }
wait_state 120 active undersized degraded
OBJECTS=$((MIB / 4))
log "writing $MIB MiB ($OBJECTS objects of 4 MiB) while osd.2 is down"
kc -f json rados -p rec bench 100000 write -b 4M -t $QD --no-cleanup --max-objects "$OBJECTS" \
  --run-name down >"$WORK/down.json"

# --- 4./5. restart, recovery under the client bench -------------------------------
python3 - "$K" "$CONF" "$C" "$SECS" "$QD" "$PGS" "$TIMEOUT" "$WORK" <<'EOF'
import json, subprocess, sys, threading, time
k, conf, cdir, secs, qd, pgs, timeout, work = sys.argv[1:9]
secs, pgs, timeout = int(secs), int(pgs), float(timeout)

def kc(*args, **kw):
    return subprocess.run([k, "--conf", conf, *args], check=True, capture_output=True, text=True, **kw).stdout

def all_clean():
    d = json.loads(kc("-f", "json", "pg", "dump", "pgs_brief"))
    pgl = d.get("pg_stats", d) if isinstance(d, dict) else d
    return len(pgl) == pgs and all(p["state"] == "active+clean" for p in pgl)

t_restart = time.time()
subprocess.run([k, "vstart", "--osds", "3", "--dir", cdir], check=True, capture_output=True)
t_up = time.time()
# The client bench runs from osd.2's boot until a few seconds after the
# last PG is clean (then it is stopped; its per-second lines suffice).
lines = []
bench = subprocess.Popen([k, "--conf", conf, "rados", "-p", "rec", "bench", str(int(timeout)), "write",
                          "-b", "4K", "-t", str(qd), "--no-cleanup", "--run-name", "during"],
                         stdout=subprocess.PIPE, text=True)
def read_lines():
    for line in bench.stdout:
        lines.append((time.time(), line.rstrip("\n")))
reader = threading.Thread(target=read_lines)
reader.start()
t_clean = None
while time.time() - t_restart < timeout:
    if all_clean():
        t_clean = time.time()
        break
    time.sleep(0.25)
time.sleep(min(secs, 5) + 0.5)
bench.terminate()
bench.wait()
reader.join()
if t_clean is None:
    sys.exit(f"not active+clean within {timeout} s")
perf = json.loads(kc("-f", "json", "daemon", "osd.2", "perf", "dump"))["osd"]
# Per-second lines: "sec Cur-ops started finished ...": ops finished in
# each second, kept when that second ended before recovery did.
during, after, prev = [], [], 0
for stamp, line in lines:
    f = line.split()
    if len(f) == 8 and f[0].isdigit() and f[3].isdigit():
        fin = int(f[3])
        if int(f[0]) > 0:
            (during if stamp <= t_clean else after).append(fin - prev)
        prev = fin
json.dump({
    "restart_to_up_s": t_up - t_restart,
    "restart_to_clean_s": t_clean - t_restart,
    "recovered_bytes": perf.get("subop_push_in_bytes", 0),
    "recovered_msgs": perf.get("subop_push", 0),
    "during_iops": sum(during) / len(during) if during else None,
    "during_secs": len(during),
    "after_iops": sum(after) / len(after) if after else None,
}, open(f"{work}/recovery.json", "w"))
EOF
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------------
python3 - "$WORK" "$MIB" "$SECS" "$LOAD_START" "$LOAD_END" <<'EOF'
import json, re, sys
work, mib_written, secs, load0, load1 = sys.argv[1:6]
def fio_bw(path):
    return json.load(open(path))["jobs"][0]["write"]["bw"] / 1024.0
plain, durable = fio_bw(f"{work}/fio-0.json"), fio_bw(f"{work}/fio-1.json")
before = float(re.search(r"^Average IOPS:\s+(\S+)", open(f"{work}/before.txt").read(), re.M).group(1))
down = json.load(open(f"{work}/down.json"))
r = json.load(open(f"{work}/recovery.json"))
mib = r["recovered_bytes"] / 1048576.0
t = r["restart_to_clean_s"]
rate = mib / t
print("| measure | value |")
print("| --- | --- |")
print(f"| raw device, 4 MiB writes QD16, plain / --sync=1 | {plain:.0f} / {durable:.0f} MiB/s |")
print(f"| written while osd.2 was down ({mib_written} MiB, 4 MiB objects) | {down['bandwidth']:.1f} MiB/s |")
print(f"| osd.2 restart to up (boot) | {r['restart_to_up_s']:.1f} s |")
print(f"| osd.2 restart to all PGs active+clean | {t:.1f} s |")
print(f"| recovered to osd.2 (subop_push_in_bytes, {r['recovered_msgs']} messages) | {mib:.0f} MiB |")
up_rate = mib / max(t - r["restart_to_up_s"], 1e-3)
print(f"| recovery throughput (from the restart / from osd.2 up) | {rate:.1f} / {up_rate:.1f} MiB/s |")
print(f"| ... from the restart, as a fraction of the raw device, plain / durable | {rate / plain:.3f} / {rate / durable:.3f} |")
print(f"| client 4 KiB writes QD16 before (all OSDs up) | {before:.0f} IOPS |")
d = r["during_iops"]
print(f"| client 4 KiB writes QD16 during recovery ({r['during_secs']} s) | "
      + (f"{d:.0f} IOPS ({d / before:.2f} x before) |" if d is not None else "- (recovery ended within the first second) |"))
if r["after_iops"] is not None:
    print(f"| client 4 KiB writes QD16 after recovery, same run | {r['after_iops']:.0f} IOPS |")
print(f"\n(load average {load0} at the start, {load1} at the end; {secs} s per fio and client run)")
EOF
