"""Kalmar's implementation of Ceph's ``mgr_module`` API for mgr plugins.

A plugin is ``NAME/module.py`` defining ``class Module(MgrModule)``. The
host (crate kalmar-mgr-py) constructs it as ``Module(module_name, handle)``
and calls ``serve()`` on its own thread, ``notify()`` on another, and
``handle_command()`` (or a ``@CLICommand`` handler) on command threads.
Every accessor reads snapshots kept by the mgr: none of them waits on the
network except ``mon_command``, which releases the GIL while it waits.
"""

import enum
import errno
import functools
import inspect
import json
import logging
import threading
import typing
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import _kalmar_mgr
import ceph_argparse

# PG state names, in Ceph's order (prometheus exports one metric per state).
PG_STATES = [
    "active", "clean", "down", "recovery_unfound", "backfill_unfound",
    "scrubbing", "degraded", "inconsistent", "peering", "repair",
    "recovering", "forced_recovery", "backfill_wait", "incomplete", "stale",
    "remapped", "deep", "backfilling", "forced_backfill", "backfill_toofull",
    "recovery_wait", "recovery_toofull", "undersized", "activating", "peered",
    "snaptrim", "snaptrim_wait", "snaptrim_error", "creating", "unknown",
    "premerge", "failed_repair", "laggy", "wait",
]


class NotifyType(str, enum.Enum):
    mon_map = "mon_map"
    pg_summary = "pg_summary"
    health = "health"
    clog = "clog"
    osd_map = "osd_map"
    fs_map = "fs_map"
    command = "command"
    service_map = "service_map"
    mon_status = "mon_status"
    perf_schema_update = "perf_schema_update"


class HandleCommandResult(NamedTuple):
    retval: int = 0
    stdout: str = ""
    stderr: str = ""


class CommandResult(object):
    """The answer of a command sent with ``MgrModule.send_command``:
    ``wait()`` blocks until it is complete and returns (r, outb, outs)."""

    def __init__(self, tag: Optional[str] = None):
        self.ev = threading.Event()
        self.outs = ""
        self.outb = ""
        self.r = 0
        self.tag = tag or ""

    def complete(self, r: int, outb: str, outs: str) -> None:
        self.r = r
        self.outb = outb
        self.outs = outs
        self.ev.set()

    def wait(self) -> Tuple[int, str, str]:
        self.ev.wait()
        return self.r, self.outb, self.outs


# Commands from send_command in flight at once, over all modules: a caller
# past the bound waits for a slot instead of starting another thread.
_SEND_COMMAND_SLOTS = threading.BoundedSemaphore(16)


class MonCommandFailed(RuntimeError):
    pass


class ClusterLogPrio(enum.IntEnum):
    DEBUG = 0
    INFO = 1
    SEC = 2
    WARN = 3
    ERROR = 4


class Option(dict):
    """A module option declaration (a dict, as in Ceph)."""

    def __init__(self, name, default=None, type="str", desc=None,
                 long_desc=None, min=None, max=None, enum_allowed=None,
                 tags=None, see_also=None, runtime=False, level=None):
        super().__init__(
            (k, v) for k, v in (
                ("name", name), ("default", default), ("type", type),
                ("desc", desc), ("long_desc", long_desc), ("min", min),
                ("max", max), ("enum_allowed", enum_allowed),
                ("tags", tags), ("see_also", see_also),
                ("runtime", runtime), ("level", level),
            ) if v is not None or k == "default"
        )


class Command(dict):
    """A legacy COMMANDS entry."""

    def __init__(self, prefix, args=None, desc=None, poll=False, perm="rw"):
        cmd = prefix + (" " + args if args else "")
        super().__init__(cmd=cmd, desc=desc or "", poll=poll, perm=perm)


