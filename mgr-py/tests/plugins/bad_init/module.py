from mgr_module import MgrModule


class Module(MgrModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        raise ValueError("constructor refuses")
