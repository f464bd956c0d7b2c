"""Runs inside the span venv. petals 2.2.0.post1 was written for hivemind 1.1.10.post2, which
re-exported `hivemind.compression`, `hivemind.p2p` and most of `hivemind.utils.*` at its top level;
hivemind 1.1.12 (the first whose wheel ships p2pd, so it installs offline) trimmed those. `apply()`
puts the missing names back before petals is imported; nothing existing is overwritten.
"""
import importlib

_UTILS = ("asyncio", "limits", "logging", "mpfuture", "nested", "networking", "performance_ema",
          "serializer", "streaming", "tensor_descr", "timed_storage")
_applied = False


def _reexport(target, module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        if hasattr(module, name) and not hasattr(target, name):
            value = getattr(module, name)
            if type(value).__name__ != "module":
                setattr(target, name, value)


def apply():
    """Put hivemind <= 1.1.11's top-level names back (idempotent)."""
    global _applied
    if _applied:
        return
    import hivemind
    import hivemind.utils

    _reexport(hivemind, importlib.import_module("hivemind.compression"))
    _reexport(hivemind, importlib.import_module("hivemind.p2p"))
    for sub in _UTILS:
        module = importlib.import_module("hivemind.utils." + sub)
        _reexport(hivemind.utils, module)
        _reexport(hivemind, module)
    _applied = True
