from mgr_module import MgrModule


class Module(MgrModule):
    def serve(self):
        raise RuntimeError("boom in serve")
