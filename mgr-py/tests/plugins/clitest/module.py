import enum
import json
from typing import List, Optional

from mgr_module import CLICommand, CLIReadCommand, CLIWriteCommand, HandleCommandResult, MgrModule


class Mode(enum.Enum):
    fast = "fast"
    slow = "slow"


class Module(MgrModule):
    @CLIReadCommand("cli echo")
    def echo(self, name: str, count: int = 1, loud: bool = False,
             tags: Optional[List[str]] = None, inbuf: Optional[str] = None):
        """Echo a name"""
        return HandleCommandResult(0, json.dumps(
            {"name": name, "count": count, "loud": loud, "tags": tags, "inbuf": inbuf}), "")

    @CLIWriteCommand("cli mode")
    def set_mode(self, mode: Mode, ratio: float = 1.0):
        """Set a mode"""
        assert isinstance(mode, Mode)
        return 0, json.dumps({"mode": mode.value, "ratio": ratio}), ""

    @CLICommand("cli fail", perm="rw")
    def fail(self):
        """Always raises"""
        raise ValueError("cli fail was asked to fail")

    def handle_command(self, inbuf, cmd):
        return 0, "fallback " + cmd["prefix"], ""
