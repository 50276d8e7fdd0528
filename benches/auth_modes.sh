#!/usr/bin/env bash
# Issue 15's benchmark: 4 KiB random writes at QD1 and QD32 through a
# size-3 cluster with auth off, with cephx and every frame signed, and
# with cephx and every frame encrypted (secure), one after the other in
# one run; prints IOPS, mean latency and OSD CPU per write of each, with
# the ratio to auth off. Uses scripts/bench.sh (same cluster, image and
# fio jobs as the main job). Env: BENCH_RUNTIME, BENCH_OSD_SIZE,
# BENCH_SIZE as in scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${AUTH_BENCH_DIR:-$HOME/.cache/kalmar-bench/auth-modes-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
declare -A SET=(
  [off]="auth_cluster_required=none auth_service_required=none auth_client_required=none"
  [signed]="ms_cluster_mode=signed ms_service_mode=signed ms_client_mode=signed"
  [secure]="ms_cluster_mode=secure ms_service_mode=secure ms_client_mode=secure"
)
for mode in off signed secure; do
  echo "auth-modes: $mode (${SET[$mode]})" >&2
  BENCH_TARGETS=cluster-size3 BENCH_JOBS="randwrite-4k-qd1 randwrite-4k-qd32" \
    BENCH_CLUSTER_SET="${SET[$mode]}" BENCH_RESULTS_DIR="$OUT/$mode" \
    scripts/bench.sh >"$OUT/$mode.log" 2>&1 || { echo "auth-modes: $mode failed, see $OUT/$mode.log" >&2; exit 1; }
done
python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
res = {}
for mode in ("off", "signed", "secure"):
    path = sorted(glob.glob(os.path.join(out, mode, "bench-*.json")))[-1]
    res[mode] = json.load(open(path))["results"]["cluster-size3"]
print(f"{'job':<18} {'mode':<7} {'IOPS':>9} {'vs off':>7} {'mean us':>9} {'OSD CPU us/IO':>14} {'vs off':>7}")
for job in ("randwrite-4k-qd1", "randwrite-4k-qd32"):
    base = res["off"][job]
    for mode in ("off", "signed", "secure"):
        f = res[mode][job]
        cpu = f.get("daemon_cpu_us_per_io")
        bcpu = base.get("daemon_cpu_us_per_io")
        print(f"{job:<18} {mode:<7} {f['iops']:>9.0f} {f['iops']/base['iops']:>7.2f} {f['lat_mean_us']:>9.0f} "
              f"{(cpu or 0):>14.1f} {(cpu/bcpu if cpu and bcpu else 0):>7.2f}")
PY
echo "auth-modes: logs and JSON in $OUT" >&2
