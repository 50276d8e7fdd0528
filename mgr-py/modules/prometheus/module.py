"""Prometheus exporter with Ceph's metric names and labels, so Ceph's
Grafana dashboards and alert rules work unchanged.

Serves ``http://<server_addr>:<server_port>/metrics`` (127.0.0.1:9283 by
default). Every scrape reads the mgr's current snapshots: perf counters
from ``get_all_perf_counters()`` (``ceph_osd_op_w{ceph_daemon="osd.0"}``,
averages as ``_sum``/``_count``), cluster health, OSD and pool state, PG
states per pool and capacity.
"""

import threading
from http.server import BaseHTTPRequestHandler

from mgr_module import MgrModule, Option, CLIReadCommand, HandleCommandResult, PG_STATES
from mgr_util import StoppableHttpServer, reply

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PORT = 9283

HEALTH_STATUS = {"HEALTH_OK": 0, "HEALTH_WARN": 1, "HEALTH_ERR": 2}
OSD_FLAGS = ("noup", "nodown", "noout", "noin", "nobackfill", "norebalance",
             "norecover", "noscrub", "nodeep-scrub")
OSD_STATUS = ("weight", "up", "in")
OSD_STATS = ("apply_latency_ms", "commit_latency_ms")
POOL_GAUGES = ("max_avail", "avail_raw", "stored", "stored_raw", "objects", "dirty",
               "quota_bytes", "quota_objects", "compress_bytes_used",
               "compress_under_bytes", "bytes_used", "percent_used")
POOL_COUNTERS = ("rd", "rd_bytes", "wr", "wr_bytes")
CLUSTER_DF = ("total_bytes", "total_used_bytes", "total_used_raw_bytes")
NUM_OBJECTS = ("degraded", "misplaced", "unfound")
POOL_RECOVERY = ("recovering_objects_per_sec", "recovering_bytes_per_sec",
                 "recovering_keys_per_sec", "num_objects_recovered", "num_bytes_recovered")


def metric_name(path):
    """Ceph's mapping of a counter path to a metric name."""
    out = path.replace(".", "_").replace("::", "_").replace("/", "_").replace("+", "_plus")
    out = "_".join(out.split())
    if out.endswith("-"):
        out = out[:-1] + "_minus"
    return "ceph_" + out.replace("-", "_")


def _escape(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v):
    return repr(float(v))


class Metric:
    def __init__(self, mtype, name, desc, labels=()):
        self.mtype = mtype
        self.name = name
        self.desc = desc
        self.labelnames = tuple(labels)
        self.value = {}

    def set(self, value, labelvalues=()):
        self.value[tuple(str(v) for v in labelvalues)] = value

    def expfmt(self):
        lines = ["# HELP %s %s" % (self.name, " ".join(str(self.desc).split())),
                 "# TYPE %s %s" % (self.name, self.mtype)]
        for labelvalues, value in sorted(self.value.items()):
            if self.labelnames:
                labels = ",".join('%s="%s"' % (k, _escape(v)) for k, v in zip(self.labelnames, labelvalues))
                lines.append("%s{%s} %s" % (self.name, labels, _fmt(value)))
            else:
                lines.append("%s %s" % (self.name, _fmt(value)))
        return "\n".join(lines)


class Metrics:
    """An ordered set of metric families."""

    def __init__(self):
        self.families = {}

    def add(self, mtype, name, desc, labels=()):
        m = self.families.get(name)
        if m is None:
            m = self.families[name] = Metric(mtype, name, desc, labels)
        return m

    def text(self):
        return "\n".join(m.expfmt() for m in self.families.values()) + "\n"


