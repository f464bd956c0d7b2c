"""A node's zeroconf TXT record: short keys, every entry under 255 bytes, strict decoding."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from network.wire.fields import MAX_PRIORITY, MAX_TERM, is_identifier, is_unicode
from network.wire.messages import Heartbeat, NodeHeader
from network.wire.pairing import pairing_state
from swarm.errors import PeerError

SERVICE_TYPE = "_local-swarm._tcp.local."
MAX_ENTRY_BYTES = 254
MAX_FREE_TEXT_BYTES = 200
_INT = re.compile(r"[0-9]{1,19}", re.ASCII)
_PRIORITY = re.compile(r"0|-?[1-9][0-9]{0,3}", re.ASCII)  # canonical: no +, no -0, no 007
_FLOAT = re.compile(r"[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?", re.ASCII)
_REQUIRED = ("id", "boot", "v", "port")
_Value = bytes | str | None
# zeroconf's `properties` (bytes or str keys); a Mapping is invariant in its key type.
Properties = Mapping[bytes, _Value] | Mapping[str, _Value] | Mapping[bytes | str, _Value]


class TxtError(PeerError, ValueError):
    """A TXT record that is not a valid advert: garbage bytes, a missing key or a bad value."""


@dataclass(frozen=True, kw_only=True)
class PeerAdvert(NodeHeader):
    """What a node announces over mDNS; the swarm key appears only as its fingerprint."""

    fingerprint: str = ""
    model_id: str = ""
    instances: int = 0
    hardware: str = ""
    score: float = 0.0
    term: int = 0
    priority: int | None = 0  # coordinator priority; None ("-" on the wire): never coordinator
    pairing: str = ""  # "open", "fresh" or "" (network/wire/pairing.py); TXT key "pair"

    @classmethod
    def from_heartbeat(cls, heartbeat: Heartbeat, hardware: str = "") -> PeerAdvert:
        """The advert a static peer (`--peer HOST:PORT`, no mDNS) implies by its heartbeat."""
        return cls(node_id=heartbeat.node_id, boot_id=heartbeat.boot_id,
                   protocol=heartbeat.protocol, api_port=heartbeat.api_port,
                   fingerprint=heartbeat.swarm, model_id=heartbeat.model_id,
                   instances=heartbeat.instances, hardware=hardware,
                   score=heartbeat.bench_score, term=heartbeat.term,
                   priority=heartbeat.priority, pairing=heartbeat.pairing)


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits `max_bytes` (never splits a char)."""
    raw = text.encode("utf-8")
    return text if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", "ignore")


def encode(advert: PeerAdvert) -> dict[bytes, bytes]:
    """The zeroconf `properties` for `advert`; free text is truncated, bad ids raise `TxtError`."""
    for name in ("node_id", "boot_id"):
        if not is_identifier(getattr(advert, name)):
            raise TxtError(f"{name} {getattr(advert, name)!r} is not a valid identifier")
    if advert.fingerprint and not is_identifier(advert.fingerprint):
        raise TxtError(f"fingerprint {advert.fingerprint!r} is not a valid identifier")
    for name, value, lo, hi in (("protocol", advert.protocol, 0, 65535),
                                ("api_port", advert.api_port, 1, 65535),
                                ("instances", advert.instances, 0, 4096),
                                ("term", advert.term, 0, MAX_TERM)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise TxtError(f"{name} {value!r} is outside [{lo}, {hi}]")
    priority = advert.priority
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not -MAX_PRIORITY <= priority <= MAX_PRIORITY):
        raise TxtError(f"priority {priority!r} is neither None nor in [-{MAX_PRIORITY}, "
                       f"{MAX_PRIORITY}]")
    score = float(advert.score)
    if not math.isfinite(score) or score < 0:
        raise TxtError(f"score {advert.score!r} must be finite and not negative")
    entries = {"id": advert.node_id, "boot": advert.boot_id, "v": str(advert.protocol),
               "port": str(advert.api_port), "fp": advert.fingerprint,
               "model": truncate_utf8(advert.model_id, MAX_FREE_TEXT_BYTES),
               "inst": str(advert.instances),
               "hw": truncate_utf8(advert.hardware, MAX_FREE_TEXT_BYTES),
               "score": repr(score), "term": str(advert.term),
               "pri": "-" if priority is None else str(priority)}
    if advert.pairing:
        entries["pair"] = pairing_state(advert.pairing)
    return {key.encode("ascii"): value.encode("utf-8") for key, value in entries.items()}


