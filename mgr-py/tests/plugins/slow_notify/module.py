import time

from mgr_module import MgrModule, NotifyType


class Module(MgrModule):
    COMMANDS = [{"cmd": "slow ping", "desc": "answers while notify sleeps", "perm": "r"}]
    NOTIFY_TYPES = [NotifyType.osd_map]

    def notify(self, notify_type, notify_id):
        time.sleep(60)

    def handle_command(self, inbuf, cmd):
        return 0, "pong", ""
