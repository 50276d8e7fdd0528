#!/usr/bin/env python3
"""Daemon counters around one fio job, for scripts/bench.sh.

`snapshot` prints (JSON) the allocator totals of daemons, read from their
admin sockets (`perf dump allocator`: kalmar_common::alloc_count), and the
voluntary and involuntary context switches of every thread of the given
processes (/proc/PID/task/*/status), and the latency counters of
`LATENCIES`. `delta BEFORE.json` takes a new snapshot and prints
"ALLOCATIONS CONTEXT_SWITCHES" since BEFORE ("-" for a figure it could not
read); `latency BEFORE.json` prints, per admin socket, each latency's mean
and count since BEFORE: where a write's time goes on each OSD.

Context switches are the project's proxy for thread hand-offs per op: a
thread that sleeps to wait for another one's work switches out. Counts are
taken per thread and differenced per thread, so a thread that exits during
the job loses only its switches since the first snapshot (an undercount),
and a new thread counts from zero.
"""

import argparse
import json
import os
import socket
import struct
import sys

ASOK_TIMEOUT_S = 5.0


def asok_request(path, cmd):
    """Ceph's admin socket protocol: JSON + NUL, then a 4-byte BE length."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(ASOK_TIMEOUT_S)
        s.connect(path)
        s.sendall(json.dumps(cmd).encode() + b"\0")
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk:
                raise OSError("admin socket closed early")
            head += chunk
        (n,) = struct.unpack(">I", head)
        body = b""
        while len(body) < n:
            chunk = s.recv(n - len(body))
            if not chunk:
                raise OSError("admin socket closed early")
            body += chunk
    text = body.decode()
    if text.startswith("ERROR: "):
        raise OSError(text)
    return json.loads(text)


def allocations(asoks):
    """Sum of allocator.allocations over the sockets; None if any fails."""
    total = 0
    for path in asoks:
        try:
            dump = asok_request(path, {"prefix": "perf dump", "logger": "allocator"})
            total += int(dump["allocator"]["allocations"])
        except (OSError, ValueError, KeyError) as e:
            print(f"daemon_stats: {path}: no allocator counters ({e})", file=sys.stderr)
            return None
    return total


# Latency counters `latency` reports, as (logger, counter, short name):
# the primary's whole client write and its part before the replicas'
# answers, a replica's whole replicated write, and the store's part.
LATENCIES = [
    ("osd", "op_w_latency", "op_w"),
    ("osd", "op_w_process_latency", "op_w_process"),
    ("osd", "subop_w_latency", "subop_w"),
    ("objectstore", "prepare_lat", "prepare"),
    ("objectstore", "journal_write_lat", "journal_write"),
    ("objectstore", "commit_lat", "commit"),
]


def latencies(asoks):
    """{asok: {short name: [count, sum seconds]}} of LATENCIES."""
    out = {}
    for path in asoks:
        try:
            dump = asok_request(path, {"prefix": "perf dump"})
        except (OSError, ValueError) as e:
            print(f"daemon_stats: {path}: no perf dump ({e})", file=sys.stderr)
            continue
        out[path] = {
            short: [dump[lg][c]["avgcount"], dump[lg][c]["sum"]]
            for lg, c, short in LATENCIES
            if c in dump.get(lg, {})
        }
    return out


def thread_switches(pids):
    """{"PID/TID": voluntary + involuntary switches} of every live thread."""
    out = {}
    for pid in pids:
        tdir = f"/proc/{pid}/task"
        try:
            tids = os.listdir(tdir)
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"{tdir}/{tid}/status") as f:
                    n = 0
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            n += int(line.split()[1])
            except OSError:
                continue  # the thread exited meanwhile
            out[f"{pid}/{tid}"] = n
    return out


def snapshot(args):
    return {
        "allocations": allocations(args.asok),
        "switches": thread_switches(args.pid),
        "latencies": latencies(args.asok),
    }


def print_latencies(before, now):
    """One line per socket: each latency's mean (us) and count between."""
    for path, lats in now.items():
        old = before.get(path, {})
        parts = []
        for _, _, short in LATENCIES:
            if short not in lats:
                continue
            n0, s0 = old.get(short, [0, 0.0])
            n = lats[short][0] - n0
            mean = (lats[short][1] - s0) / n * 1e6 if n > 0 else float("nan")
            parts.append(f"{short} {mean:.0f} us ({n})")
        name = os.path.basename(path).removesuffix(".asok")
        print(f"{name}: " + ", ".join(parts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["snapshot", "delta", "latency"])
    ap.add_argument("before", nargs="?", help="a snapshot file (delta)")
    ap.add_argument("--asok", action="append", default=[], help="a daemon's admin socket")
    ap.add_argument("--pid", action="append", default=[], help="a daemon's pid")
    args = ap.parse_args()
    now = snapshot(args)
    if args.command == "snapshot":
        json.dump(now, sys.stdout)
        print()
        return 0
    if not args.before:
        ap.error(f"{args.command} needs the BEFORE snapshot file")
    with open(args.before) as f:
        before = json.load(f)
    if args.command == "latency":
        print_latencies(before.get("latencies", {}), now["latencies"])
        return 0
    allocs = "-"
    if now["allocations"] is not None and before.get("allocations") is not None:
        allocs = str(now["allocations"] - before["allocations"])
    old = before.get("switches", {})
    csw = sum(max(0, n - old.get(t, 0)) for t, n in now["switches"].items())
    print(allocs, csw if now["switches"] else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