class CLICommand:
    """``@CLICommand('prefix words', perm='rw')`` on a type-annotated method.

    The docstring is the help text, each parameter an argument (see
    ceph_argparse). A parameter named ``inbuf`` gets the input buffer, one
    named ``format`` the requested output format.
    """

    def __init__(self, prefix: str, perm: str = "rw", poll: bool = False):
        self.prefix = prefix
        self.perm = perm
        self.poll = poll
        self.func = None
        self.arg_types = {}
        self.first_default = None
        self.desc = ""
        self.args = ""

    def _build(self, func):
        sig = inspect.signature(func)
        try:
            hints = typing.get_type_hints(func)
        except Exception:
            hints = {}
        descs = []
        for i, (name, p) in enumerate(sig.parameters.items()):
            if i == 0 or name in ("inbuf", "format", "self"):
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            ann = hints.get(name, p.annotation)
            desc, tp = ceph_argparse.arg_spec(name, ann, p.default is not p.empty)
            self.arg_types[name] = tp
            descs.append(desc)
        self.args = " ".join(descs)
        self.desc = inspect.getdoc(func) or ""

    def __call__(self, func):
        self.func = func
        self._build(func)
        func._cli_command = self
        return func

    # Ceph 18+'s spelling of CLIReadCommand / CLIWriteCommand.
    @classmethod
    def Read(cls, prefix: str, poll: bool = False):
        return cls(prefix, "r", poll)

    @classmethod
    def Write(cls, prefix: str, poll: bool = False):
        return cls(prefix, "w", poll)

    def dump_cmd(self) -> Dict[str, Any]:
        cmd = self.prefix + (" " + self.args if self.args else "")
        return {"cmd": cmd, "desc": self.desc, "perm": self.perm, "poll": self.poll}

    def call(self, mgr, cmd: Dict[str, Any], inbuf: Optional[str]):
        sig = inspect.signature(self.func)
        kwargs = {}
        for i, (name, p) in enumerate(sig.parameters.items()):
            if i == 0:
                continue
            if name == "inbuf":
                kwargs[name] = inbuf
            elif name == "format":
                if "format" in cmd:
                    kwargs[name] = cmd["format"]
            elif name in cmd:
                kwargs[name] = ceph_argparse.convert_value(self.arg_types.get(name), cmd[name])
        return self.func(mgr, **kwargs)


class CLICommandBase(CLICommand):
    """Ceph 18+'s command registries: a module makes its own with
    ``XCLICommand = CLICommandBase.make_registry_subtype("XCLICommand")``,
    sets ``CLICommand = XCLICommand`` on its class and decorates handlers
    with ``@XCLICommand.Read('prefix')`` / ``.Write(...)`` (or the class
    itself, with a perm). Each registry keeps its commands in COMMANDS."""

    COMMANDS: Dict[str, "CLICommand"] = {}

    @classmethod
    def make_registry_subtype(cls, name: str):
        return type(name, (cls,), {"COMMANDS": {}})

    @classmethod
    def dump_cmd_list(cls) -> List[Dict[str, Any]]:
        return [c.dump_cmd() for c in cls.COMMANDS.values()]

    def __call__(self, func):
        func = super().__call__(func)
        type(self).COMMANDS[self.prefix] = self
        return func


# What a command handler returns (newer modules annotate with it).
HandlerFuncType = typing.Callable[..., Tuple[int, str, str]]


class CLIReadCommand(CLICommand):
    def __init__(self, prefix: str, poll: bool = False):
        super().__init__(prefix, "r", poll)


class CLIWriteCommand(CLICommand):
    def __init__(self, prefix: str, poll: bool = False):
        super().__init__(prefix, "w", poll)


def _cli_commands(cls) -> Dict[str, CLICommand]:
    out = {}
    for klass in reversed(cls.__mro__):
        for v in vars(klass).values():
            c = getattr(v, "_cli_command", None)
            if isinstance(c, CLICommand):
                out[c.prefix] = c
    return out


class _MgrLogHandler(logging.Handler):
    """Sends a module's log records into the mgr's log."""

    def __init__(self, handle):
        super().__init__()
        self._handle = handle

    def emit(self, record):
        try:
            self._handle.log(record.levelno, self.format(record))
        except Exception:
            self.handleError(record)


_OPTION_TYPES = ("str", "uint", "int", "float", "bool", "addr", "addrvec",
                 "uuid", "size", "secs")
