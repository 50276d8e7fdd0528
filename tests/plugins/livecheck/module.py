"""A plugin for the live mgr tests: `livecheck report` answers, as JSON,
what the MgrModule API returns against the running cluster, so the Rust
test can check shapes and values; `livecheck store KEY VALUE`,
`livecheck option VALUE`, `livecheck health NAME` / `livecheck clear`,
`livecheck log TEXT` and `livecheck send` exercise writes, the log and
send_command; `livecheck ping WORD` is a @CLIReadCommand. serve() counts
its loops until shutdown(), which leaves a mark in the store."""

import json
import threading
import time

from mgr_module import CLIReadCommand, CommandResult, MgrModule, Option

DOCS = ["osd_map", "osd_map_tree", "osd_map_crush", "pg_summary", "pg_status",
        "pg_dump", "pg_stats", "osd_stats", "pool_stats", "osd_pool_stats", "df",
        "health", "mon_status", "mon_map", "mgr_map", "io_rate"]


class Module(MgrModule):
    COMMANDS = [
        {"cmd": "livecheck report", "desc": "what the API returns", "perm": "r"},
        {"cmd": "livecheck store name=key,type=CephString name=value,type=CephString",
         "desc": "set_store then get_store", "perm": "w"},
        {"cmd": "livecheck health name=check,type=CephString",
         "desc": "raise a health check", "perm": "w"},
        {"cmd": "livecheck clear", "desc": "clear the health checks", "perm": "w"},
        {"cmd": "livecheck option name=value,type=CephInt",
         "desc": "set_module_option then get_module_option", "perm": "w"},
        {"cmd": "livecheck log name=text,type=CephString",
         "desc": "self.log.info(text)", "perm": "w"},
        {"cmd": "livecheck send", "desc": "send_command to the mon, wait", "perm": "r"},
    ]
    MODULE_OPTIONS = [Option("interval", type="secs", default=7, desc="an option")]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.notified = {}
        self.command_tags = []
        self.serve_loops = 0
        self.serving = False
        self.stop = threading.Event()

    def notify(self, notify_type, notify_id):
        key = str(getattr(notify_type, "value", notify_type))
        self.notified[key] = self.notified.get(key, 0) + 1
        if key == "command":
            self.command_tags.append(notify_id)

    def serve(self):
        self.serving = True
        self.set_store("serve_started", str(time.time()))
        while not self.stop.wait(0.2):
            self.serve_loops += 1
        self.serving = False

    def shutdown(self):
        self.set_store("shutdown_called", str(self.serve_loops))
        self.stop.set()

    @CLIReadCommand("livecheck ping")
    def ping(self, word: str):
        """Answers pong and the word (a decorator command)."""
        return 0, json.dumps({"pong": word}), ""

    @CLIReadCommand("livecheck get")
    def get_doc(self, name: str):
        """self.get(NAME) as JSON (health and mon_status decoded)."""
        v = self.get(name)
        if isinstance(v, dict) and set(v) == {"json"}:
            v = {"json": json.loads(v["json"])}
        return 0, json.dumps(v), ""

    def report(self):
        docs = {}
        for name in DOCS:
            v = self.get(name)
            docs[name] = {"type": type(v).__name__,
                          "keys": sorted(v.keys()) if isinstance(v, dict) else []}
        health = json.loads(self.get("health")["json"])
        osdmap = self.get_osdmap()
        r, outb, outs = self.mon_command({"prefix": "osd stat", "format": "json"})
        perf = self.get_all_perf_counters()
        op_w = {d: c.get("osd.op_w", {}).get("value") for d, c in perf.items() if d.startswith("osd.")}
        counter = self.get_counter("osd", "0", "osd.op_w")
        return {
            "mgr_id": self.get_mgr_id(),
            "have_mon_connection": self.have_mon_connection(),
            "docs": docs,
            "health_status": health.get("status"),
            "health_checks": health.get("checks"),
            "osdmap_epoch": osdmap.get_epoch(),
            "pools": sorted(p["pool_name"] for p in osdmap.dump()["pools"]),
            "mon_command": {"retval": r, "num_osds": json.loads(outb or "{}").get("num_osds")},
            "perf_daemons": sorted(perf.keys()),
            "op_w": op_w,
            "op_w_samples": len(counter.get("osd.op_w", [])),
            "latest_op_w": self.get_latest("osd", "0", "osd.op_w"),
            "schema_op_w": self.get_perf_schema("osd", "0").get("osd.0", {}).get("osd.op_w"),
            "metadata_osd0": self.get_metadata("osd", "0"),
            "servers": [s.get("hostname") for s in self.list_servers()],
            "option_interval": self.get_module_option("interval"),
            "pg_status": self.get("pg_status"),
            "df_stats": self.get("df")["stats"],
            "notified": self.notified,
            "command_tags": self.command_tags,
            "serving": self.serving,
            "serve_loops": self.serve_loops,
            "shutdown_mark": self.get_store("shutdown_called"),
            "osd_metadata": self.get("osd_metadata"),
            "io_rate": self.get("io_rate"),
            "osd_pool_stats": self.get("osd_pool_stats"),
            "latest_avg_op_w_latency": {o: list(self.get_latest_avg("osd", o, "osd.op_w_latency"))
                                        for o in ("0", "1", "2")},
            "mon_map": self.get("mon_map"),
        }

    def handle_command(self, inbuf, cmd):
        prefix = cmd["prefix"]
        if prefix == "livecheck report":
            return 0, json.dumps(self.report()), ""
        if prefix == "livecheck store":
            self.set_store(cmd["key"], cmd["value"])
            return 0, json.dumps({"value": self.get_store(cmd["key"])}), ""
        if prefix == "livecheck health":
            self.set_health_checks({cmd["check"]: {
                "severity": "warning", "summary": "raised by livecheck", "count": 1,
                "detail": ["livecheck detail line"]}})
            return 0, "", "raised"
        if prefix == "livecheck clear":
            self.set_health_checks({})
            return 0, "", "cleared"
        if prefix == "livecheck option":
            self.set_module_option("interval", cmd["value"])
            return 0, json.dumps({"value": self.get_module_option("interval")}), ""
        if prefix == "livecheck log":
            self.log.info("livecheck says %s", cmd["text"])
            return 0, "", "logged"
        if prefix == "livecheck send":
            result = CommandResult("livecheck-send")
            self.send_command(result, "mon", "", json.dumps({"prefix": "osd stat", "format": "json"}),
                              "livecheck-send")
            r, outb, outs = result.wait()
            return 0, json.dumps({"retval": r, "num_osds": json.loads(outb or "{}").get("num_osds")}), ""
        return -22, "", "unknown command"
