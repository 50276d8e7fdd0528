"""Turns a CLICommand handler's type annotations into Ceph command
argument descriptors (``name=x,type=CephInt,req=false``).

Only what plugins use is here: int, float, bool, str, Optional[...],
List/Sequence of those (``n=N``), Enum subclasses (CephChoices) and the
marker classes below for Ceph-specific string types.
"""

import enum
import inspect
import typing


class CephArgtype:
    """Base of the marker types usable as annotations."""

    ceph_type = "CephString"


class CephPoolname(str, CephArgtype):
    ceph_type = "CephPoolname"


class CephObjectname(str, CephArgtype):
    ceph_type = "CephObjectname"


class CephPgid(str, CephArgtype):
    ceph_type = "CephPgid"


class CephOsdName(int, CephArgtype):
    ceph_type = "CephOsdName"


class CephUUID(str, CephArgtype):
    ceph_type = "CephUUID"


class CephFilepath(str, CephArgtype):
    ceph_type = "CephFilepath"


_SIMPLE = {int: "CephInt", float: "CephFloat", bool: "CephBool", str: "CephString"}


def _unwrap_optional(tp):
    """Optional[T] -> (T, True); T -> (T, False)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _is_sequence(tp):
    origin = typing.get_origin(tp)
    return origin in (list, tuple, typing.Sequence, typing.List) or (
        origin is not None and getattr(origin, "__name__", "") in ("Sequence", "List")
    )


def arg_spec(name, annotation, has_default):
    """Describes one parameter: returns (argdesc string, element type)."""
    tp, optional = _unwrap_optional(annotation)
    repeated = False
    if _is_sequence(tp):
        repeated = True
        inner = typing.get_args(tp)
        tp = inner[0] if inner else str
    parts = ["name=" + name]
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        parts.append("type=CephChoices")
        parts.append("strings=" + "|".join(str(m.value) for m in tp))
    elif inspect.isclass(tp) and issubclass(tp, CephArgtype):
        parts.append("type=" + tp.ceph_type)
    elif tp in _SIMPLE:
        parts.append("type=" + _SIMPLE[tp])
    elif annotation is inspect.Parameter.empty:
        parts.append("type=CephString")
    else:
        raise TypeError("parameter %s: unsupported annotation %r" % (name, annotation))
    if repeated:
        parts.append("n=N")
    if optional or has_default:
        parts.append("req=false")
    return ",".join(parts), tp


def convert_value(tp, value):
    """Converts a matched value to the annotated type (enums, ints)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [convert_value(tp, v) for v in value]
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return tp(value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value
