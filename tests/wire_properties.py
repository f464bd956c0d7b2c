"""The codec's properties, checked by each wire-message test module for its own messages
(tests/test_codec.py, tests/test_election_wire.py): a message round trips, any bytes decode or
raise the one `WireDecodeError`, and so does a wire map with a field replaced."""
from __future__ import annotations

import contextlib
import json

import msgpack
from hypothesis import strategies as st

from network.wire import codec
from network.wire.codec import JSON, MSGPACK, WireDecodeError
from network.wire.fields import ID_PATTERN, WireMessage

TYPES = (MSGPACK, JSON)
ids = st.from_regex(ID_PATTERN, fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def unit(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def check_round_trip(msg: WireMessage, content_type: str) -> None:
    data = codec.encode(msg, content_type)
    assert codec.decode(data, content_type, type(msg)) == msg


def check_bytes_decode_or_raise(data: bytes, cls: type[WireMessage], content_type: str) -> None:
    try:
        msg = codec.decode(data, content_type, cls)
    except WireDecodeError:
        return
    assert isinstance(msg, cls)


def check_wire_decodes_or_raises(wire: dict, cls: type, content_type: str) -> None:
    """`wire` (a mutated message map), where `content_type` can carry it, decodes as `cls` or
    raises WireDecodeError, never anything else."""
    try:
        body = msgpack.packb(wire) if content_type == MSGPACK else json.dumps(wire).encode()
    except (ValueError, TypeError, OverflowError):
        return  # not representable in this format
    with contextlib.suppress(WireDecodeError):
        codec.decode(body, content_type, cls)
