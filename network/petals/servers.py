"""The processes that serve spans: the hivemind DHT bootstrap the coordinator runs (its multiaddrs
are the `initial_peers` of every span server and client) and a Petals server per node for its
blocks. Both are petals' own command-line programs, started through `runtime/launch.py`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from network.petals.environment import RUNTIME_DIR, SpanEnvironment
from network.petals.processes import SupervisedProcess

DHT_START_S = 60.0
SERVER_START_S = 180.0  # loads the blocks; 6 to 12 s here when the machine is quiet
_MADDR = re.compile(r"(/ip[46]/[^\s'\",\]]+/p2p/[A-Za-z0-9]+)")
_DHT_READY = re.compile(r"--initial_peers\s+\S*?(/ip[46]/[^\s'\",\]]+/p2p/[A-Za-z0-9]+)")
_STARTED = re.compile(re.escape("[local-swarm] blocks announced online"))  # runtime/launch.py


@dataclass(frozen=True)
class SpanServerSpec:
    """What one Petals server serves and how."""

    model_dir: Path
    start: int
    end: int
    initial_peers: tuple[str, ...]
    dht_prefix: str
    host: str = "127.0.0.1"
    throughput: float = 1.0  # given as a number: petals' own estimate runs an Internet speed test
    threads: int = 0  # torch threads (0: torch's default)
    identity_path: Path | None = None


class DhtBootstrap(SupervisedProcess):
    """The swarm's private DHT entry point; `initial_peers` once started."""

    def __init__(self, environment: SpanEnvironment, host: str = "127.0.0.1", port: int = 0,
                 identity_path: Path | None = None, log_path: Path | None = None) -> None:
        argv = [str(environment.python), str(RUNTIME_DIR / "launch.py"), "dht",
                "--host_maddrs", f"/ip4/{host}/tcp/{port}", "--no_relay"]
        if identity_path is not None:
            argv += ["--identity_path", str(identity_path)]
        super().__init__("span DHT", argv, environment.env(), _DHT_READY, log_path)
        self.initial_peers: tuple[str, ...] = ()

    async def start(self, within_s: float = DHT_START_S) -> re.Match[str]:
        """Start and read the multiaddrs other processes use to join."""
        match = await super().start(within_s)
        self.initial_peers = tuple(dict.fromkeys(_MADDR.findall(match.string))) or (match[1],)
        return match


class SpanServer(SupervisedProcess):
    """A Petals server for blocks [start, end); `peer_id` and `start_s` once started."""

    def __init__(self, environment: SpanEnvironment, spec: SpanServerSpec,
                 log_path: Path | None = None) -> None:
        argv = [str(environment.python), str(RUNTIME_DIR / "launch.py"), "server",
                str(spec.model_dir), "--initial_peers", *spec.initial_peers,
                "--host_maddrs", f"/ip4/{spec.host}/tcp/0", "--no_auto_relay",
                "--block_indices", f"{spec.start}:{spec.end}", "--throughput", str(spec.throughput),
                "--torch_dtype", "float32", "--device", "cpu", "--quant_type", "none",
                "--num_handlers", "2", "--dht_prefix", spec.dht_prefix,
                "--skip_reachability_check"]
        if spec.identity_path is not None:
            argv += ["--identity_path", str(spec.identity_path)]
        env = environment.env()
        if spec.threads:
            env["OMP_NUM_THREADS"] = str(spec.threads)
        super().__init__(f"span server {spec.start}:{spec.end}", argv, env, _STARTED, log_path)
        self.spec = spec
        self.peer_id = ""
        self.start_s = 0.0

    def on_line(self, line: str) -> None:
        if not self.peer_id and "Running a server on" in line:
            found = _MADDR.findall(line)
            if found:
                self.peer_id = found[0].rsplit("/p2p/", 1)[1]

    async def start(self, within_s: float = SERVER_START_S) -> re.Match[str]:
        """Start and wait until its blocks are loaded and stored in the DHT as online (the
        launcher's line after petals' announcement, not petals' earlier "Started")."""
        began = time.monotonic()
        match = await super().start(within_s)
        self.start_s = time.monotonic() - began
        return match