_COMMON_OPTIONS = [
    Option("log_level", type="str", default="", runtime=True,
           enum_allowed=["", "critical", "debug", "error", "info", "warning"],
           desc="log level of this module"),
    Option("log_to_file", type="bool", default=False, runtime=True,
           desc="(accepted for compatibility; the mgr log is used)"),
    Option("log_to_cluster", type="bool", default=False, runtime=True,
           desc="also send this module's log to the cluster log"),
    Option("log_to_cluster_level", type="str", default="info", runtime=True,
           enum_allowed=["", "critical", "debug", "error", "info", "warning"],
           desc="lowest level sent to the cluster log"),
]


def _opt_from_str(opt: Dict[str, Any], raw: str):
    t = opt.get("type", "str")
    if t in ("uint", "int", "size", "secs"):
        return int(raw)
    if t == "float":
        return float(raw)
    if t == "bool":
        return raw.lower() in ("true", "1", "yes", "on")
    return raw


def _opt_to_str(opt: Dict[str, Any], value) -> str:
    """Validates a value against its declaration; returns the stored form."""
    t = opt.get("type", "str")
    name = opt["name"]
    if t == "bool":
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError("option %s: %r is not a boolean" % (name, value))
            value = value.lower() in ("true", "1", "yes", "on")
        return "true" if value else "false"
    if t in ("uint", "int", "size", "secs", "float"):
        try:
            v = float(value) if t == "float" else int(value)
        except (TypeError, ValueError):
            raise ValueError("option %s: %r is not a %s" % (name, value, t))
        if t == "uint" and v < 0:
            raise ValueError("option %s: %r is negative" % (name, value))
        lo, hi = opt.get("min"), opt.get("max")
        if lo is not None and lo != "" and v < float(lo):
            raise ValueError("option %s: %r is below the minimum %s" % (name, value, lo))
        if hi is not None and hi != "" and v > float(hi):
            raise ValueError("option %s: %r is above the maximum %s" % (name, value, hi))
        return str(v)
    s = str(value)
    allowed = opt.get("enum_allowed")
    if allowed and s not in [str(a) for a in allowed]:
        raise ValueError("option %s: %r is not one of %s" % (name, s, allowed))
    return s


# The map views live in their own file; Ceph's modules import them from here.
from _kalmar_osdmap import CRUSHMap, OSDMap, OSDMapIncremental  # noqa: E402

HealthChecksT = Dict[str, Dict[str, Any]]

# The version string modules see (insights parses it; pg_autoscaler and
# balancer compare release names): the Ceph API level Kalmar's mgr serves.
_VERSION = "ceph version 16.2.15 (kalmar-0.1.0) pacific (stable)"
_RELEASES = {12: "luminous", 13: "mimic", 14: "nautilus", 15: "octopus",
             16: "pacific", 17: "quincy", 18: "reef", 19: "squid", 20: "tentacle"}

# Ceph options that stock modules read with get_ceph_option (NATIVE_OPTIONS),
# with Ceph's defaults; the mgr's `config` document overrides them.
_CEPH_OPTION_DEFAULTS = {
    "mon_target_pg_per_osd": 100,
    "mon_max_pg_per_osd": 250,
    "target_max_misplaced_ratio": 0.05,
    "mon_pg_warn_min_per_osd": 0,
    "mon_pg_warn_max_object_skew": 10.0,
    "mgr_stats_period": 5,
    "mgr_tick_period": 2,
    "mon_osd_down_out_interval": 600,
    "osd_pool_default_size": 3,
    "osd_pool_default_min_size": 0,
    "osd_pool_default_pg_num": 32,
    "osd_pool_default_pg_autoscale_mode": "on",
    "mon_osd_full_ratio": 0.95,
    "mon_osd_nearfull_ratio": 0.85,
    "mon_osd_backfillfull_ratio": 0.9,
    "host": "localhost",
    "fsid": "",
    "keyring": "",
    "log_to_file": False,
    "mgr_module_path": "",
}

