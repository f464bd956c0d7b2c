"""The one error tree of Local Swarm, split by whose fault a failure is.

    LocalSwarmError
    ├── ConfigError            the user's setup: a bad key or value, a key file, no LAN address
    │   ├── swarm_key.SwarmKeyError
    │   ├── lan.NoLanAddressError
    │   └── mdns.DiscoveryUnavailable   (mDNS cannot run here: use manual peers)
    ├── RequestError           a client sent something we refuse: rendered as a 4xx OpenAI body
    │   ├── backend.ContextOverflowError
    │   ├── constraint.ConstraintError  (a schema or regex too complex to enforce)
    │   └── approval.ApprovalError
    ├── PeerError              a peer misbehaved or vanished: refused, timed out, bad bytes
    │   ├── messages.WireDecodeError    (peer data that is not a valid message)
    │   ├── txt.TxtError                (an mDNS record that is not a valid advert)
    │   ├── probe.ProbeFailed           (a heartbeat probe got no valid answer)
    │   │   ├── probe.ProbeRefused      (signed with another swarm's key)
    │   │   ├── probe.PortClosed        (the host refused: nothing listens, the process is gone)
    │   │   ├── probe.ProbeTimedOut     (no accept or answer in time; maybe our own loop ran late)
    │   │   └── probe.NetworkUnreachable (this node's own network is down)
    │   └── chain.SpanChainError        (a generation through the span chain failed: 502)
    ├── EngineError            this machine's engine cannot do the work
    │   ├── store.ModelError            (the model cannot be found or loaded)
    │   ├── PoolBusyError               (every instance's queue is full: 429)
    │   │   └── InstanceClosedError     (the node is shutting down)
    │   ├── environment.SpanRuntimeError (the span runtime cannot be built or started)
    │   │   └── client.SpanGenerationError  (its distributed client failed a generation)
    │   └── scripted.ScriptedError      (a scripted test backend told to fail)
    └── ConsensusError         no candidate gave a usable answer (502, or 429 when all were busy)
        └── ConsensusTimeout            (the deadline passed before a quorum: 504)

Each subclass lives beside the code that raises it and also keeps the builtin base it always had
(`ValueError`, `RuntimeError`, `TimeoutError`), so older `except` clauses still catch it. Library
exceptions are translated at the adapter that owns the library and raised `from` the original.
"""
from __future__ import annotations

from typing import Any


class LocalSwarmError(Exception):
    """The root of every error Local Swarm raises on purpose."""


class ConfigError(LocalSwarmError, ValueError):
    """A configuration key is unknown or its value is bad; the message names the key and source."""


class RequestError(LocalSwarmError, ValueError):
    """A client sent bad input; rendered as an OpenAI error body with a 4xx status."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.type = type_
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """OpenAI's `{"error": {...}}` body."""
        return {"error": {"message": str(self), "type": self.type, "param": self.param,
                          "code": self.code}}


class PeerError(LocalSwarmError, RuntimeError):
    """A peer misbehaved or vanished (refused, timed out, bad answer); `node_id` names it when
    known, `status` is its HTTP status if it answered."""

    def __init__(self, message: str, *, node_id: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(f"peer {node_id}: {message}" if node_id else message)
        self.node_id = node_id
        self.status = status


class EngineError(LocalSwarmError, RuntimeError):
    """This machine's inference engine cannot do the work (model missing, queues full, crash)."""


class PoolBusyError(EngineError):
    """Every instance's queue is full; retry after `retry_after_s` (429 with Retry-After). Here,
    not beside the pool, because the pure source chooser raises it too."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"all instances are busy; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class InstanceClosedError(PoolBusyError):
    """The instance is closing (the node shuts down): busy for good, so callers send the work
    elsewhere or answer 429 as for full queues."""

    def __init__(self, index: int) -> None:
        EngineError.__init__(self, f"instance {index} is closed: the node is shutting down")
        self.retry_after_s = 1
