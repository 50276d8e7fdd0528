"""Glue the Rust host calls: load a plugin folder, describe it, construct
it, and dispatch a command to it. Errors come back as text, never as a
crash of the host."""

import importlib.util
import inspect
import json
import sys
import traceback

import mgr_module
from mgr_module import MgrModule, _COMMON_OPTIONS, _cli_commands


def _option_json(o):
    """Ceph's `module ls` option shape."""
    def s(v):
        return "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
    return {
        "name": o["name"],
        "type": o.get("type", "str"),
        "level": o.get("level") or "advanced",
        "flags": 1 if o.get("runtime") else 0,
        "default_value": s(o.get("default")),
        "min": s(o.get("min")),
        "max": s(o.get("max")),
        "enum_allowed": [str(e) for e in (o.get("enum_allowed") or [])],
        "desc": o.get("desc") or "",
        "long_desc": o.get("long_desc") or "",
        "tags": list(o.get("tags") or []),
        "see_also": list(o.get("see_also") or []),
    }


def load(name, folder):
    """Imports folder/name as package `name`; returns (Module class, JSON
    description). Raises on any failure (the host records the text)."""
    path = folder + "/" + name
    init = path + "/__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, init if _exists(init) else path + "/module.py",
        submodule_search_locations=[path])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    try:
        spec.loader.exec_module(pkg)
        cls = _module_class(name, pkg)
        if cls is None and not hasattr(pkg, "Module"):
            cls = _module_class(name, importlib.import_module(name + ".module"))
    except BaseException:
        sys.modules.pop(name, None)
        raise
    if cls is None:
        raise TypeError("%s exports no subclass of MgrModule (as Ceph, the package's "
                        "MgrModule subclass is the module, whatever its name)" % path)
    return cls, json.dumps(describe(cls))


def _module_class(name, pkg):
    """The MgrModule subclass a package exports, as Ceph picks it: any
    name (``alerts`` exports ``Alerts``). ``Module`` wins when there are
    several; a subclass defined in the package wins over an imported one."""
    found = [v for v in vars(pkg).values()
             if inspect.isclass(v) and issubclass(v, MgrModule) and v is not MgrModule]
    if not found:
        return None
    named = [c for c in found if c.__name__ == "Module"]
    if named:
        return named[0]
    own = [c for c in found if (c.__module__ or "").split(".")[0] == name]
    return (own or found)[0]


# Keys of a COMMANDS entry the host reads; modules add their own (crash
# keeps its handler function under 'handler'), which stay in the class.
_COMMAND_KEYS = ("cmd", "desc", "perm", "poll")


def describe(cls):
    commands = [{k: c[k] for k in _COMMAND_KEYS if k in c}
                for c in getattr(cls, "COMMANDS", []) if isinstance(c, dict) and "cmd" in c]
    commands += [c.dump_cmd() for c in _cli_commands(cls).values()]
    for c in commands:
        c.setdefault("desc", "")
        c.setdefault("perm", "rw")
        c["poll"] = bool(c.get("poll", False))
    options = {}
    for o in list(_COMMON_OPTIONS) + list(getattr(cls, "MODULE_OPTIONS", [])):
        options[o["name"]] = _option_json(o)
    declares = any("NOTIFY_TYPES" in vars(k) for k in cls.__mro__ if k is not MgrModule)
    notify_types = [str(getattr(t, "value", t)) for t in cls.NOTIFY_TYPES] if declares else None
    try:
        ok, why = cls.can_run()
    except Exception as e:  # a broken can_run means it cannot run
        ok, why = False, "can_run() raised %r" % e
    overrides_notify = cls.notify is not MgrModule.notify
    return {
        "commands": commands,
        "options": options,
        "notify_types": notify_types if overrides_notify else [],
        "can_run": bool(ok),
        "error_string": str(why or ""),
    }


def _exists(p):
    try:
        open(p).close()
        return True
    except OSError:
        return False


def instantiate(cls, name, handle):
    inst = cls(name, handle)
    mgr_module._register_instance(name, inst)
    return inst


def _result(ret):
    if isinstance(ret, tuple) and len(ret) == 3:
        r, out, err = ret
    elif isinstance(ret, str):
        r, out, err = 0, ret, ""
    elif isinstance(ret, (dict, list)):
        r, out, err = 0, json.dumps(ret), ""
    else:
        return -22, "", "handler returned %r, not (retval, stdout, stderr)" % (ret,)
    if isinstance(out, bytes):
        out = out.decode("utf-8", "replace")
    if isinstance(err, bytes):
        err = err.decode("utf-8", "replace")
    return int(r), "" if out is None else str(out), "" if err is None else str(err)


def dispatch(instance, cmd_json, inbuf):
    """Runs one command: the @CLICommand handler for its prefix if any,
    else handle_command. Any exception becomes -EINVAL with a traceback."""
    try:
        cmd = json.loads(cmd_json)
        cli = _cli_commands(type(instance)).get(cmd.get("prefix"))
        if cli is not None:
            return _result(cli.call(instance, cmd, inbuf))
        handler = instance.handle_command
        params = [p for p in inspect.signature(handler).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        # Luminous-era plugins (the seed's hello) take only `cmd`.
        if len(params) == 1:
            return _result(handler(cmd))
        return _result(handler(inbuf, cmd))
    except Exception:
        return -22, "", traceback.format_exc()


def call_hook(instance, hook, *args):
    """Calls serve/shutdown/notify/config_notify; returns None or the
    traceback text."""
    if hook == "shutdown":
        # remote() calls to a module being stopped fail from now on.
        mgr_module._unregister_instance(instance)
    try:
        getattr(instance, hook)(*args)
        return None
    except Exception:
        return traceback.format_exc()


def notify(instance, notify_type, notify_id):
    try:
        t = mgr_module.NotifyType(notify_type)
    except ValueError:
        t = notify_type
    return call_hook(instance, "notify", t, notify_id)