# Running module instances by name, for remote().
_INSTANCES_LOCK = threading.Lock()
_INSTANCES: Dict[str, "MgrModule"] = {}

# Progress events modules publish (Ceph shows them in `status`).
_PROGRESS_LOCK = threading.Lock()
_PROGRESS_EVENTS: Dict[str, Dict[str, Any]] = {}


def _register_instance(name: str, inst) -> None:
    with _INSTANCES_LOCK:
        _INSTANCES[name] = inst


def _unregister_instance(inst) -> None:
    with _INSTANCES_LOCK:
        for k in [k for k, v in _INSTANCES.items() if v is inst]:
            del _INSTANCES[k]


def progress_events() -> Dict[str, Dict[str, Any]]:
    """The published progress events (a copy)."""
    with _PROGRESS_LOCK:
        return {k: dict(v) for k, v in _PROGRESS_EVENTS.items()}


def _get_localized_key(prefix: str, key: str) -> str:
    return "{}/{}".format(prefix, key)


def CLICheckNonemptyFileInput(desc: str = "file"):
    """Decorator: the command needs a non-empty ``-i`` input."""
    def wrap(func):
        @functools.wraps(func)
        def check(*args, **kwargs):
            inbuf = kwargs.get("inbuf")
            if not inbuf:
                return -errno.EINVAL, "", "ERROR: empty %s, use -i <file>" % desc
            if not inbuf.strip():
                return -errno.EINVAL, "", "ERROR: %s is empty or holds only whitespace" % desc
            return func(*args, **kwargs)
        check.__signature__ = inspect.signature(func)
        return check
    return wrap


class API:
    """Ceph's ``API.expose``/``API.perm`` markers (informational here:
    every public method is reachable through remote())."""

    @staticmethod
    def expose(func):
        func._api_expose = True
        return func

    @staticmethod
    def perm(perm):
        def wrap(func):
            func._api_perm = perm
            return func
        return wrap


_DERIVED = ("health", "fs_map", "devices", "service_map", "mgr_ips", "config",
            "modified_config_options", "pg_progress", "active_clean_pgs")


