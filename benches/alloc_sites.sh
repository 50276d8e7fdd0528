#!/usr/bin/env bash
# Where a running kalmar-osd (or kalmar-nbd) allocates, by calling site.
#
#   benches/alloc_sites.sh PID [SECONDS] [TOP]
#
# Puts uprobes on the counting allocator's alloc and realloc
# (kalmar_common::alloc_count, which the daemons install as the global
# allocator) of the binary PID runs, records their call stacks with perf
# for SECONDS (default 3) while you drive load, removes the probes, and
# prints the share of allocation events per site (benches/alloc_sites.py).
# The uprobes slow the daemon down many times over: read the shares, not
# the rate. For allocations per I/O use the `allocator` perf counters
# (scripts/bench.sh prints them per job). Needs root and perf.
# ALLOC_SITES_PERIOD (default 20): record one allocation in this many.
set -euo pipefail
PID=${1:?usage: alloc_sites.sh PID [SECONDS] [TOP]}
SECS=${2:-3}
TOP=${3:-30}
PERIOD=${ALLOC_SITES_PERIOD:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(readlink /proc/$PID/exe)
case $BIN in
  *" (deleted)") echo "alloc_sites: $PID runs a binary replaced since it started; restart it" >&2; exit 1 ;;
esac
TRACE=/sys/kernel/tracing
[ -e $TRACE/uprobe_events ] || mount -t tracefs nodev $TRACE
# A uprobe takes a file offset: the symbol's address less its segment's
# (virtual address - file offset).
read -r SEG_VADDR SEG_OFF < <(readelf -lW "$BIN" | awk '$1 == "LOAD" && / R E / {print $3, $2; exit}')
sym_off() {
  local addr
  addr=$(nm "$BIN" | grep -E "CountingAlloc.*GlobalAlloc.*$1" | awk '{print $1; exit}')
  [ -n "$addr" ] || { echo "alloc_sites: no CountingAlloc::$1 in $BIN" >&2; exit 1; }
  printf '0x%x' $((0x$addr - SEG_VADDR + SEG_OFF))
}
ALLOC=$(sym_off '5alloc17h')
REALLOC=$(sym_off '7realloc17h')
OUT=$(mktemp -d /var/tmp/kalmar-alloc-sites.XXXXXX)
cleanup() {
  echo "-:kalmar_alloc/alloc" >>$TRACE/uprobe_events 2>/dev/null || true
  echo "-:kalmar_alloc/realloc" >>$TRACE/uprobe_events 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT
echo "p:kalmar_alloc/alloc $BIN:$ALLOC" >>$TRACE/uprobe_events
echo "p:kalmar_alloc/realloc $BIN:$REALLOC" >>$TRACE/uprobe_events
# One event in PERIOD is recorded with its stack: every event with a
# 16 KiB stack copy came to ~1 GB per second under a size-3 write load and
# filled the disk the OSDs' device files sit on.
perf record -q -c "$PERIOD" -e kalmar_alloc:alloc -e kalmar_alloc:realloc \
  --call-graph dwarf,16384 -p "$PID" -o "$OUT/perf.data" -- sleep "$SECS" >"$OUT/record.log" 2>&1 ||
  { echo "alloc_sites: perf record failed:" >&2; cat "$OUT/record.log" >&2; exit 1; }
perf script -i "$OUT/perf.data" -F event,ip,sym --no-inline 2>/dev/null >"$OUT/stacks.txt"
python3 "$HERE/alloc_sites.py" "$OUT/stacks.txt" "$TOP"
