"""Times get_all_perf_counters() from Python for the benchmark, next to
json.loads() of the same data (what a JSON bridge would cost)."""

import json
import time

from mgr_module import MgrModule


class Module(MgrModule):
    COMMANDS = [{"cmd": "perfbench run name=iterations,type=CephInt,range=1|1000",
                 "desc": "time get_all_perf_counters", "perm": "r"}]

    def handle_command(self, inbuf, cmd):
        n = cmd["iterations"]
        api_s, json_s = [], []
        result = None
        for _ in range(n):
            t = time.perf_counter()
            result = self.get_all_perf_counters()
            api_s.append(time.perf_counter() - t)
        text = json.dumps(result)
        for _ in range(n):
            t = time.perf_counter()
            json.loads(text)
            json_s.append(time.perf_counter() - t)
        daemons = len(result)
        counters = sum(len(c) for c in result.values())
        return 0, json.dumps({"api_s": api_s, "json_loads_s": json_s, "daemons": daemons,
                              "counters": counters, "json_bytes": len(text)}), ""