def decode(properties: Properties) -> PeerAdvert:
    """The advert in zeroconf `properties` (bytes or str); unknown keys are ignored."""
    if not isinstance(properties, Mapping):
        raise TxtError(f"expected a mapping of TXT entries, got {type(properties).__name__}")
    values: dict[str, str] = {}
    for raw_key, raw_value in properties.items():
        if not isinstance(raw_key, bytes | str):
            raise TxtError(f"TXT key {raw_key!r} is not bytes")
        key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else raw_key
        if key not in _KEYS:
            continue
        if raw_value is None:
            raise TxtError(f"TXT key {key!r} has no value")
        value = _as_text(raw_value, f"value of {key!r}")
        if len(key.encode()) + 1 + len(value.encode()) > MAX_ENTRY_BYTES:
            raise TxtError(f"TXT entry {key!r} is over {MAX_ENTRY_BYTES} bytes")
        values[key] = value
    missing = [key for key in _REQUIRED if key not in values]
    if missing:
        raise TxtError(f"TXT record lacks {', '.join(missing)}")
    for key in ("id", "boot"):
        if not is_identifier(values[key]):
            raise TxtError(f"TXT {key} {values[key]!r} is not a valid identifier")
    fingerprint = values.get("fp", "")
    if fingerprint and not is_identifier(fingerprint):
        raise TxtError(f"TXT fp {fingerprint!r} is not a valid identifier")
    return PeerAdvert(
        node_id=values["id"], boot_id=values["boot"],
        protocol=_integer(values["v"], "v", 65535),
        api_port=_integer(values["port"], "port", 65535, lo=1),
        fingerprint=fingerprint, model_id=values.get("model", ""),
        instances=_integer(values.get("inst", "0"), "inst", 4096),
        hardware=values.get("hw", ""), score=_score(values.get("score", "0.0")),
        term=_integer(values.get("term", "0"), "term", MAX_TERM),
        priority=_priority(values.get("pri", "0")),
        pairing=pairing_state(values.get("pair", "")),
    )


def compatible(advert: PeerAdvert, protocol: int, fingerprint: str) -> tuple[bool, str]:
    """Whether we may use this peer; when not, a reason fit for `main.py peers` (foreign)."""
    if advert.protocol != protocol:
        return False, f"speaks protocol {advert.protocol}, we speak {protocol}"
    if advert.fingerprint != fingerprint:
        if not advert.fingerprint:
            return False, "runs without a swarm key, we have one"
        if not fingerprint:
            return False, f"belongs to a keyed swarm ({advert.fingerprint[:8]}), we have no key"
        return False, (f"belongs to another swarm (key {advert.fingerprint[:8]}, "
                       f"ours {fingerprint[:8]})")
    return True, "compatible"


_KEYS = frozenset({"id", "boot", "v", "port", "fp", "model", "inst", "hw", "score", "term",
                   "pri", "pair"})


def _as_text(raw: object, what: str) -> str:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TxtError(f"TXT {what} is not UTF-8") from exc
    if isinstance(raw, str):
        if not is_unicode(raw):
            raise TxtError(f"TXT {what} is not valid Unicode")
        return raw
    raise TxtError(f"TXT {what} is a {type(raw).__name__}, not bytes")


def _integer(text: str, key: str, hi: int, lo: int = 0) -> int:
    if not _INT.fullmatch(text) or not lo <= int(text) <= hi:
        raise TxtError(f"TXT {key} {text!r} is not an integer in [{lo}, {hi}]")
    return int(text)


def _priority(text: str) -> int | None:
    if text == "-":
        return None
    if not _PRIORITY.fullmatch(text) or not -MAX_PRIORITY <= int(text) <= MAX_PRIORITY:
        raise TxtError(f"TXT pri {text!r} is neither '-' nor an integer in "
                       f"[-{MAX_PRIORITY}, {MAX_PRIORITY}]")
    return int(text)


def _score(text: str) -> float:
    value = float(text) if _FLOAT.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise TxtError(f"TXT score {text!r} is not a finite number")
    return value
