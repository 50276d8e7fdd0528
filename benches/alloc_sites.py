#!/usr/bin/env python3
"""Where a daemon allocates: reads `perf script -F event,ip,sym` output of
uprobes on the counting allocator (see alloc_sites.sh) and prints the share
of allocation events per calling site, the allocator's and the standard
library's own frames skipped, so that each line names Kalmar code."""

import collections
import re
import sys

# Frames that are the machinery of an allocation, not its reason.
SKIP = re.compile(
    r"GlobalAlloc|^alloc::|^<alloc::|__rust|core::ptr|hashbrown|smallvec|^<smallvec"
    r"|bytes::|^<bytes|^std::|^<std|RawVec|^core::|^<core::|\[unknown\]|mimalloc"
    r"|Encode>::encode|encode_versioned|Encode::to_bytes|encode_exact|put_bytes"
    r"|Decoder::versioned|Decode>::decode$"
)


def samples(lines):
    stack = None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not line.startswith("\t") and ":" in line and not line.strip()[0].isdigit():
            if stack:
                yield stack
            stack = [line.strip()]
        elif stack is not None:
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                stack.append(parts[1])
    if stack:
        yield stack


def main():
    if len(sys.argv) < 2:
        print("usage: alloc_sites.py PERF_SCRIPT_OUTPUT [TOP]", file=sys.stderr)
        return 2
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    sites = collections.Counter()
    kinds = collections.Counter()
    total = 0
    with open(sys.argv[1], errors="replace") as f:
        for stack in samples(f):
            total += 1
            kinds[stack[0].split(":")[1] if stack[0].count(":") >= 1 else stack[0]] += 1
            named = [fr for fr in stack[1:] if not SKIP.search(fr)]
            sites[" <- ".join(fr[:110] for fr in named[:2]) or "?"] += 1
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} allocation events: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    for site, n in sites.most_common(top):
        print(f"{100 * n / total:5.1f}%  {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
