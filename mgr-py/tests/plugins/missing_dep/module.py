"""A module whose Python dependency is not installed: can_run() says so,
as Ceph's influx does when python3-influxdb is missing."""

from mgr_module import MgrModule

try:
    import kalmar_no_such_package  # noqa: F401
    _MISSING = None
except ImportError as e:
    _MISSING = str(e)


class Module(MgrModule):
    @classmethod
    def can_run(cls):
        if _MISSING:
            return False, "kalmar_no_such_package python module not found"
        return True, ""
