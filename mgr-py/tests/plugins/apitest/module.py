"""Exercises the MgrModule API for the Rust tests: `api call METHOD
[ARGS_JSON]` calls self.METHOD(*args) and answers
{"type": <python type name>, "value": <result>}."""

import json
import threading

from mgr_module import MgrModule, NotifyType, Option


class Module(MgrModule):
    COMMANDS = [
        {"cmd": "api call name=method,type=CephString name=args,type=CephString,req=false",
         "desc": "call an API method", "perm": "r"},
        {"cmd": "api notifications", "desc": "notifications seen so far", "perm": "r"},
        {"cmd": "api log name=text,type=CephString", "desc": "log a line", "perm": "r"},
    ]
    MODULE_OPTIONS = [
        Option("interval", type="secs", default=60, min=1, max=3600, desc="an int option"),
        Option("ratio", type="float", default=0.5, desc="a float option"),
        Option("enabled_feature", type="bool", default=False, desc="a bool option"),
        Option("mode", type="str", default="fast", enum_allowed=["fast", "slow"], desc="an enum option"),
        {"name": "legacy_dict_option", "default": "x"},
    ]
    NOTIFY_TYPES = [NotifyType.osd_map, NotifyType.pg_summary, NotifyType.health,
                    NotifyType.mon_map, NotifyType.command]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []
        self.config_changes = 0
        self.event = threading.Event()

    def notify(self, notify_type, notify_id):
        self.seen.append([str(notify_type.value), notify_id, type(notify_type).__name__])

    def config_notify(self):
        self.config_changes += 1

    def serve(self):
        self.set_store("serve_state", "running")
        self.event.wait()
        self.set_store("serve_state", "stopped")

    def shutdown(self):
        self.event.set()

    def handle_command(self, inbuf, cmd):
        if cmd["prefix"] == "api notifications":
            return 0, json.dumps({"seen": self.seen, "config_changes": self.config_changes}), ""
        if cmd["prefix"] == "api log":
            self.log.warning("apitest says %s", cmd["text"])
            return 0, "", ""
        args = json.loads(cmd.get("args") or "[]")
        r = getattr(self, cmd["method"])(*args)
        return 0, json.dumps({"type": type(r).__name__, "value": r}, default=repr), ""
