"""Cluster summary as a command (``tell mgr status``, ``tell mgr osd
status``) and, when ``server_port`` is set, over HTTP: ``/status`` (JSON,
Ceph's ``status`` keys) and ``/status.txt`` (plain)."""

import json
from http.server import BaseHTTPRequestHandler
from typing import Optional

from mgr_module import CLIReadCommand, HandleCommandResult, MgrModule, Option
from mgr_util import StoppableHttpServer, reply


def fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return "%d B" % n


def fmt_count(n):
    n = float(n)
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000 or unit == "G":
            return ("%d" % n) if unit == "" else ("%.2f%s" % (n, unit))
        n /= 1000.0
    return str(n)


class Module(MgrModule):
    MODULE_OPTIONS = [
        Option("server_addr", default="127.0.0.1", desc="address of the HTTP summary"),
        Option("server_port", type="int", default=0, min=0, max=65535,
               desc="port of the HTTP summary (0: no HTTP server)"),
    ]
    NOTIFY_TYPES = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = StoppableHttpServer()

    # ---- data -------------------------------------------------------------
    def summary(self):
        """Ceph's `status` JSON keys, from the mgr's snapshots."""
        osd_map = self.get("osd_map") or {}
        osds = osd_map.get("osds", [])
        health_raw = self.get("health")
        health = json.loads(health_raw["json"]) if health_raw else {"status": "HEALTH_UNKNOWN", "checks": {}}
        pg = self.get("pg_status") or {}
        mgr_map = self.get("mgr_map") or {}
        return {
            "fsid": osd_map.get("fsid", ""),
            "health": {"status": health.get("status"), "checks": health.get("checks", {}),
                       "mutes": health.get("mutes", [])},
            "osdmap": {
                "epoch": osd_map.get("epoch", 0),
                "num_osds": len(osds),
                "num_up_osds": sum(1 for o in osds if o.get("up")),
                "num_in_osds": sum(1 for o in osds if o.get("in")),
                "num_remapped_pgs": len(osd_map.get("pg_temp", [])),
            },
            "pgmap": {k: pg.get(k, 0) for k in (
                "num_pgs", "num_pools", "num_objects", "data_bytes", "bytes_used",
                "bytes_avail", "bytes_total")} | {"pgs_by_state": pg.get("pgs_by_state", [])},
            "mgrmap": {"available": mgr_map.get("available", False),
                       "active_name": mgr_map.get("active_name", ""),
                       "num_standbys": len(mgr_map.get("standbys", []))},
        }

    def summary_text(self, s):
        o = s["osdmap"]
        p = s["pgmap"]
        lines = [
            "  cluster:",
            "    id:     %s" % s["fsid"],
            "    health: %s" % s["health"]["status"],
        ]
        for name, c in sorted(s["health"]["checks"].items()):
            lines.append("            %s: %s" % (name, c.get("summary", {}).get("message", "")))
        lines += [
            "",
            "  services:",
            "    mgr: %s(active)" % (s["mgrmap"]["active_name"] or self.get_mgr_id()),
            "    osd: %d osds: %d up, %d in" % (o["num_osds"], o["num_up_osds"], o["num_in_osds"]),
            "",
            "  data:",
            "    pools:   %d pools, %d pgs" % (p["num_pools"], p["num_pgs"]),
            "    objects: %s objects, %s" % (fmt_count(p["num_objects"]), fmt_bytes(p["data_bytes"])),
            "    usage:   %s used, %s / %s avail" % (fmt_bytes(p["bytes_used"]), fmt_bytes(p["bytes_avail"]),
                                                     fmt_bytes(p["bytes_total"])),
        ]
        states = sorted(p["pgs_by_state"], key=lambda x: -x["count"])
        for i, st in enumerate(states):
            lines.append("    %s%-4d %s" % ("pgs:     " if i == 0 else "             ", st["count"], st["state_name"]))
        return "\n".join(lines) + "\n"

    def osd_table(self):
        osd_map = self.get("osd_map") or {}
        stats = {s["osd"]: s for s in (self.get("osd_stats") or {}).get("osd_stats", [])}
        rows = []
        for o in osd_map.get("osds", []):
            oid = o["osd"]
            md = self.get_metadata("osd", str(oid)) or {}
            st = stats.get(oid, {})
            rows.append({
                "id": oid,
                "host_name": md.get("hostname", ""),
                "kb_used": st.get("kb_used", 0),
                "kb_avail": st.get("kb_avail", 0),
                "wr_ops": self.get_latest("osd", str(oid), "osd.op_w"),
                "wr_data": self.get_latest("osd", str(oid), "osd.op_in_bytes"),
                "rd_ops": self.get_latest("osd", str(oid), "osd.op_r"),
                "rd_data": self.get_latest("osd", str(oid), "osd.op_out_bytes"),
                "state": ",".join(o.get("state", [])),
            })
        return rows

    # ---- commands ---------------------------------------------------------
    @CLIReadCommand("status")
    def status_command(self, format: Optional[str] = None):
        """Show a cluster summary"""
        s = self.summary()
        if format in ("json", "json-pretty"):
            return HandleCommandResult(0, json.dumps(s, indent=4 if format == "json-pretty" else None), "")
        return HandleCommandResult(0, self.summary_text(s), "")

    @CLIReadCommand("osd status")
    def osd_status_command(self, bucket: Optional[str] = None, format: Optional[str] = None):
        """Show the status of OSDs (optionally of one host)"""
        rows = [r for r in self.osd_table() if bucket is None or r["host_name"] == bucket]
        if format in ("json", "json-pretty"):
            return HandleCommandResult(0, json.dumps({"OSDs": rows}), "")
        head = ("ID", "HOST", "USED", "AVAIL", "WR OPS", "WR DATA", "RD OPS", "RD DATA", "STATE")
        table = [head] + [(str(r["id"]), r["host_name"], fmt_bytes(r["kb_used"] * 1024),
                           fmt_bytes(r["kb_avail"] * 1024), fmt_count(r["wr_ops"]), fmt_bytes(r["wr_data"]),
                           fmt_count(r["rd_ops"]), fmt_bytes(r["rd_data"]), r["state"]) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        out = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)
        return HandleCommandResult(0, out + "\n", "")

    # ---- HTTP -------------------------------------------------------------
    def serve(self):
        port = int(self.get_module_option("server_port"))
        if port == 0:
            self._http.wait()
            return
        module = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/status":
                    body, ctype = json.dumps(module.summary()).encode(), "application/json"
                elif path == "/status.txt":
                    body, ctype = module.summary_text(module.summary()).encode(), "text/plain"
                else:
                    self.send_error(404)
                    return
                reply(self, 200, ctype, body)

            def log_message(self, fmt, *args):
                module.log.debug("http: " + fmt, *args)

        self._http.run(self.get_module_option("server_addr"), port, Handler)

    def shutdown(self):
        self._http.stop()
