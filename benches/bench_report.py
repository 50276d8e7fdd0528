#!/usr/bin/env python3
"""Side-by-side table of a scripts/bench.sh run.

Reads RUN_DIR/<target>/<job>.json (fio JSON, one job each),
RUN_DIR/cpu.tsv (target, job, daemon CPU seconds during that job) and
RUN_DIR/daemon.tsv (target, job, the daemons' heap allocations and their
threads' context switches during that job, "-" when unknown), prints
one table with each result's ratio to the raw device measured in the same
run, and writes the same data as JSON (for comparisons across runs).

Ratios: against `raw` (io_uring --direct=1) and against `raw-durable`
(--direct=1 --sync=1, every write with FUA). Kalmar acknowledges a write
only when it is durable, so for writes the durable ratio is the honest one.
"""

import argparse
import json
import os
import sys

JOBS = [
    "seqwrite-1m",
    "randwrite-4k-qd1",
    "randwrite-4k-qd32",
    "randread-4k-qd1",
    "randread-4k-qd32",
    "seqread-1m",
]


def job_figures(path):
    """IOPS, MiB/s, mean and p99 completion latency (us) of one fio job."""
    with open(path) as f:
        text = f.read()
    # fio's nbd engine may print a line before the JSON document.
    doc = json.loads(text[text.index("{"):])
    job = doc["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] > job["read"]["io_bytes"] else job["read"]
    clat = side["clat_ns"]
    pct = clat.get("percentile", {})
    p99 = pct.get("99.000000", 0) / 1000.0
    return {
        "iops": side["iops"],
        "bw_mib_s": side["bw_bytes"] / (1 << 20),
        "lat_mean_us": side["lat_ns"]["mean"] / 1000.0,
        "clat_p99_us": p99,
        "ios": side["total_ios"],
        "runtime_s": side["runtime"] / 1000.0,
        "error": job["error"],
    }


def load(run_dir):
    cpu = {}
    cpu_path = os.path.join(run_dir, "cpu.tsv")
    if os.path.exists(cpu_path):
        with open(cpu_path) as f:
            for line in f:
                t, j, s = line.split()
                cpu[(t, j)] = float(s)
    daemon = {}
    daemon_path = os.path.join(run_dir, "daemon.tsv")
    if os.path.exists(daemon_path):
        with open(daemon_path) as f:
            for line in f:
                t, j, allocs, csw = line.split()
                daemon[(t, j)] = (None if allocs == "-" else int(allocs), None if csw == "-" else int(csw))
    results = {}
    for target in sorted(os.listdir(run_dir)):
        tdir = os.path.join(run_dir, target)
        if not os.path.isdir(tdir):
            continue
        for job in JOBS:
            p = os.path.join(tdir, job + ".json")
            if not os.path.exists(p):
                continue
            try:
                fig = job_figures(p)
            except (ValueError, KeyError, IndexError) as e:
                print(f"bench_report: {target}/{job}: unreadable fio output ({e})", file=sys.stderr)
                continue
            secs = cpu.get((target, job))
            if secs is not None and fig["ios"] > 0:
                fig["daemon_cpu_us_per_io"] = secs * 1e6 / fig["ios"]
            allocs, csw = daemon.get((target, job), (None, None))
            if allocs is not None and fig["ios"] > 0:
                fig["daemon_allocs_per_io"] = allocs / fig["ios"]
            if csw is not None and fig["ios"] > 0:
                fig["daemon_csw_per_io"] = csw / fig["ios"]
            results.setdefault(target, {})[job] = fig
    return results


def ratio(a, b):
    return a / b if b else None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--json-out", help="write the results here as JSON")
    ap.add_argument("--meta", default="{}", help="JSON object stored with the results (host, sizes, ...)")
    ap.add_argument("--one", metavar="FIO_JSON", help="print one job's figures on one line (bench.sh's progress)")
    args = ap.parse_args()
    if args.one:
        fig = job_figures(args.one)
        print(f"{fig['iops']:.0f} IOPS, {fig['bw_mib_s']:.1f} MiB/s, mean {fig['lat_mean_us']:.0f} us, "
              f"p99 {fig['clat_p99_us']:.0f} us")
        return 0
    if not args.run_dir:
        ap.error("run_dir is required (or --one FIO_JSON)")
    results = load(args.run_dir)
    if not results:
        print("bench_report: no results in " + args.run_dir, file=sys.stderr)
        return 1
    if "raw" not in results:
        print("bench_report: no raw results in this run: ratios left out", file=sys.stderr)
    first = ["raw", "raw-durable", "objectstore", "store"]
    order = [t for t in first if t in results] + sorted(t for t in results if t not in first)
    header = ("target", "job", "IOPS", "MiB/s", "mean us", "p99 us", "CPU us/IO", "allocs/IO", "csw/IO",
              "x raw", "x durable")
    rows = []
    for target in order:
        for job in JOBS:
            fig = results.get(target, {}).get(job)
            if fig is None:
                continue
            raw = results.get("raw", {}).get(job, {})
            dur = results.get("raw-durable", {}).get(job, {})
            metric = "bw_mib_s" if job.startswith("seq") else "iops"
            fig["ratio_raw"] = ratio(fig[metric], raw.get(metric))
            fig["ratio_raw_durable"] = ratio(fig[metric], dur.get(metric))
            fig["lat_minus_raw_durable_us"] = (
                fig["lat_mean_us"] - dur["lat_mean_us"] if dur.get("lat_mean_us") is not None else None
            )
            rows.append((
                target, job,
                fmt(fig["iops"], ".0f"), fmt(fig["bw_mib_s"], ".1f"),
                fmt(fig["lat_mean_us"], ".0f"), fmt(fig["clat_p99_us"], ".0f"),
                fmt(fig.get("daemon_cpu_us_per_io"), ".1f"),
                fmt(fig.get("daemon_allocs_per_io"), ".1f"), fmt(fig.get("daemon_csw_per_io"), ".2f"),
                fmt(fig["ratio_raw"], ".2f"), fmt(fig["ratio_raw_durable"], ".2f"),
            ))
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    prev = None
    for r in rows:
        if prev is not None and r[0] != prev:
            print()
        prev = r[0]
        print("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    if args.json_out:
        doc = {"meta": json.loads(args.meta), "results": results}
        with open(args.json_out, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
