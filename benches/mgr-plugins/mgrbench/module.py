"""Times get_all_perf_counters() inside the running mgr for the ingest
benchmark: `mgrbench perf N` calls it N times and answers the latencies."""

import json
import time

from mgr_module import MgrModule


class Module(MgrModule):
    COMMANDS = [{"cmd": "mgrbench perf name=iterations,type=CephInt",
                 "desc": "time get_all_perf_counters", "perm": "r"}]

    def handle_command(self, inbuf, cmd):
        n = max(1, int(cmd["iterations"]))
        times_ms = []
        daemons = counters = 0
        for _ in range(n):
            t0 = time.perf_counter()
            r = self.get_all_perf_counters()
            times_ms.append((time.perf_counter() - t0) * 1000.0)
            daemons = len(r)
            counters = sum(len(c) for c in r.values())
        times_ms.sort()
        return 0, json.dumps({"median_ms": times_ms[n // 2], "min_ms": times_ms[0],
                              "max_ms": times_ms[-1], "daemons": daemons,
                              "counters": counters}), ""
