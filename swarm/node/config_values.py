"""What each configuration value may be: the choices of the enumerated keys (also the command
line's), the check of every bounded key (its docstring is the hint an error gives), and `coerce`,
which turns a raw value from a file, the environment or the command line into the type of the
key's default and checks it, or raises `ConfigError` naming the key and where it came from."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensus.candidates import SCORE_MODES, STRATEGIES
from network.wire.fields import ID_PATTERN, is_identifier
from swarm.errors import ConfigError

BACKENDS = ("auto", "transformers", "llamacpp")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTS = ("auto", "f16", "f32", "file")  # llama.cpp weights: see swarm.engine.loader
LOG_LEVELS = ("debug", "info", "warning", "error")


def _positive(v: int) -> bool:
    return v >= 1


def _non_negative(v: int) -> bool:
    return v >= 0


def _port(v: int) -> bool:
    return 0 <= v <= 65535


def _choice(*options: str) -> Callable[[str], bool]:
    def check(v: str) -> bool:
        return v in options

    check.__doc__ = "one of " + ", ".join(options)
    return check


def _node_id(v: str) -> bool:
    return v == "" or is_identifier(v)


_node_id.__doc__ = f"empty (generated once) or a node id peers accept: {ID_PATTERN.pattern}"


def _fraction(v: float) -> bool:
    return 0.0 < v <= 600.0


def _between(low: int, high: int) -> Callable[[int], bool]:
    def check(v: int) -> bool:
        return low <= v <= high

    check.__doc__ = f"an integer from {low} to {high}"
    return check


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "api.port": _port,
    "api.max_body_bytes": _positive,
    "api.max_tokens_limit": _positive,
    "api.max_n": _positive,
    "api.max_prompt_tokens": _positive,
    "api.max_concurrent_per_client": _positive,
    "api.max_embedding_inputs": _positive,
    "api.max_embedding_tokens": _positive,
    "model.backend": _choice(*BACKENDS),
    "model.device": _choice(*DEVICES),
    "model.dtype": _choice(*DTYPES),
    "model.quant": _choice(*QUANTS),
    "model.instances": _positive,
    "model.threads": _non_negative,
    "model.queue_depth": _non_negative,
    "consensus.strategy": _choice(*STRATEGIES),
    "consensus.n": _positive,
    "consensus.timeout_s": _fraction,
    "consensus.score": _choice(*SCORE_MODES),
    "federation.heartbeat_interval_s": lambda v: 0.05 <= v <= 10.0,
    "model.store_limit_gb": lambda v: 0.0 < v <= 1e6,
    "federation.fetch_limit_mb_s": lambda v: 0.0 <= v <= 1e6,
    "federation.fetch_wait_s": lambda v: 0.0 < v <= 3600.0,
    "federation.node_id": _node_id,
    "federation.coordinator_priority": _between(-1000, 1000),
    "federation.join_request_ttl_s": lambda v: 1.0 <= v <= 3600.0,
    "log_level": _choice(*LOG_LEVELS),
    "spans.max_memory_gb": lambda v: 0.0 <= v <= 1_000_000.0,
    "spans.threads": _non_negative,
    "spans.dht_port": _port,
}


def coerce(key: str, raw: Any, default: Any, source: str) -> Any:
    """Convert `raw` to the type of `default` (strings from env are parsed), or fail naming `key`."""
    want = type(default)
    try:
        if isinstance(default, tuple):
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise TypeError
            value: Any = tuple(i.strip() for i in items if i.strip())
        elif want is bool:
            if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                value = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(raw, bool):
                value = raw
            else:
                raise TypeError
        elif want is int:
            if isinstance(raw, bool):
                raise TypeError
            value = int(raw) if isinstance(raw, str) else raw
            if not isinstance(value, int):
                raise TypeError
        elif want is float:
            if isinstance(raw, bool):
                raise TypeError
            value = float(raw) if isinstance(raw, str | int) else raw
            if not isinstance(value, float):
                raise TypeError
        else:
            if not isinstance(raw, str):
                raise TypeError
            value = raw
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} must be a {want.__name__}, got {raw!r}") from None
    check = _CHECKS.get(key)
    if check is not None and not check(value):
        hint = check.__doc__ or "see config.example.toml"
        raise ConfigError(f"{source}: {key} = {value!r} is not allowed ({hint})")
    return value
