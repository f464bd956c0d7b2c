"""Messages to and from bytes (msgpack or JSON), versioned, size-limited; sole msgpack user."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

import msgpack

from network.wire.fields import WireDecodeError, WireMessage

__all__ = ["JSON", "MAX_BYTES", "MAX_DEPTH", "MSGPACK", "WIRE_VERSION", "WireDecodeError",
           "decode", "decode_json", "deeper_than", "encode", "media_type"]

MSGPACK = "application/msgpack"
JSON = "application/json"
WIRE_VERSION = 1
MAX_BYTES = 1 << 20
MAX_DEPTH = 8
MAX_ARRAY_ITEMS = 1 << 17
MAX_MAP_KEYS = 256
_ALIASES = {MSGPACK: MSGPACK, "application/x-msgpack": MSGPACK, "application/vnd.msgpack": MSGPACK,
            JSON: JSON}

M = TypeVar("M", bound=WireMessage)


def media_type(content_type: str | None) -> str:
    """`MSGPACK` or `JSON` for a Content-Type header (parameters and case ignored), else raise."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return _ALIASES[base]
    except KeyError:
        raise WireDecodeError(f"unsupported content type {content_type!r}") from None


def encode(msg: WireMessage, content_type: str = MSGPACK, *, max_bytes: int = MAX_BYTES) -> bytes:
    """Serialize `msg` with the version tag; raise ValueError when it would exceed `max_bytes`."""
    kind = media_type(content_type)
    wire = {"v": WIRE_VERSION, **msg.to_wire()}
    if kind == MSGPACK:
        data: bytes = msgpack.packb(wire, use_bin_type=True)
    else:
        data = json.dumps(wire, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")
    if len(data) > max_bytes:
        raise ValueError(f"{type(msg).__name__} encodes to {len(data)} bytes, over {max_bytes}")
    return data


def decode(data: bytes, content_type: str | None, cls: type[M], *,
           max_bytes: int = MAX_BYTES) -> M:
    """Parse and validate one `cls` message; every failure raises `WireDecodeError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireDecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise WireDecodeError(f"message of {len(data)} bytes is over the {max_bytes}-byte limit")
    kind = media_type(content_type)
    try:
        obj = _unpack(bytes(data), max_bytes) if kind == MSGPACK else _parse_json(bytes(data))
    except WireDecodeError:
        raise
    except (ValueError, TypeError, RecursionError, OverflowError, msgpack.UnpackException) as exc:
        raise WireDecodeError(f"malformed {kind} body ({type(exc).__name__}: {exc})") from exc
    if deeper_than(obj, MAX_DEPTH):
        raise WireDecodeError(f"containers nested deeper than {MAX_DEPTH}")
    if not isinstance(obj, dict):
        raise WireDecodeError(f"expected a map at the top level, got {type(obj).__name__}")
    version = obj.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise WireDecodeError(f"unsupported wire version {version!r} (we speak {WIRE_VERSION})")
    try:
        return cls.from_wire(obj)
    except WireDecodeError:
        raise
    except (ValueError, TypeError) as exc:
        raise WireDecodeError(f"{cls.__name__}: {exc}") from exc


def decode_json(data: bytes, *, max_bytes: int = MAX_BYTES) -> Any:
    """A peer's plain JSON body that is not a wire message (the OpenAI reply to a forwarded
    request), under the same limits: size, nesting, keys per map, no duplicate keys, no NaN;
    every failure raises `WireDecodeError`."""
    if len(data) > max_bytes:
        raise WireDecodeError(f"body of {len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        obj = _parse_json(bytes(data))
    except WireDecodeError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise WireDecodeError(f"malformed JSON body ({type(exc).__name__}: {exc})") from exc
    if deeper_than(obj, MAX_DEPTH):
        raise WireDecodeError(f"containers nested deeper than {MAX_DEPTH}")
    return obj


def _unpack(data: bytes, max_bytes: int) -> Any:
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=True, use_list=True, max_buffer_size=max(max_bytes, 1),
        max_str_len=max_bytes, max_bin_len=max_bytes, max_array_len=MAX_ARRAY_ITEMS,
        max_map_len=MAX_MAP_KEYS, max_ext_len=0, ext_hook=_refuse_ext,
        object_pairs_hook=_unique_map)
    unpacker.feed(data)
    obj = unpacker.unpack()
    if unpacker.tell() != len(data):
        raise WireDecodeError(f"{len(data) - unpacker.tell()} bytes after the message")
    return obj


def _parse_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"), object_pairs_hook=_unique_map,
                      parse_constant=_refuse_constant)


def _unique_map(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if not isinstance(key, str):
            raise WireDecodeError(f"map key {key!r} is not a string")
        if key in out:
            raise WireDecodeError(f"duplicate map key {key!r}")
        out[key] = value
    if len(out) > MAX_MAP_KEYS:
        raise WireDecodeError(f"map with more than {MAX_MAP_KEYS} keys")
    return out


def _refuse_ext(code: int, data: bytes) -> Any:
    raise WireDecodeError(f"msgpack extension type {code} is not allowed")


def _refuse_constant(name: str) -> Any:
    raise WireDecodeError(f"JSON constant {name} is not allowed")


def deeper_than(value: Any, limit: int) -> bool:
    """True when decoded JSON or msgpack `value` nests containers (maps, lists) more than `limit`
    deep. Iterative, so hostile input cannot exhaust the stack: the one nesting check, for peer
    messages (`MAX_DEPTH`) and client bodies (network/api/limits.py) alike."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if depth > limit:
            return True
        children: Iterable[Any] = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)
    return False
