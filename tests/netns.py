"""A simulated LAN in network namespaces: one holder process, a bridge, nodes at 10.77.0.i/24.

Node i's eth0 has the fixed MAC `mac(i)`, and every node holds a permanent neighbour entry for
every other node: the kernel's ARP table is one table for all namespaces on the host, capped at
net.ipv4.neigh.default.gc_thresh3 (1024) learned entries, and a full mesh of N nodes needs
N*(N-1) (2450 at N = 50; past about 32 nodes the newest could reach nobody, "neighbor table
overflow" in dmesg). Permanent entries are not counted against that cap, need no ARP traffic,
and leave the host's table to everyone else.

The holder runs under `unshare --net --mount` with a private tmpfs on /run, so the namespace
names never touch the host's /run/netns, and nothing here ever runs in the root namespace. Closing
the holder's stdin (teardown, or pytest dying) makes it kill whatever is left and exit; the kernel
then frees the bridge, the veths and the namespaces.
"""
from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import subprocess
import threading
import time
from types import TracebackType
from typing import Any

SUBNET = "10.77.0"
MAC_PREFIX = "02:77:00:00"
BRIDGE_NS = "br"
_TOOLS = ("unshare", "nsenter", "ip")

_HOLDER = r"""
set -eu
cleanup() {
    trap - EXIT INT TERM HUP
    for ns in $(ip netns list 2>/dev/null | cut -d' ' -f1); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
}
trap cleanup EXIT INT TERM HUP
mount -t tmpfs -o mode=0755 local-swarm-netns /run
ip link set lo up
ip netns add "$BR"
ip -n "$BR" link set lo up
ip -n "$BR" link add b0 type bridge
ip -n "$BR" link set b0 up
i=1
while [ "$i" -le "$N" ]; do
    ip netns add "n$i"
    ip -n "n$i" link set lo up
    mac=$(printf '%s:%02x:%02x' "$MAC" $((i / 256)) $((i % 256)))
    ip -n "$BR" link add "p$i" type veth peer name eth0 address "$mac" netns "n$i"
    ip -n "$BR" link set "p$i" master b0 up
    ip -n "n$i" addr add "$NET.$i/24" dev eth0
    ip -n "n$i" link set eth0 up
    i=$((i + 1))
done
echo READY
cat >/dev/null
"""


def mac(i: int) -> str:
    """Node i's eth0 MAC (fixed, so neighbours can be pinned)."""
    return f"{MAC_PREFIX}:{i // 256:02x}:{i % 256:02x}"


def _user_ns_flags() -> tuple[list[str], list[str]]:
    """Extra (unshare, nsenter) flags: none as root, a user namespace otherwise."""
    if os.geteuid() == 0:
        return [], []
    return ["--map-root-user"], ["-U", "--preserve-credentials"]


