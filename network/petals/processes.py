"""A span-venv process this node owns: started in a session of its own, its log lines watched for a
ready line, stopped with its whole process group (children and both p2pd daemons), and the unix
sockets hivemind leaves in /tmp cleaned after it.
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import re
import signal
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

from network.petals.environment import SpanRuntimeError

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL of the group after this long (petals needs 2 to 4 s)
_SOCKETS = "/tmp/hivemind-*.sock"  # hard-coded in hivemind's P2P


class SupervisedProcess:
    """One process in the span venv. `start()` returns once a log line matches `ready`; the
    line reader is a task this object owns until `stop()`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], ready: re.Pattern[str],
                 log_path: Path | None = None, stdin: bool = False) -> None:
        self.name, self.argv, self.env, self.ready = name, argv, env, ready
        self.log_path = log_path
        self.lines: deque[str] = deque(maxlen=200)
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stdin = stdin
        self._ready_match: asyncio.Future[re.Match[str]] | None = None

    @property
    def pid(self) -> int | None:
        """The process id (also its process group id)."""
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.returncode is None

    async def start(self, within_s: float) -> re.Match[str]:
        """Start the process; wait up to `within_s` s for its ready line (else stop it, raise)."""
        loop = asyncio.get_running_loop()
        self._ready_match = loop.create_future()
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, start_new_session=True, preexec_fn=_die_with_parent,
            stdin=asyncio.subprocess.PIPE if self._stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, limit=2**20)
        self._reader = asyncio.create_task(self._read(), name=f"{self.name}-log")
        try:
            async with asyncio.timeout(within_s):
                return await asyncio.shield(self._ready_match)
        except BaseException as exc:
            await self.stop()
            tail = "\n".join(list(self.lines)[-12:])
            if isinstance(exc, TimeoutError | EOFError):
                raise SpanRuntimeError(f"{self.name} did not start within {within_s:.0f} s; "
                                       f"its last lines:\n{tail}") from exc
            raise

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        sink = self._open_log()
        try:
            async for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self.lines.append(line)
                if sink:
                    sink.write(line + "\n")
                if self._ready_match is not None and not self._ready_match.done():
                    match = self.ready.search(line)
                    if match:
                        self._ready_match.set_result(match)
                self.on_line(line)
        finally:
            if sink:
                sink.close()
            if self._ready_match is not None and not self._ready_match.done():
                self._ready_match.set_exception(EOFError(f"{self.name} exited"))

    def _open_log(self) -> TextIO | None:
        return open(self.log_path, "a", buffering=1) if self.log_path else None  # noqa: SIM115

    def on_line(self, line: str) -> None:
        """Hook for subclasses that read more than the ready line."""

    async def wait(self) -> int:
        """Wait for the process to exit; its return code."""
        assert self.process is not None
        return await self.process.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (tests and benches: a crash)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the process (petals then shuts its children down), SIGKILL the group after
        `grace` s or at once if the main process is already gone; clean hivemind's sockets."""
        process = self.process
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace):
                        await process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # what is left: p2pd, workers
            with contextlib.suppress(ProcessLookupError):
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)
            self._reader = None
        clean_sockets()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the node dies, even by SIGKILL (Linux), so no
    span server outlives its node; it then shuts its own children down."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def clean_sockets() -> int:
    """Remove hivemind's /tmp sockets that no process listens on any more; how many."""
    try:
        with open("/proc/net/unix") as fh:
            live = {line.split()[-1] for line in fh if line.rstrip().endswith(".sock")}
    except OSError:
        return 0
    removed = 0
    for path in glob.glob(_SOCKETS):
        if path not in live:
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed += 1
    return removed