class Module(MgrModule):
    MODULE_OPTIONS = [
        Option("server_addr", default=DEFAULT_ADDR, desc="address the exporter binds to"),
        Option("server_port", type="int", default=DEFAULT_PORT, min=0, max=65535,
               desc="port the exporter listens on (0: any free port)"),
        Option("exclude_perf_counters", type="bool", default=False,
               desc="leave per-daemon perf counters out of /metrics"),
    ]
    NOTIFY_TYPES = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = StoppableHttpServer()
        self._lock = threading.Lock()

    # ---- collection -------------------------------------------------------
    def _health(self, m):
        import json
        raw = self.get("health")
        health = json.loads(raw["json"]) if raw else {}
        m.add("untyped", "ceph_health_status", "Cluster health status").set(
            HEALTH_STATUS.get(health.get("status"), 2 if raw is None else 0))
        det = m.add("gauge", "ceph_health_detail", "healthcheck status by type (0=inactive, 1=active)",
                    ("name", "severity"))
        checks = health.get("checks") or {}
        for name, check in checks.items():
            det.set(1, (name, check.get("severity", "")))
        # As Ceph's module: the number in the SLOW_OPS summary ("12 slow
        # ops, oldest one blocked for ..."), 0 without the check.
        slow = 0
        summary = (checks.get("SLOW_OPS") or {}).get("summary") or {}
        words = str(summary.get("message", "")).split()
        if words and words[0].isdigit():
            slow = int(words[0])
        elif summary:
            slow = int(summary.get("count", 0))
        m.add("gauge", "ceph_healthcheck_slow_ops", "OSD or Monitor requests taking a long time to process").set(slow)

    def _mon(self, m):
        import json
        raw = self.get("mon_status")
        if not raw:
            return
        st = json.loads(raw["json"])
        quorum = set(st.get("quorum", []))
        q = m.add("gauge", "ceph_mon_quorum_status", "Monitors in quorum", ("ceph_daemon",))
        meta = m.add("untyped", "ceph_mon_metadata", "MON Metadata",
                     ("ceph_daemon", "hostname", "public_addr", "rank", "ceph_version"))
        for mon in st.get("monmap", {}).get("mons", []):
            d = "mon." + mon["name"]
            q.set(1 if mon.get("rank") in quorum else 0, (d,))
            md = self.get_metadata("mon", mon["name"]) or {}
            meta.set(1, (d, md.get("hostname", ""), str(mon.get("public_addr", "")).split(":")[0],
                         mon.get("rank", ""), md.get("ceph_version", "")))

    def _mgr(self, m):
        d = "mgr." + self.get_mgr_id()
        md = self.get_metadata("mgr", self.get_mgr_id()) or {}
        m.add("gauge", "ceph_mgr_metadata", "MGR metadata", ("ceph_daemon", "hostname", "ceph_version")).set(
            1, (d, md.get("hostname", ""), md.get("ceph_version", "")))
        m.add("gauge", "ceph_mgr_status", "MGR status (0=standby, 1=active)", ("ceph_daemon",)).set(1, (d,))
        mgr_map = self.get("mgr_map") or {}
        status = m.add("gauge", "ceph_mgr_module_status",
                       "MGR module status (0=disabled, 1=enabled, 2=auto-enabled)", ("name",))
        can_run = m.add("gauge", "ceph_mgr_module_can_run",
                        "MGR module runnable state i.e. can it run (0=no, 1=yes)", ("name",))
        enabled = set(mgr_map.get("modules", []))
        always = set()
        for mods in (mgr_map.get("always_on_modules") or {}).values():
            always.update(mods)
        for mod in mgr_map.get("available_modules", []):
            name = mod.get("name")
            status.set(2 if name in always else (1 if name in enabled else 0), (name,))
            can_run.set(1 if mod.get("can_run") else 0, (name,))

    def _osds(self, m, osd_map):
        flags = set(str(osd_map.get("flags", "")).split(","))
        for f in OSD_FLAGS:
            m.add("untyped", "ceph_osd_flag_" + f.replace("-", "_"), "OSD Flag " + f).set(1 if f in flags else 0)
        classes = {}
        for node in (self.get("osd_map_tree") or {}).get("nodes", []):
            if node.get("type") == "osd":
                classes[node["id"]] = node.get("device_class", "")
        meta = m.add("untyped", "ceph_osd_metadata", "OSD Metadata",
                     ("back_iface", "ceph_daemon", "cluster_addr", "device_class", "front_iface",
                      "hostname", "objectstore", "public_addr", "ceph_version"))
        disk = m.add("untyped", "ceph_disk_occupation", "Associate Ceph daemon with disk used",
                     ("ceph_daemon", "device", "db_device", "wal_device", "instance", "devices", "device_ids"))
        human = m.add("untyped", "ceph_disk_occupation_human", "Associate Ceph daemon with disk used",
                      ("ceph_daemon", "device", "instance"))
        status = {s: m.add("untyped", "ceph_osd_" + s, "OSD status " + s, ("ceph_daemon",)) for s in OSD_STATUS}
        for osd in osd_map.get("osds", []):
            oid = osd["osd"]
            d = "osd.%d" % oid
            md = self.get_metadata("osd", str(oid)) or {}
            meta.set(1, (md.get("back_iface", ""), d, str(osd.get("cluster_addr", "")).split(":")[0],
                         classes.get(oid, ""), md.get("front_iface", ""), md.get("hostname", ""),
                         md.get("osd_objectstore", ""), str(osd.get("public_addr", "")).split(":")[0],
                         md.get("ceph_version", "")))
            if md:
                disk.set(1, (d, md.get("bluestore_bdev_dev_node", ""), "", "", md.get("hostname", ""),
                             md.get("devices", ""), md.get("device_ids", "N/A") or "N/A"))
                human.set(1, (d, md.get("bluestore_bdev_dev_node", ""), md.get("hostname", "")))
            for s in OSD_STATUS:
                status[s].set(osd.get(s, 0), (d,))
        lat = {s: m.add("gauge", "ceph_osd_" + s, "OSD stat " + s, ("ceph_daemon",)) for s in OSD_STATS}
        for st in (self.get("osd_stats") or {}).get("osd_stats", []):
            perf = st.get("perf_stat", {})
            for s in OSD_STATS:
                lat[s].set(perf.get(s, 0), ("osd.%d" % st["osd"],))

    def _pools(self, m, osd_map):
        meta = m.add("untyped", "ceph_pool_metadata", "POOL Metadata",
                     ("pool_id", "name", "type", "description", "compression_mode"))
        for p in osd_map.get("pools", []):
            kind = "erasure" if p.get("type") == 3 else "replicated"
            meta.set(1, (p["pool"], p["pool_name"], kind, "replica:%s" % p.get("size"), "none"))
        # Daemon kinds Kalmar does not have: empty families, as Ceph
        # prints them on a cluster without such daemons.
        for kind, desc in (("fs", "FS Metadata"), ("mds", "MDS Metadata"), ("rgw", "RGW Metadata"),
                           ("rbd_mirror", "RBD Mirror Metadata")):
            m.add("untyped", "ceph_%s_metadata" % kind, desc)
        m.add("gauge", "ceph_daemon_health_metrics", "Health metrics for Ceph daemons", ("type", "ceph_daemon"))
        repaired = m.add("counter", "ceph_pool_objects_repaired", "Number of objects repaired in a pool", ("pool_id",))
        # pool_stats, not pg_dump: the same per-pool sums without every
        # PG's and OSD's stats (a scrape at 1,000 OSDs pays for each get).
        for ps in (self.get("pool_stats") or {}).get("pool_stats", []):
            repaired.set(ps.get("stat_sum", {}).get("num_objects_repaired", 0), (ps["poolid"],))
        rec = {s: m.add("gauge", "ceph_pool_" + s, "OSD pool stats: " + s, ("pool_id",)) for s in POOL_RECOVERY}
        for ps in (self.get("osd_pool_stats") or {}).get("pool_stats", []):
            rates = dict(ps.get("recovery", {}))
            rates.update(ps.get("recovery_rate", {}))
            for s in POOL_RECOVERY:
                rec[s].set(rates.get(s, 0), (ps["pool_id"],))

    def _pgs(self, m, osd_map):
        summary = self.get("pg_summary") or {}
        total = m.add("gauge", "ceph_pg_total", "PG Total Count per Pool", ("pool_id",))
        per_state = {s: m.add("gauge", "ceph_pg_" + s, "PG %s per pool" % s, ("pool_id",)) for s in PG_STATES}
        by_pool = summary.get("by_pool", {})
        for p in osd_map.get("pools", []):
            pid = str(p["pool"])
            counts = dict.fromkeys(PG_STATES, 0)
            n = 0
            for state_name, count in by_pool.get(pid, {}).items():
                n += count
                for s in state_name.split("+"):
                    if s in counts:
                        counts[s] += count
            total.set(n, (pid,))
            for s, c in counts.items():
                per_state[s].set(c, (pid,))
            # The names Ceph's dashboards still query for these two states
            # (renamed backfilling and backfill_wait in Luminous).
            for old_name, state in (("backfill", "backfilling"), ("wait_backfill", "backfill_wait")):
                m.add("gauge", "ceph_pg_" + old_name, "PG %s per pool" % state, ("pool_id",)).set(
                    counts[state], (pid,))
        unclean = sum(c for st, c in summary.get("all", {}).items() if "clean" not in st.split("+"))
        m.add("gauge", "ceph_unclean_pgs", "No. of PGs in an unclean state").set(unclean)
        sums = summary.get("pg_stats_sum", {}).get("stat_sum", {})
        for s in NUM_OBJECTS:
            m.add("gauge", "ceph_num_objects_" + s, "Number of %s objects" % s).set(sums.get("num_objects_" + s, 0))

    def _df(self, m):
        df = self.get("df") or {}
        for s in CLUSTER_DF:
            m.add("gauge", "ceph_cluster_" + s, "DF " + s).set(df.get("stats", {}).get(s, 0))
        fams = {s: m.add("gauge", "ceph_pool_" + s, "DF pool " + s, ("pool_id",)) for s in POOL_GAUGES}
        fams.update({s: m.add("counter", "ceph_pool_" + s, "DF pool " + s, ("pool_id",)) for s in POOL_COUNTERS})
        for p in df.get("pools", []):
            for s, fam in fams.items():
                fam.set(p.get("stats", {}).get(s, 0), (p["id"],))

    def _perf(self, m):
        for daemon, counters in self.get_all_perf_counters().items():
            for path, c in counters.items():
                name = metric_name(path)
                ctype = c["type"]
                time = ctype & self.PERFCOUNTER_TIME
                if ctype & self.PERFCOUNTER_HISTOGRAM:
                    continue
                value = c["value"] / 1e9 if time else c["value"]
                if ctype & self.PERFCOUNTER_LONGRUNAVG:
                    m.add("counter", name + "_sum", c["description"] + " Total", ("ceph_daemon",)).set(value, (daemon,))
                    m.add("counter", name + "_count", c["description"] + " Count", ("ceph_daemon",)).set(c.get("count", 0), (daemon,))
                else:
                    mtype = "counter" if ctype & self.PERFCOUNTER_COUNTER else "gauge"
                    m.add(mtype, name, c["description"], ("ceph_daemon",)).set(value, (daemon,))

    def collect(self):
        """The whole /metrics text."""
        m = Metrics()
        self._health(m)
        self._mon(m)
        self._mgr(m)
        osd_map = self.get("osd_map") or {}
        self._osds(m, osd_map)
        self._pools(m, osd_map)
        self._pgs(m, osd_map)
        self._df(m)
        if not self.get_module_option("exclude_perf_counters"):
            self._perf(m)
        return m.text()

    @CLIReadCommand("prometheus metrics")
    def metrics_command(self):
        """Print what /metrics serves"""
        return HandleCommandResult(0, self.collect(), "")

    # ---- HTTP -------------------------------------------------------------
    def _handler(self):
        module = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] == "/metrics":
                    try:
                        with module._lock:
                            body = module.collect().encode()
                        reply(self, 200, "text/plain; version=0.0.4; charset=utf-8", body)
                    except Exception as e:
                        module.log.exception("collecting metrics failed")
                        reply(self, 500, "text/plain", ("collecting metrics failed: %s\n" % e).encode())
                elif self.path == "/":
                    reply(self, 200, "text/html",
                                b'<html><head><title>Kalmar exporter</title></head><body>'
                                b'<a href="/metrics">Metrics</a></body></html>')
                else:
                    reply(self, 404, "text/plain", b"not found\n")

            def log_message(self, fmt, *args):
                module.log.debug("http: " + fmt, *args)

        return Handler

    @property
    def bound_port(self):
        return self._http.port

    def serve(self):
        addr = self.get_module_option("server_addr")

        def bound(port):
            self.set_uri("http://%s:%d/" % (addr, port))
            self.log.info("serving metrics on http://%s:%d/metrics", addr, port)

        self._http.run(addr, self.get_module_option("server_port"), self._handler(), bound)

    def shutdown(self):
        self._http.stop()
