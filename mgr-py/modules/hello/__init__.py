# __init__.py
from .module import *  # NOQA
