"""Runs inside the span venv: runtime fixes for four petals 2.2.0 client problems.

1. `_ServerInferenceSession.__del__` blocks on the RemoteExpertWorker loop. When the garbage
   collector runs it on that loop's own thread, the loop waits for itself and `generate()` hangs
   forever; at interpreter exit the loop thread is gone and exit hangs. Fixed: never block there.
   (Found here; 2 to 3 hangs in about 30 runs before, none in 16 after.)
2. Replacing a dead server never works: the replacement session inherits the failed one's history
   but starts at position 0, so `step()` fails its own "Broken input cache" check on every retry
   (upstream bigscience-workshop/petals#587). Fixed: replay the history on the replacement.
3. A server that dies mid-step is only noticed after `request_timeout` (180 s by default). Fixed:
   a step also ends, with ConnectionError, as soon as `mark_gone(peer)` is called for its server,
   which our heartbeat (`watch_servers`) or the node does; petals then re-routes at once.
4. A failed server stays in the route: `on_request_failure` drops it from the block records but
   not from the spans the router walks, until the next routing update (`update_period`), so every
   retry before it dials the dead server again and the generation fails though a replica is up.
   Fixed: the spans are recomputed from the block records right after a failure.
"""
import asyncio
import os
import sys
import threading

import torch

_gone = set()  # base58 peer ids our heartbeat or the node declared gone
_waiters = {}  # base58 peer id -> set of asyncio.Event (on RemoteExpertWorker's loop)
_lock = threading.Lock()


def mark_gone(peer_ids):
    """Declare span servers gone: their pending steps fail now, so petals re-routes."""
    from hivemind.moe.client.remote_expert_worker import RemoteExpertWorker

    with _lock:
        _gone.update(peer_ids)
        events = [e for p in peer_ids for e in _waiters.get(p, ())]

    async def wake():
        for event in events:
            event.set()

    if events:
        RemoteExpertWorker.run_coroutine(wake(), return_future=True)


def forget_gone():
    """A new plan: every server may be used again."""
    with _lock:
        _gone.clear()


def active_peers():
    """Base58 ids of the servers with a step in flight."""
    with _lock:
        return [p for p, events in _waiters.items() if events]


def _install_del_fix(cls):
    from hivemind.moe.client.remote_expert_worker import RemoteExpertWorker

    def __del__(self):
        if getattr(self, "_outputs_stream", None) is None or sys.is_finalizing():
            return
        try:
            RemoteExpertWorker.run_coroutine(self._aclose_stream(), return_future=True)
        except Exception:  # noqa: BLE001 - a destructor must not raise
            pass

    cls.__del__ = __del__


def _install_failover_fix(cls):
    original_step = cls.step

    def step(self, inputs, prompts, hypo_ids, *, step_id):
        n = inputs.shape[1]
        if not self.stepped and self._position == 0 and self.history is not None \
                and self.history.shape[1] > n:
            full = self.history  # inherited from the failed server, ends with this step's inputs
            if not torch.equal(full[:, -n:], inputs):
                raise AssertionError("inherited history does not end with this step's inputs")
            self.history = None
            out = original_step(self, full, prompts, hypo_ids, step_id=step_id)
            following = self.next_session
            return out if following is not None and not following.stepped else out[:, -n:]
        return original_step(self, inputs, prompts, hypo_ids, step_id=step_id)

    cls.step = step


def _install_gone_abort(cls):
    from hivemind import anext

    async def _step(self, inputs_serialized):
        peer = self.span.peer_id.to_base58()
        if peer in _gone:
            raise ConnectionError(f"span server {peer} is gone (heartbeat)")
        event = asyncio.Event()
        with _lock:
            _waiters.setdefault(peer, set()).add(event)
        try:
            await self._inputs_queue.put(inputs_serialized)
            self.stepped = True
            reply = asyncio.ensure_future(
                asyncio.wait_for(anext(self._outputs_stream), self.config.request_timeout))
            gone = asyncio.ensure_future(event.wait())
            await asyncio.wait({reply, gone}, return_when=asyncio.FIRST_COMPLETED)
            if reply.done():
                gone.cancel()
                return reply.result()
            reply.cancel()
            raise ConnectionError(f"span server {peer} is gone (heartbeat)")
        finally:
            with _lock:
                _waiters.get(peer, set()).discard(event)

    cls._step = _step


def _install_reroute_fix():
    from petals.client.routing.sequence_info import RemoteSequenceInfo
    from petals.client.routing.sequence_manager import RemoteSequenceManager

    original = RemoteSequenceManager.on_request_failure

    def on_request_failure(self, peer_id):
        original(self, peer_id)
        with self.lock_changes:
            info = self.state.sequence_info
            if all(block.servers for block in info.block_infos):
                info.spans_by_priority, info.spans_containing_block = \
                    RemoteSequenceInfo._sort_spans(info.block_infos)

    RemoteSequenceManager.on_request_failure = on_request_failure


def install():
    """Apply the four fixes (idempotent)."""
    from petals.client import inference_session

    cls = inference_session._ServerInferenceSession
    if getattr(cls, "_local_swarm_fixed", False):
        return
    _install_del_fix(cls)
    _install_failover_fix(cls)
    _install_gone_abort(cls)
    _install_reroute_fix()
    cls._local_swarm_fixed = True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def watch_servers(p2p, interval, on_gone):
    """Our heartbeat on the servers with a step in flight: a server whose connection is gone
    from this client's daemon and that does not answer a ping within `interval` is gone."""
    from hivemind import PeerID

    while True:
        await asyncio.sleep(interval)
        active = active_peers()
        if not active:
            continue
        connected = {info.peer_id.to_base58() for info in await p2p.list_peers()}
        for peer in active:
            if peer in connected or peer in _gone:
                continue
            try:
                await asyncio.wait_for(p2p._client.connect(PeerID.from_base58(peer), []), interval)
            except Exception:  # noqa: BLE001 - any failure to reach it means gone
                on_gone([peer])
