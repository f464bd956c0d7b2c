"""Fetch a model from the peers that hold it: ranged pieces from several peers at once, each
checked against the manifest as it arrives, into the store's partial folder; resumable.

Every holder gets `streams` concurrent requests; a piece whose source fails (gone, timed out,
truncated) goes back first in line for any source; a source whose bytes do not match a piece's
hash is banned for the rest of the download and named in the log with the file. Checked pieces
are recorded (at most every `SAVE_EVERY_S`, and at the end), so a crash (or a stop) resumes
where it was: the recorded pieces are re-hashed from disk first. Every file's whole sha256,
built as the pieces arrive (`swarm/models/partial.py`), is checked before the model enters the
store; nothing unchecked is ever loaded. A `TokenBucket` caps the whole download's rate.
Requests go over the client's kept-alive bulk session; a piece's bytes stay the received
buffers until they are hashed and written (off the event loop).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from filelock import Timeout

from network.federation.client import FederationClient, peer_url
from network.federation.models.download import Download, FetchProgress, Holder, covering
from network.wire.paths import BLOB_PATH
from swarm.errors import PeerError
from swarm.models.library import Entry, ModelLibrary
from swarm.models.manifest import FileEntry, Manifest
from swarm.models.partial import Buffer, PartialModel
from swarm.models.schedule import Piece, PieceSchedule, TokenBucket
from swarm.models.store import ModelError
from swarm.models.tensors import block_ranges, header_length, tensor_spans

log = logging.getLogger(__name__)

STREAMS_PER_PEER = 3  # ranged requests in flight per holder (bench: 3 beat 2 on capped links)
RETRIES = 3  # consecutive failures before a holder is given up
READ_TIMEOUT_S = 20.0  # a piece whose bytes stop coming for this long is given back
REPORT_EVERY = 0.1  # log a progress line at every tenth of the model
SAVE_EVERY_S = 1.0  # record the checked pieces at most this often (a resume re-checks them)
READ_BYTES = 1 << 20  # the largest chunk read from a reply at once


class ModelFetcher:
    """Downloads models into `library` over `client` (signed requests), at most `rate_bytes_s`
    (0: no cap), reporting each checked piece to `on_progress`."""

    def __init__(self, library: ModelLibrary, client: FederationClient, *,
                 rate_bytes_s: float = 0.0, streams: int = STREAMS_PER_PEER,
                 read_timeout_s: float = READ_TIMEOUT_S,
                 on_progress: Callable[[FetchProgress], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.library = library
        self.client = client
        self.bucket = TokenBucket(rate_bytes_s, max(rate_bytes_s / 4, 1 << 16))
        self.streams = streams
        self.read_timeout_s = read_timeout_s
        self.on_progress = on_progress or (lambda _p: None)
        self.clock = clock

    async def fetch(self, manifest: Manifest, holders: list[Holder]) -> Entry:
        """The model in the store: already there, or fetched from `holders` now. `PeerError`
        (naming each holder's failure) when they cannot deliver it; `ModelError` when a file
        fails its final check."""
        lock = self.library.lock(manifest)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another process on this machine is fetching %s: waiting for it",
                     manifest.name)
            await asyncio.to_thread(lock.acquire)
        try:
            held = await asyncio.to_thread(self.library.find, manifest.digest)
            if held is not None:
                return held
            return await self._fetch(manifest, holders)
        finally:
            lock.release()

    async def fetch_blocks(self, manifest: Manifest, holders: list[Holder], file_name: str,
                           blocks: range, *, shared: bool = False) -> Path:
        """For a span server: only the tensors of `blocks` (and with `shared`, the embeddings,
        final norm and head) of one safetensors file of the model, read from its header's
        offsets. Whole pieces are fetched (so every byte is checked against the manifest) into
        a sparse copy of the file in the store's partial folder, whose path is returned:
        `safetensors.safe_open` reads the chosen tensors from it as from the full file."""
        index = next((i for i, f in enumerate(manifest.files) if f.name == file_name), None)
        if index is None or not file_name.endswith(".safetensors"):
            raise ModelError(f"{manifest.name} has no safetensors file {file_name!r}")
        item = manifest.files[index]
        path = self.library.partial_dir(manifest) / item.name
        lock = self.library.lock(manifest)
        await asyncio.to_thread(lock.acquire)
        try:
            await self._download(manifest, holders, covering(manifest, index, [(0, 8)]))
            prefix = await asyncio.to_thread(_read, path, 0, 8)
            head_end = 8 + header_length(prefix)
            await self._download(manifest, holders, covering(manifest, index, [(0, head_end)]))
            head = await asyncio.to_thread(_read, path, 0, head_end)
            ranges = block_ranges(tensor_spans(head, item.size), blocks, shared=shared)
            await self._download(manifest, holders, covering(manifest, index, ranges))
        finally:
            lock.release()
        return path

    async def _fetch(self, manifest: Manifest, holders: list[Holder]) -> Entry:
        await asyncio.to_thread(self.library.make_room, manifest)
        run = await self._download(manifest, holders)
        await asyncio.to_thread(run.files.finish)
        entry = await asyncio.to_thread(self.library.commit, manifest)
        self._report(run, final=True)
        return entry

    async def _download(self, manifest: Manifest, holders: list[Holder],
                        only: set[Piece] | None = None) -> Download:
        """Fetch every piece of `manifest` (or those in `only`) into its partial folder."""
        files = PartialModel(manifest, self.library.partial_dir(manifest), whole=only is None)
        claimed = await asyncio.to_thread(self.library.progress, manifest)
        done = await asyncio.to_thread(files.prepare, claimed)
        sizes = {(fi, pi): end - start for fi, item in enumerate(manifest.files)
                 for pi in range(len(item.pieces))
                 for start, end in [item.piece_span(pi, manifest.piece_bytes)]
                 if only is None or (fi, pi) in only}
        schedule = PieceSchedule.of(sizes, done)
        run = Download(manifest, files, schedule, self.clock(), schedule.done_bytes)
        if done:
            log.info("resuming %s: %d of %d MB already here", manifest.name,
                     schedule.done_bytes >> 20, schedule.total_bytes >> 20)
        async with asyncio.TaskGroup() as workers:
            for holder in holders:
                for _ in range(self.streams):
                    workers.create_task(self._worker(run, holder),
                                        name=f"fetch-{holder.node_id}")
        await self._save(run, force=True)
        if not schedule.complete:
            why = {**run.gone, **schedule.banned}
            reasons = "; ".join(f"{node}: {reason}" for node, reason in sorted(why.items()))
            raise PeerError(f"could not fetch model {manifest.name}: "
                            f"{reasons or 'no peer holds it'}")
        return run

    async def _worker(self, run: Download, holder: Holder) -> None:
        schedule, node = run.schedule, holder.node_id
        failures = 0
        while True:
            async with run.cond:
                await run.cond.wait_for(lambda: bool(schedule.pending) or not schedule.in_flight
                                        or node in run.gone or node in schedule.banned)
                if node in run.gone:
                    return
                piece = schedule.take(node)
                if piece is None:
                    return  # banned, or nothing left to fetch
            item = run.manifest.files[piece[0]]
            try:
                data = await self._get(run.manifest, item, piece, holder)
                ok = await asyncio.to_thread(run.files.write, piece, data)
            except PeerError as exc:
                failures += 1
                async with run.cond:
                    schedule.give_back(piece)
                    if failures >= RETRIES and node not in run.gone:
                        run.gone[node] = str(exc)
                        log.warning("fetching %s: giving up on peer %s (%s); other peers go on",
                                    item.name, node, exc)
                    run.cond.notify_all()
                if node in run.gone:
                    return
                await asyncio.sleep(0.2 * failures)  # a short back-off before asking it again
                continue
            except BaseException:
                async with run.cond:
                    schedule.give_back(piece)
                    run.cond.notify_all()
                raise
            async with run.cond:
                if ok:
                    failures = 0
                    schedule.finish(piece)
                else:
                    schedule.give_back(piece)
                    start, end = item.piece_span(piece[1], run.manifest.piece_bytes)
                    why = f"sent corrupted bytes of {item.name} (bytes {start}-{end - 1})"
                    schedule.ban(node, why)
                    log.warning("fetching %s: peer %s %s; no more pieces from it",
                                run.manifest.name, node, why)
                run.cond.notify_all()
            if not ok:
                return
            await self._save(run)
            self._report(run)

    async def _save(self, run: Download, force: bool = False) -> None:
        """Record the checked pieces, at most every `SAVE_EVERY_S` unless `force`."""
        async with run.saving:  # the newest record wins; a resume re-checks it anyway
            now = self.clock()
            if run.schedule.done and (force or now - run.saved >= SAVE_EVERY_S):
                run.saved = now
                await asyncio.to_thread(self.library.save_progress, run.manifest,
                                        sorted(run.schedule.done))

    async def _get(self, manifest: Manifest, item: FileEntry, piece: Piece,
                   holder: Holder) -> list[Buffer]:
        """One piece's bytes from `holder` (the received chunks, not joined), within the rate
        cap; `PeerError` on any failure."""
        start, end = item.piece_span(piece[1], manifest.piece_bytes)
        url = peer_url(holder.address, holder.port, BLOB_PATH + item.sha256)
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity",
                   **self.client.sign(holder.node_id, "GET", url, b"")}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.client.connect_timeout_s,
                                        sock_read=self.read_timeout_s)
        want, got = end - start, 0
        chunks: list[Buffer] = []
        try:
            async with self.client.bulk_session().get(url, headers=headers,
                                                      timeout=timeout) as reply:
                if reply.status not in (200, 206) or (reply.status == 200 and want != item.size):
                    raise PeerError(f"{item.name}: answered {reply.status} to a range request",
                                    node_id=holder.node_id, status=reply.status)
                async for chunk in reply.content.iter_chunked(READ_BYTES):
                    chunks.append(chunk)
                    got += len(chunk)
                    if got > want:
                        raise PeerError(f"{item.name}: sent more than the {want} bytes asked",
                                        node_id=holder.node_id)
                    pause = self.bucket.wait(self.clock(), len(chunk))
                    if pause > 0:
                        await asyncio.sleep(pause)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise PeerError(f"{item.name}: {what}", node_id=holder.node_id) from exc
        if got != want:
            raise PeerError(f"{item.name}: truncated piece ({got} of {want} bytes)",
                            node_id=holder.node_id)
        return chunks

    def _report(self, run: Download, final: bool = False) -> None:
        schedule = run.schedule
        elapsed = max(self.clock() - run.started, 1e-6)
        progress = FetchProgress(run.manifest.name, schedule.done_bytes, schedule.total_bytes,
                                 (schedule.done_bytes - run.start_bytes) / elapsed,
                                 tuple(sorted(set(schedule.in_flight.values()))))
        self.on_progress(progress)
        step = max(1, int(schedule.total_bytes * REPORT_EVERY))
        mark = schedule.done_bytes // step
        if final or mark > run.reported:
            run.reported = mark
            eta = progress.eta_s
            log.info("fetching %s: %d%% (%.1f of %.1f MB) at %.1f MB/s, %s left, from %s",
                     run.manifest.name, 100 * schedule.done_bytes // max(1, schedule.total_bytes),
                     schedule.done_bytes / 1e6, schedule.total_bytes / 1e6,
                     progress.rate_bytes_s / 1e6, "?" if eta is None else f"{eta:.0f} s",
                     ", ".join(progress.peers) or "-")


def _read(path: Path, start: int, length: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(start)
        return fh.read(length)
