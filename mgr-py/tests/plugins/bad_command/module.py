from mgr_module import MgrModule


class Module(MgrModule):
    COMMANDS = [{"cmd": "bad command", "desc": "raises", "perm": "r"}]

    def handle_command(self, inbuf, cmd):
        raise KeyError("bad command handler exploded")
