"""The module's own command registry, as Ceph 18+ modules declare it."""

from mgr_module import CLICommandBase

RegistryCLICommand = CLICommandBase.make_registry_subtype("RegistryCLICommand")
