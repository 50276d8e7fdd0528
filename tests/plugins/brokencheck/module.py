"""A plugin that cannot load (a syntax error on purpose): enabling it with
--force must show MGR_MODULE_ERROR in `kalmar health`."""

from mgr_module import MgrModule


class Module(MgrModule)
    pass