class MgrModule:
    COMMANDS: List[Dict[str, Any]] = []
    MODULE_OPTIONS: List[Dict[str, Any]] = []

    # Priorities (PerfCountersBuilder::PRIO_*).
    PRIO_CRITICAL = 10
    PRIO_INTERESTING = 8
    PRIO_USEFUL = 5
    PRIO_UNINTERESTING = 2
    PRIO_DEBUGONLY = 0

    # Counter type bits (perfcounter_type_d).
    PERFCOUNTER_TIME = 1
    PERFCOUNTER_U64 = 2
    PERFCOUNTER_LONGRUNAVG = 4
    PERFCOUNTER_COUNTER = 8
    PERFCOUNTER_HISTOGRAM = 0x10
    PERFCOUNTER_TYPE_MASK = ~3

    # Units (unit_t).
    BYTES = 0
    NONE = 1

    # Cluster log priorities.
    ClusterLogPrio = ClusterLogPrio

    def __init__(self, module_name: str, handle=None, *args, **kwargs):
        if handle is None:
            raise RuntimeError("MgrModule must be constructed by the mgr")
        self._module_name = module_name
        self._handle = handle
        self._logger = logging.getLogger("mgr." + module_name)
        self._logger.propagate = False
        # Loggers are process-wide: a module enabled again replaces the
        # handler of its previous instance.
        for old in [x for x in self._logger.handlers if isinstance(x, _MgrLogHandler)]:
            self._logger.removeHandler(old)
        h = _MgrLogHandler(handle)
        h.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(h)
        self._logger.setLevel(logging.DEBUG)
        self._options = {o["name"]: o for o in _COMMON_OPTIONS}
        for o in type(self).MODULE_OPTIONS:
            self._options[o["name"]] = o

    # ---- identity and logging ------------------------------------------
    @property
    def module_name(self) -> str:
        return self._module_name

    @property
    def log(self) -> logging.Logger:
        return self._logger

    @classmethod
    def can_run(cls) -> Tuple[bool, str]:
        return True, ""

    def get_mgr_id(self) -> str:
        return self._handle.get_mgr_id()

    def have_mon_connection(self) -> bool:
        return self._handle.have_mon_connection()

    def cluster_log(self, channel: str, priority: int, message: str) -> None:
        self._handle.cluster_log(channel, int(priority), message)

    # ---- hooks a plugin overrides ---------------------------------------
    def serve(self) -> None:
        """Runs on its own thread; a long-running module blocks here until
        shutdown()."""

    def shutdown(self) -> None:
        """Asks serve() to return."""

    def notify(self, notify_type: NotifyType, notify_id: str) -> None:
        """Called on the module's notify thread for each NOTIFY_TYPES event."""

    def config_notify(self) -> None:
        """A module option changed."""

    def handle_command(self, inbuf: Optional[str], cmd: Dict[str, Any]):
        return HandleCommandResult(-errno.EINVAL, "", "No handler for '%s'" % cmd.get("prefix"))

    def self_test(self) -> None:
        pass

    # ---- cluster state ---------------------------------------------------
    def get(self, data_name: str):
        doc = self._handle.get(data_name)
        if doc is None and data_name in _DERIVED:
            return self._derived(data_name)
        return doc

    def _derived(self, name: str):
        """Documents the mgr has no native source for, in Ceph's shapes:
        built from the others (pg_progress, active_clean_pgs) or empty
        because Kalmar has no such service (fs_map, devices)."""
        if name == "health":
            # Before the mon's first digest: no check known yet.
            return {"json": json.dumps({"status": "HEALTH_OK", "checks": {}, "mutes": []})}
        if name == "fs_map":
            return {"epoch": 0, "default_fscid": -1, "filesystems": [], "standbys": [],
                    "compat": {"compat": {}, "ro_compat": {}, "incompat": {}},
                    "feature_flags": {"enable_multiple": False, "ever_enabled_multiple": False}}
        if name == "devices":
            return {"devices": []}
        if name == "service_map":
            return {"epoch": 0, "modified": "0.000000", "services": {}}
        if name == "mgr_ips":
            return {"ips": ["127.0.0.1"]}
        if name == "config":
            return {k: str(self.get_ceph_option(k)) for k in _CEPH_OPTION_DEFAULTS}
        if name == "modified_config_options":
            return {"options": []}
        pgs = (self._handle.get("pg_stats") or {}).get("pg_stats", [])
        if name == "active_clean_pgs":
            clean = [p for p in pgs if {"active", "clean"} <= set(p.get("state", "").split("+"))]
            return {"total_num_pgs": len(pgs), "pg_stats": clean}
        # pg_progress
        out = {}
        for p in pgs:
            ss = p.get("stat_sum", {})
            out[p["pgid"]] = {
                "num_bytes_recovered": ss.get("num_bytes_recovered", 0),
                "num_bytes": ss.get("num_bytes", 0),
                "reported_epoch": p.get("reported_epoch", 0),
                "state": p.get("state", ""),
            }
        return {"pgs": out, "pg_ready": bool(pgs)}

    def get_osdmap(self) -> OSDMap:
        # The three documents of one epoch: re-read if a new map landed
        # between the reads.
        for _ in range(3):
            dump = self._handle.get("osd_map") or {}
            crush = self._handle.get("osd_map_crush") or {}
            mappings = self._handle.get("pg_mappings") or {}
            if mappings.get("epoch") == dump.get("epoch"):
                break
        return OSDMap(dump, crush, mappings)

    def list_servers(self) -> List[Dict[str, Any]]:
        return self._handle.list_servers()

    def get_server(self, hostname: str):
        return self._handle.get_server(hostname)

    def get_metadata(self, svc_type: str, svc_id: str, default=None):
        m = self._handle.get_metadata(svc_type, str(svc_id))
        return default if m is None else m

    def get_daemon_status(self, svc_type: str, svc_id: str):
        return self._handle.get_daemon_status(svc_type, str(svc_id))

    # ---- perf counters ---------------------------------------------------
    def get_perf_schema(self, svc_type: str, svc_name: str) -> Dict[str, Any]:
        return self._handle.get_perf_schema(svc_type, str(svc_name))

    def get_counter(self, svc_type: str, svc_name: str, path: str) -> Dict[str, List]:
        return self._handle.get_counter(svc_type, str(svc_name), path)

    def get_latest_counter(self, svc_type: str, svc_name: str, path: str) -> Dict[str, Any]:
        return self._handle.get_latest_counter(svc_type, str(svc_name), path)

    def get_latest(self, daemon_type: str, daemon_name: str, counter: str) -> int:
        data = self.get_latest_counter(daemon_type, daemon_name, counter).get(counter)
        return data[1] if data else 0

    def get_latest_avg(self, daemon_type: str, daemon_name: str, counter: str) -> Tuple[int, int]:
        data = self.get_latest_counter(daemon_type, daemon_name, counter).get(counter)
        if data and len(data) == 3:
            return data[1], data[2]
        return 0, 0

    def get_all_perf_counters(self, prio_limit: int = PRIO_USEFUL,
                              services: Sequence[str] = ("mds", "mon", "osd", "rbd-mirror",
                                                         "rgw", "tcmu-runner")) -> Dict[str, Dict[str, Dict[str, Any]]]:
        return self._handle.get_all_perf_counters(int(prio_limit), list(services))

    # Reef+ names of the same calls.
    get_unlabeled_perf_schema = get_perf_schema
    get_unlabeled_counter = get_counter
    get_latest_unlabeled_counter = get_latest_counter
    get_unlabeled_counter_latest = get_latest
    get_unlabeled_perf_counters = get_all_perf_counters

    # ---- options ---------------------------------------------------------
    def _option(self, key: str) -> Dict[str, Any]:
        opt = self._options.get(key)
        if opt is None:
            raise RuntimeError("Config option '%s' is not in %s.MODULE_OPTIONS." % (key, self._module_name))
        return opt

    def _get_option(self, stored_key: str, key: str, default):
        opt = self._option(key)
        raw = self._handle.get_config(stored_key)
        if raw is None:
            # As Ceph: the declared default wins over the caller's.
            declared = opt.get("default")
            return default if declared is None else declared
        return _opt_from_str(opt, raw)

    def get_module_option(self, key: str, default=None):
        return self._get_option(key, key, default)

    def get_localized_module_option(self, key: str, default=None):
        local = self.get_mgr_id() + "/" + key
        self._option(key)
        if self._handle.get_config(local) is not None:
            return self._get_option(local, key, default)
        return self.get_module_option(key, default)

    def set_module_option(self, key: str, val) -> None:
        opt = self._option(key)
        self._handle.set_config(key, None if val is None else _opt_to_str(opt, val))

    def set_localized_module_option(self, key: str, val) -> None:
        opt = self._option(key)
        self._handle.set_config(self.get_mgr_id() + "/" + key, None if val is None else _opt_to_str(opt, val))

    # ---- store -----------------------------------------------------------
    def get_store(self, key: str, default: Optional[str] = None) -> Optional[str]:
        v = self._handle.get_store(key)
        return default if v is None else v

    def set_store(self, key: str, val: Optional[str]) -> None:
        self._handle.set_store(key, None if val is None else str(val))

    def get_store_prefix(self, key_prefix: str) -> Dict[str, str]:
        return self._handle.get_store_prefix(key_prefix)

    def get_localized_store(self, key: str, default: Optional[str] = None) -> Optional[str]:
        v = self._handle.get_store(self.get_mgr_id() + "/" + key)
        return self.get_store(key, default) if v is None else v

    def set_localized_store(self, key: str, val: Optional[str]) -> None:
        self.set_store(self.get_mgr_id() + "/" + key, val)

    # ---- health, mon, services --------------------------------------------
    def set_health_checks(self, checks: Dict[str, Dict[str, Any]]) -> None:
        self._handle.set_health_checks(json.dumps(checks))

    def mon_command(self, cmd_dict: Dict[str, Any], inbuf: Optional[str] = None) -> Tuple[int, str, str]:
        if isinstance(inbuf, str):
            inbuf = inbuf.encode()
        r, outb, outs = self._handle.mon_command(json.dumps(cmd_dict), inbuf or b"")
        return r, outb.decode("utf-8", "replace"), outs

    def check_mon_command(self, cmd_dict: Dict[str, Any], inbuf: Optional[str] = None) -> HandleCommandResult:
        r, outb, outs = self.mon_command(cmd_dict, inbuf)
        if r:
            raise MonCommandFailed("%s failed: %s retval: %d" % (cmd_dict.get("prefix"), outs, r))
        return HandleCommandResult(r, outb, outs)

    def send_command(self, result: CommandResult, svc_type: str, svc_id: str,
                     command: str, tag: str, inbuf: Optional[str] = None) -> None:
        """Sends ``command`` (a JSON string) without waiting: ``result`` is
        completed on another thread, then every module interested gets
        ``notify("command", tag)``. Only ``svc_type == "mon"`` is served."""
        if svc_type != "mon":
            result.complete(-errno.EINVAL, "",
                            "send_command to %s.%s: only the mon is reachable" % (svc_type, svc_id))
            self._handle.notify_all("command", tag)
            return
        try:
            cmd = json.loads(command) if isinstance(command, str) else dict(command)
        except ValueError as e:
            result.complete(-errno.EINVAL, "", "command is not JSON: %s" % e)
            self._handle.notify_all("command", tag)
            return
        _SEND_COMMAND_SLOTS.acquire()

        def run():
            try:
                r, outb, outs = self.mon_command(cmd, inbuf)
            except Exception as e:  # the mgr's side failed: report, never hang
                r, outb, outs = -errno.EIO, "", str(e)
            finally:
                _SEND_COMMAND_SLOTS.release()
            result.complete(r, outb, outs)
            self._handle.notify_all("command", tag)

        threading.Thread(target=run, name="send_command-%s" % tag, daemon=True).start()

    def set_uri(self, uri: str) -> None:
        self._handle.set_uri(uri)

    # ---- Ceph's helpers for text output -----------------------------------
    @staticmethod
    def to_pretty_iec(n: int) -> str:
        """``n`` with a binary suffix, rounded down (``"12 Ki"``); below
        10 Ki it is printed as is followed by a space."""
        for shift, suffix in ((60, "Ei"), (50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")):
            if n > (10 << shift):
                return "%d %s" % (n >> shift, suffix)
        return "%d " % n

    @staticmethod
    def get_pretty_row(elems: Sequence[str], width: int) -> str:
        """One table row: each element right-aligned in ``width / n``
        columns, separated by ``|``."""
        col = int(width / len(elems))
        return "|" + "".join("%s |" % str(e).rjust(col - 2) for e in elems)

    def get_pretty_header(self, elems: Sequence[str], width: int) -> str:
        col = int(width / len(elems))
        rule = "+" + ("-" * (col - 1) + "+") * len(elems) + "\n"
        return rule + self.get_pretty_row(elems, width) + "\n" + rule

    # ---- versions and options of the mgr itself ----------------------------
    @property
    def version(self) -> str:
        return _VERSION

    @property
    def release_name(self) -> str:
        return "pacific"

    def lookup_release_name(self, major: int) -> str:
        return _RELEASES.get(int(major), "unknown")

    def get_ceph_option(self, key: str):
        """A Ceph config option the stock modules read, with Ceph's default
        (Kalmar's mgr has no central config database yet). An option not in
        the table raises, as Ceph's does for an unknown option."""
        if key not in _CEPH_OPTION_DEFAULTS:
            raise RuntimeError("unrecognized config option '%s'" % key)
        return _CEPH_OPTION_DEFAULTS[key]

    def get_foreign_ceph_option(self, entity: str, key: str):
        return self.get_ceph_option(key)

    def get_mgr_ip(self) -> str:
        return "127.0.0.1"

    def get_ceph_conf_path(self) -> str:
        return ""

    def get_module_option_ex(self, module: str, key: str, default=None):
        if module == self._module_name:
            return self.get_module_option(key, default)
        with _INSTANCES_LOCK:
            other = _INSTANCES.get(module)
        if other is None:
            return default
        return other.get_module_option(key, default)

    def set_module_option_ex(self, module: str, key: str, val) -> None:
        if module == self._module_name:
            return self.set_module_option(key, val)
        with _INSTANCES_LOCK:
            other = _INSTANCES.get(module)
        if other is None:
            raise RuntimeError("module '%s' is not running" % module)
        other.set_module_option(key, val)

    # ---- other modules ---------------------------------------------------
    def remote(self, module_name: str, method_name: str, *args, **kwargs):
        """Calls ``method_name`` of the running module ``module_name`` (all
        modules share one interpreter in Kalmar). Raises ImportError if
        that module is not running, as Ceph does."""
        with _INSTANCES_LOCK:
            other = _INSTANCES.get(module_name)
        if other is None:
            raise ImportError("Module not found: %s is not enabled or not running" % module_name)
        return getattr(other, method_name)(*args, **kwargs)

    # ---- progress events -------------------------------------------------
    def update_progress_event(self, evid: str, desc: str, progress: float,
                              add_to_ceph_s: bool = True) -> None:
        with _PROGRESS_LOCK:
            _PROGRESS_EVENTS[evid] = {"message": desc, "progress": float(progress),
                                      "add_to_ceph_s": bool(add_to_ceph_s),
                                      "module": self._module_name}

    def complete_progress_event(self, evid: str) -> None:
        with _PROGRESS_LOCK:
            _PROGRESS_EVENTS.pop(evid, None)

    def clear_all_progress_events(self) -> None:
        with _PROGRESS_LOCK:
            _PROGRESS_EVENTS.clear()

    # ---- Ceph features Kalmar has no counterpart for ------------------------
    def get_daemon_health_metrics(self) -> Dict[str, List[Dict[str, Any]]]:
        return {}

    def add_osd_perf_query(self, query: Dict[str, Any]):
        """OSD perf queries are not supported: None, as Ceph answers a
        query it cannot register."""
        return None

    def remove_osd_perf_query(self, query_id: int) -> None:
        pass

    def get_osd_perf_counters(self, query_id: int):
        return None

    def set_device_wear_level(self, devid: str, wear_level: float) -> None:
        pass

    def is_authorized(self, arguments: Dict[str, str]) -> bool:
        return True

    @property
    def rados(self):
        raise ImportError("librados is not available on Kalmar's mgr")


class MgrStandbyModule:
    """What a module may do on a standby mgr (the host runs only active
    modules today; this keeps standby plugin code importable)."""

    MODULE_OPTIONS: List[Dict[str, Any]] = []

    def __init__(self, module_name: str, handle=None, *args, **kwargs):
        self._module_name = module_name
        self._handle = handle
        self._logger = logging.getLogger("mgr." + module_name + ".standby")

    @property
    def module_name(self) -> str:
        return self._module_name

    @property
    def log(self) -> logging.Logger:
        return self._logger

    def serve(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def get_mgr_id(self) -> str:
        return self._handle.get_mgr_id() if self._handle else ""

    def get_module_option(self, key: str, default=None):
        v = self._handle.get_config(key) if self._handle else None
        return default if v is None else v

    def get_store(self, key: str, default: Optional[str] = None) -> Optional[str]:
        v = self._handle.get_store(key) if self._handle else None
        return default if v is None else v

    def get_active_uri(self) -> str:
        return ""


__all__ = [
    "MgrModule", "MgrStandbyModule", "Option", "Command", "CLICommand", "CLICommandBase",
    "HandlerFuncType",
    "CLIReadCommand", "CLIWriteCommand", "HandleCommandResult",
    "NotifyType", "MonCommandFailed", "ClusterLogPrio", "OSDMap", "PG_STATES",
    "OSDMapIncremental", "CRUSHMap", "HealthChecksT", "CLICheckNonemptyFileInput",
    "API", "CommandResult",
]
