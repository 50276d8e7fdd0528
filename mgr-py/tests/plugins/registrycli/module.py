"""A module written for Ceph 18+'s API: a command registry of its own
(`CLICommandBase.make_registry_subtype`), `.Read`/`.Write` decorators,
and the Reef names of the perf-counter calls."""

from typing import Optional

from mgr_module import HandleCommandResult, MgrModule

from .cli import RegistryCLICommand


class Registry(MgrModule):
    CLICommand = RegistryCLICommand

    @RegistryCLICommand.Read("registry echo")
    def echo(self, word: str, times: Optional[int] = 1):
        """Repeat a word"""
        return HandleCommandResult(stdout=" ".join([word] * (times or 1)))

    @RegistryCLICommand.Write("registry counters")
    def counters(self):
        """The Reef-named perf counter calls"""
        all_ = self.get_unlabeled_perf_counters()
        one = self.get_unlabeled_counter("osd", "0", "osd.op_w")
        return HandleCommandResult(stdout="%d %d" % (len(all_), len(one["osd.op_w"])))
