from .module import Registry  # noqa: F401