@functools.cache
def netns_available() -> tuple[bool, str]:
    """Whether a namespace LAN can be built here, and if not, why (for `pytest.skip`)."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return False, f"network namespaces unavailable: {', '.join(missing)} not installed"
    unshare_flags, _ = _user_ns_flags()
    probe = ("mount -t tmpfs probe /run && ip link set lo up && ip netns add probe "
             "&& ip -n probe link set lo up")
    try:
        done = subprocess.run(["unshare", *unshare_flags, "--net", "--mount", "--", "sh", "-c",
                               probe], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"network namespaces unavailable: {exc}"
    if done.returncode != 0:
        who = "root" if os.geteuid() == 0 else "an unprivileged user (no user namespaces?)"
        return False, (f"network namespaces unavailable to {who}: "
                       f"{done.stderr.strip() or done.returncode}")
    return True, "network namespaces available"


def in_private_network(setup: str, code: str, timeout_s: float = 60) -> Any:
    """Run `setup` (shell, e.g. `ip` commands) then `python -c code` in a fresh `unshare --net`
    namespace, and return the JSON after the child's last "RESULT " line; skip (with the reason)
    where no namespace can be made (macOS, no user namespaces)."""
    import json
    import sys

    import pytest

    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("network namespaces unavailable: unshare or ip not installed")
    unshare_flags, _ = _user_ns_flags()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(["unshare", *unshare_flags, "--net", "--", "sh", "-c",
                           f'{setup} && exec "$0" -c "$1"', sys.executable, code], cwd=root,
                          env={**os.environ, "PYTHONPATH": root}, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if done.returncode != 0 and "unshare" in done.stderr and "not permitted" in done.stderr:
        pytest.skip(f"network namespaces unavailable: {done.stderr.strip()}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"scenario failed ({done.returncode}):\n{done.stderr}"
    return json.loads(lines[-1].split(" ", 1)[1])


class NodeOutput:
    """The stdout lines of a spawned node, read by a thread so tests can wait with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        if proc.stdout is None:
            raise ValueError("spawn the node with stdout=subprocess.PIPE, text=True")
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, prefix: str, timeout_s: float) -> str:
        """The next line starting with `prefix` (earlier lines are kept in `lines`); else raise."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {prefix!r} line in {timeout_s} s: {self.lines}") from None
            if line is None:
                raise EOFError(f"process ended before a {prefix!r} line: {self.lines}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line


class NetnsLan:
    """N node namespaces n1..nN bridged in `br`; node i has `addr(i)` on its eth0."""

    def __init__(self, nodes: int, *, ready_timeout_s: float = 15.0) -> None:
        if not 1 <= nodes <= 250:
            raise ValueError("a NetnsLan has 1 to 250 nodes")
        self.nodes = nodes
        self._ready_timeout_s = ready_timeout_s
        self._holder: subprocess.Popen[str] | None = None
        self._spawned: list[subprocess.Popen[Any]] = []
        self._unshare_flags, self._nsenter_flags = _user_ns_flags()

    @property
    def holder_pid(self) -> int:
        """The pid whose mount namespace holds the namespace names."""
        if self._holder is None:
            raise RuntimeError("the NetnsLan is not started")
        return self._holder.pid

    def __enter__(self) -> NetnsLan:
        env = {**os.environ, "N": str(self.nodes), "BR": BRIDGE_NS, "NET": SUBNET,
               "MAC": MAC_PREFIX}
        self._holder = subprocess.Popen(
            ["unshare", *self._unshare_flags, "--net", "--mount", "--", "sh", "-c", _HOLDER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        holder = self._holder
        try:
            NodeOutput(holder).expect("READY", self._ready_timeout_s)
        except (TimeoutError, EOFError) as exc:
            self.close()
            stderr = holder.stderr.read() if holder.stderr else ""
            raise RuntimeError(f"namespace LAN setup failed: {exc}; {stderr.strip()}") from exc
        try:
            self._pin_neighbours()
        except (OSError, subprocess.SubprocessError) as exc:
            self.close()
            raise RuntimeError(f"namespace LAN setup failed: {exc}") from exc
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _pin_neighbours(self) -> None:
        """A permanent ARP entry in every node for every other node (one `ip -batch` each)."""
        for i in range(1, self.nodes + 1):
            lines = "".join(f"neigh replace {SUBNET}.{j} lladdr {mac(j)} dev eth0 nud permanent\n"
                            for j in range(1, self.nodes + 1) if j != i)
            subprocess.run(["nsenter", "-t", str(self.holder_pid), *self._nsenter_flags, "-m",
                            "ip", "-n", f"n{i}", "-batch", "-"], input=lines, text=True,
                           check=True, capture_output=True, timeout=30)

    def addr(self, i: int) -> str:
        """Node i's address (only meaningful inside the LAN)."""
        self._check(i)
        return f"{SUBNET}.{i}"

    def command(self, i: int, argv: list[str]) -> list[str]:
        """`argv` wrapped to run in node i's namespace (nsenter and ip both exec: same pid)."""
        self._check(i)
        return ["nsenter", "-t", str(self.holder_pid), *self._nsenter_flags, "-m",
                "ip", "netns", "exec", f"n{i}", *argv]

    def spawn(self, i: int, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` in node i's namespace; teardown kills it."""
        proc = subprocess.Popen(self.command(i, argv), **popen_kwargs)
        self._spawned.append(proc)
        return proc

    def ip(self, i: int, *args: str) -> None:
        """Run `ip ARGS` in node i's namespace (e.g. give its eth0 another address)."""
        self._check(i)
        subprocess.run(["nsenter", "-t", str(self.holder_pid), *self._nsenter_flags, "-m",
                        "ip", "-n", f"n{i}", *args], check=True, capture_output=True, timeout=10)

    def cut(self, i: int) -> None:
        """Pull node i's cable: its bridge port goes down (mDNS never notices)."""
        self._bridge_port(i, "down")

    def heal(self, i: int) -> None:
        """Plug node i's cable back in."""
        self._bridge_port(i, "up")

    def close(self) -> None:
        """Kill spawned nodes, then let the holder kill leftovers and exit."""
        for proc in self._spawned:
            if proc.poll() is None:
                proc.kill()
        for proc in self._spawned:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        holder, self._holder = self._holder, None
        if holder is None:
            return
        if holder.stdin:
            holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(timeout=5)

    def _bridge_port(self, i: int, state: str) -> None:
        self._check(i)
        subprocess.run(["nsenter", "-t", str(self.holder_pid), *self._nsenter_flags, "-m",
                        "ip", "-n", BRIDGE_NS, "link", "set", f"p{i}", state],
                       check=True, capture_output=True, timeout=10)

    def _check(self, i: int) -> None:
        if not 1 <= i <= self.nodes:
            raise ValueError(f"no node {i} in a LAN of {self.nodes}")
