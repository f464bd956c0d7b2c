"""Coordinator failover, measured on a namespace LAN: how fast the swarm agrees on a new leader.

Every node is a bench/scripted_node.py process (real mDNS, heartbeats, HTTP and election code
over a scripted backend) inside a network namespace built by tests/netns.py, each with its own
cache dir (node id, term file) and one shared swarm key. An agent process in namespace n1, which
holds no node (so cutting a node's cable never cuts the observer), polls every node's heartbeat
(unsigned GET /v1/federation/health; its peer table where rows matter) with overlapping looks
every 20 ms, or N / 250 s past 5 nodes (0.08 s at 20, 0.2 s at 50: 50 x 50 peer tables a second
starved the nodes it timed) (tests/lan_client.py `agree`). The node logs give a second figure
that the agent's looks do not add to: when the last survivor logged that it follows the new
coordinator. Nothing touches the host's interfaces.

Per repetition, with N nodes in n2..n(N+1):
  1. kill: SIGKILL the coordinator; time until every survivor names one and the same survivor
     coordinator (it says "coordinator", the rest "follower") with a higher term. Then the killed
     node restarts with the same id and cache dir, and the bench waits until all N follow the
     sitting coordinator (its heartbeat rows included) before going on; a restart that displaces
     the coordinator is counted.
  2. cut: pull the coordinator's cable; wait until the others agree on another; heal, and time
     until all N agree on a single coordinator (the loser must say "follower").
  3. freeze: SIGSTOP the coordinator (a hung process on a host that still accepts TCP: heartbeats
     see a busy peer, not a dead one); time until the others agree on another; SIGCONT, and time
     until all N agree on a single coordinator (the thawed one must step down).
  4. follower: pull a follower's cable for --follower-cut-s (4 s: a Wi-Fi drop, a closed lid),
     plug it back, and watch every node meanwhile: count coordinator moves (any node but the cut
     one naming another coordinator or term, the sitting one not saying "coordinator", the cut
     one leading anyone but itself or following another; goal 0), how long after the heal the
     cut one still said it leads itself (solo), and when it followed the sitting one again.
After each measured agreement the agent keeps watching for --hold-s and counts every break of
it (a flap). A repetition that does not converge within --timeout-s (10 s) is a failure.
Goal: p95 <= 2 s for both (anchor: exo 1.x campaigns for 3 s before a new master).

Run as root (or with user namespaces):
  python bench/failover.py [--nodes 3] [--reps 20] [--hold-s 1.0] [--only kill,cut,freeze,follower]
  python bench/failover.py --reps 5 --keep-logs     # quick look, node logs kept
Takes about 6 s per repetition on 2 cores (crash detection ~0.6 s, cut detection ~1.1 s, a
restart ~1 s, two 1 s holds, the settling waits): 129 s measured for kill and cut; freeze adds
about 4 s per repetition, follower about 11 s.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import netns_nodes  # noqa: E402
from bench.netns_nodes import (  # noqa: E402
    AGENT_FLAG,
    NodeProcess,
    PercentileTable,
    add_phase_options,
    chosen_phases,
    finish,
    fmt,
    pct,
    scripted,
)
from network.trust.swarm_key import SwarmKey  # noqa: E402

PHASES = ("kill", "cut", "freeze", "follower")
GOAL_S = 2.0
ANCHOR = "exo 1.x campaigns for 3 s"

# ---------------------------------------------------------------------------------------------
# The agent: runs inside namespace n1, reads one JSON command per line, answers "RESULT {json}";
# with "announce" it prints "WATCHING" after its first look at every node.
# ---------------------------------------------------------------------------------------------


def agent() -> None:
    """Serve `agree` commands from stdin until it closes (every one bounded by its deadline)."""
    from tests.lan_client import agree

    def handle(cmd: dict) -> Coroutine[Any, Any, dict]:
        def watching(announce: bool = bool(cmd.get("announce"))) -> None:
            if announce:
                print("WATCHING", flush=True)

        return agree(cmd, watching)

    netns_nodes.serve_agent(handle)


# ---------------------------------------------------------------------------------------------
# The bench: builds the namespace LAN, starts nodes and the agent, prints the table.
# ---------------------------------------------------------------------------------------------


START_BATCH = 5  # nodes start this many at a time, each batch advertising before the next


class Agent(netns_nodes.Agent):
    """The agent process in namespace n1."""

    def __init__(self, lan: Any) -> None:
        super().__init__(lan, __file__)

    def agree(self, nodes: list[Node], deadline_s: float, **more: Any) -> dict:
        return self.ask(agree_cmd(nodes, deadline_s, **more),
                        deadline_s + float(more.get("hold_s", 0)) + 30)

    def agree_after(self, act: Callable[[], None], nodes: list[Node], deadline_s: float,
                    hold_s: float, **more: Any) -> tuple[dict, float]:
        """Watch `nodes` agree (held `hold_s`), running `act` once the agent has looked at every
        node: the agreement's result and the wall-clock time `act` began."""
        self.send(agree_cmd(nodes, deadline_s, announce=True, hold_s=hold_s, **more))
        self.out.expect("WATCHING", 30)
        began = time.time()
        act()
        return self.result(deadline_s + hold_s + 30), began


def agree_cmd(nodes: list[Node], deadline_s: float, **more: Any) -> dict:
    """Look at each node's heartbeat (`light`; its peer table when `rows` is asked) every
    `look_every(len(nodes))` seconds."""
    return {"nodes": [[n.url, n.node_id] for n in nodes], "deadline_s": deadline_s, "light": True,
            "every_s": look_every(len(nodes)), **more}


def look_every(n: int) -> float:
    """How often the agent looks at each of `n` nodes: every 20 ms, slower past 5 nodes so the
    looks (250 a second at most: the agent is one more process on the same 2 cores) do not
    starve the nodes they time."""
    return max(0.02, n / 250)


class Node(NodeProcess):
    """One scripted node in namespace i; its output stamped with wall-clock time into a log."""

    def __init__(self, lan: Any, i: int, logdir: Path, key: str, latency_s: float) -> None:
        super().__init__(lan, i, f"f{i}", logdir)
        self.cache = logdir / "cache" / self.node_id
        self._log = open(self.log_path, "a")  # noqa: SIM115 (closed in stop)
        self._lock = threading.Lock()
        self.key, self.latency_s = key, latency_s
        self.start()

    def start(self) -> None:
        self.proc = self.spawn([*scripted(self.latency_s), "--cache-dir", str(self.cache)],
                               env={"LOCAL_SWARM_FEDERATION_SWARM_KEY": self.key},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.note(f"--- started pid {self.proc.pid}")
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()

    def note(self, text: str) -> None:
        with self._lock:
            self._log.write(f"{time.time():.3f} {text}\n")
            self._log.flush()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self.note(line.rstrip())

    def kill(self) -> None:
        self.kill_process()
        self.note("--- SIGKILLed")

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL if it lingers."""
        self.stop_process()
        self.note("--- stopped")
        self._log.close()


def leaders_overlap(changes: list[list[Any]], after_s: float) -> float:
    """Seconds (from `after_s` on, in an `agree` result's timeline) during which two or more
    nodes said "coordinator" at once."""
    roles: dict[str, str | None] = {}
    overlap, since = 0.0, None
    for at, node_id, view in changes:
        roles[node_id] = view["role"] if view else None
        many = sum(1 for r in roles.values() if r == "coordinator") > 1
        if many and since is None:
            since = max(at, after_s)
        elif not many and since is not None:
            overlap += max(0.0, at - since)
            since = None
    return overlap


class Bench:
    """The LAN, the nodes, the agent and what they measured."""

    def __init__(self, lan: Any, args: argparse.Namespace, logdir: Path) -> None:
        key = SwarmKey.generate().text
        self.lan, self.args = lan, args
        self.agent = Agent(lan)
        self.nodes: list[Node] = []
        for first in range(2, args.nodes + 2, START_BATCH):  # not 50 imports at once
            batch = [Node(lan, i, logdir, key, args.latency)
                     for i in range(first, min(first + START_BATCH, args.nodes + 2))]
            self.nodes += batch
            deadline = time.monotonic() + 90
            while not all("advertising" in n.log_path.read_text(errors="replace") for n in batch):
                if time.monotonic() > deadline:
                    raise RuntimeError("a batch of nodes never started advertising")
                time.sleep(0.2)
        self.res: dict[str, Any] = {"kill": [], "kill_logged": [], "kill_rejoin": [],
                                    "cut_elect": [], "cut": [],
                                    "freeze_elect": [], "thaw": [],
                                    "failures": [], "flaps": 0, "flap_evidence": [],
                                    "displaced": 0, "dual": [], "follower_moves": 0,
                                    "follower_solo": [], "follower_rejoin": []}

    def by_id(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def settle(self, why: str, want: str | None = None) -> dict:
        """All nodes follow one coordinator, heartbeat rows included (30 s, else abort)."""
        done = self.agent.agree(self.nodes, 30 + len(self.nodes), rows=True, want=want)
        if not done["ok"] and want is not None:
            self.res["displaced"] += 1
            self.res["failures"].append(f"{why}: {want} did not stay coordinator: "
                                        f"{done['views']}")
            done = self.agent.agree(self.nodes, 30 + len(self.nodes), rows=True)
        if not done["ok"]:
            raise RuntimeError(f"{why}: no single coordinator within 30 s: {done['views']}")
        return done

    def watched(self, rep: int, what: str, result: dict) -> None:
        if result.get("flaps"):
            self.res["flaps"] += result["flaps"]
            self.res["flap_evidence"].append(f"{what} rep {rep}: {result['broken'][:2]}")

    def kill_rep(self, rep: int, state: dict) -> dict:
        leader = self.by_id(state["coordinator"])
        survivors = [n for n in self.nodes if n is not leader]
        after, _began = self.agent.agree_after(leader.kill, survivors, self.args.timeout_s,
                                               self.args.hold_s, above_term=state["term"],
                                               **{"not": [leader.node_id]})
        killed_at = leader.killed_at  # when the signal left (the bench itself may run late)
        self.watched(rep, "kill", after)
        if after["ok"]:
            self.res["kill"].append(after["at"] - killed_at)
            logged = followed_in_logs(survivors, after["coordinator"], after["term"], killed_at)
            if logged is not None:
                self.res["kill_logged"].append(logged - killed_at)
            note = (f"kill {leader.node_id} -> {after['coordinator']} (term {after['term']}) "
                    f"{after['at'] - killed_at:.3f} s")
        else:
            self.res["failures"].append(f"kill rep {rep}: survivors of {leader.node_id} never "
                                        f"agreed in {self.args.timeout_s} s: {after['views']}")
            note = f"kill {leader.node_id} -> FAILED"
        restarted_at = time.time()
        leader.start()
        back = self.settle(f"kill rep {rep} restart", after["coordinator"] if after["ok"] else None)
        self.res["kill_rejoin"].append(back["at"] - restarted_at)
        print(f"  rep {rep + 1}: {note}; {leader.node_id} back as follower "
              f"{back['at'] - restarted_at:.2f} s after its restart", flush=True)
        return back

    def cut_rep(self, rep: int, state: dict) -> dict:
        def cut(leader: Node) -> None:
            self.lan.cut(leader.i)
            leader.note("--- cable cut")

        def heal(leader: Node) -> None:
            self.lan.heal(leader.i)
            leader.note("--- cable healed")

        return self.outage_rep("cut", rep, state, cut, heal, ("cut_elect", "cut"), "heal")

    def freeze_rep(self, rep: int, state: dict) -> dict:
        def freeze(leader: Node) -> None:
            leader.proc.send_signal(signal.SIGSTOP)
            leader.note("--- SIGSTOPped")

        def thaw(leader: Node) -> None:
            leader.proc.send_signal(signal.SIGCONT)
            leader.note("--- SIGCONTinued")

        return self.outage_rep("freeze", rep, state, freeze, thaw, ("freeze_elect", "thaw"),
                               "thaw")

    def outage_rep(self, phase: str, rep: int, state: dict, down: Callable[[Node], None],
                   up: Callable[[Node], None], keys: tuple[str, str], back_word: str) -> dict:
        """Take the coordinator away (`down`): time until the rest agree on another (`keys[0]`);
        bring it back (`up`): time until all agree on one (`keys[1]`)."""
        leader = self.by_id(state["coordinator"])
        rest = [n for n in self.nodes if n is not leader]
        down_at = time.time()
        down(leader)
        elected = self.agent.agree(rest, self.args.timeout_s + 5, above_term=state["term"],
                                   **{"not": [leader.node_id]})
        if elected["ok"]:
            self.res[keys[0]].append(elected["at"] - down_at)
        else:
            self.res["failures"].append(f"{phase} rep {rep}: the rest never replaced "
                                        f"{leader.node_id}: {elected['views']}")
        joined, up_at = self.agent.agree_after(lambda: up(leader), self.nodes,
                                               self.args.timeout_s, self.args.hold_s)
        self.watched(rep, back_word, joined)
        if phase == "cut":
            self.res["dual"].append(leaders_overlap(joined["changes"], up_at - joined["t0"]))
        if joined["ok"]:
            self.res[keys[1]].append(joined["at"] - up_at)
            note = (f"{back_word} {leader.node_id}: all follow {joined['coordinator']} (term "
                    f"{joined['term']}) {joined['at'] - up_at:.3f} s")
        else:
            self.res["failures"].append(f"{phase} rep {rep}: no single coordinator "
                                        f"{self.args.timeout_s} s after the {back_word}: "
                                        f"{joined['views']}")
            note = f"{back_word} {leader.node_id}: FAILED"
        elect = f"{elected['at'] - down_at:.2f} s" if elected["ok"] else "never"
        print(f"  rep {rep + 1}: {phase} {leader.node_id} -> replaced in {elect}; {note}",
              flush=True)
        return self.settle(f"{phase} rep {rep} after {back_word}")

    def follower_rep(self, rep: int, state: dict) -> dict:
        """Cut a follower for --follower-cut-s and plug it back, watching every node throughout."""
        leader = self.by_id(state["coordinator"])
        followers = [n for n in self.nodes if n is not leader]
        cut = followers[rep % len(followers)]
        hold = self.args.follower_cut_s + 6.0
        self.agent.send(agree_cmd(self.nodes, 10, announce=True, hold_s=hold,
                                  want=leader.node_id, term=state["term"]))
        self.agent.out.expect("WATCHING", 30)
        self.lan.cut(cut.i)
        cut.note("--- cable cut")
        time.sleep(self.args.follower_cut_s)  # the outage itself: a bench's scripted fault
        healed_at = time.time()
        self.lan.heal(cut.i)
        cut.note("--- cable healed")
        watched = self.agent.result(hold + 60)
        moves, solo_s, rejoined = follower_outcome(watched, leader.node_id, cut.node_id,
                                                   state["term"], healed_at - watched["t0"])
        self.res["follower_moves"] += moves
        self.res["follower_solo"].append(solo_s)
        if rejoined is None:
            self.res["failures"].append(f"follower rep {rep}: {cut.node_id} never followed "
                                        f"{leader.node_id} again: {watched['views']}")
        else:
            self.res["follower_rejoin"].append(rejoined)
        back = "never" if rejoined is None else f"{rejoined:.2f} s"
        print(f"  rep {rep + 1}: follower {cut.node_id} cut {self.args.follower_cut_s:.0f} s -> "
              f"back under {leader.node_id} {back} after the heal; moves {moves}; said solo "
              f"{solo_s:.2f} s after the heal", flush=True)
        return self.settle(f"follower rep {rep}", leader.node_id)

    def run(self, phases: list[str]) -> None:
        state = self.settle("start")
        print(f"  {len(self.nodes)} nodes agree: {state['coordinator']} leads term "
              f"{state['term']}", flush=True)
        for rep in range(self.args.reps):
            if "kill" in phases:
                state = self.kill_rep(rep, state)
            if "cut" in phases:
                state = self.cut_rep(rep, state)
            if "freeze" in phases:
                state = self.freeze_rep(rep, state)
            if "follower" in phases:
                state = self.follower_rep(rep, state)

    def close(self) -> None:
        for n in self.nodes:
            n.stop()
        self.agent.close()


def follower_outcome(watched: dict, leader: str, cut: str, term: int,
                     heal_s: float) -> tuple[int, float, float | None]:
    """From an `agree` result watched across a follower's cut (its timeline of [seconds, node id,
    view] per change, and when each node answered again): (coordinator moves, seconds the cut one
    said it leads itself after the heal, seconds from the heal until it followed the sitting
    leader for good, seen from outside; None if it never did)."""
    changes = watched["changes"]
    back = [at for at, node in watched["returns"] if node == cut and at >= heal_s]
    moves, solo_s, rejoined = 0, 0.0, (back[0] - heal_s if back else None)
    bad: dict[str, bool] = {}
    solo_since: float | None = None
    for at, node, view in changes:
        if view is None:
            continue
        same = (view["coordinator"], view["term"]) == (leader, term)
        if node == cut:
            leads = view["role"] == "coordinator"
            wrong = (leads and not view.get("solo")) or (
                not leads and view["coordinator"] not in (None, leader))
            if leads and view.get("solo") and at >= heal_s and solo_since is None:
                solo_since = at
            elif not leads and solo_since is not None:
                solo_s, solo_since = solo_s + at - solo_since, None
            rejoined = (at - heal_s if same and view["role"] == "follower" and at >= heal_s
                        else None if at >= heal_s else rejoined)
        else:
            wrong = not same or (view["role"] == "coordinator") != (node == leader)
        moves += wrong and not bad.get(node, False)
        bad[node] = wrong
    return moves, solo_s, rejoined


_BECAME = re.compile(r"this node is now the coordinator \(term (\d+)\)")
_STEPPED = re.compile(r"stepped down as coordinator")
_FOLLOWS = re.compile(r"^(\d+\.\d+) .*(?:coordinator is (\S+) \(term (\d+)\)"
                      r"|this node is (now) the coordinator \(term (\d+)\))", re.MULTILINE)


def followed_in_logs(nodes: list[Node], leader: str, term: int, since: float) -> float | None:
    """When the last of `nodes` logged that it follows (or, for `leader`, leads) `term` after
    `since`, by the stamps the bench put on its log lines as it read them (an upper bound that
    the agent's looks, slowed by a loaded machine, do not add to); None if one never did."""
    last = since
    for node in nodes:
        times = [float(m.group(1)) for m in _FOLLOWS.finditer(node.log_text())
                 if float(m.group(1)) >= since and (
                     (m.group(2) == leader and int(m.group(3)) == term)
                     or (m.group(4) and node.node_id == leader and int(m.group(5)) == term))]
        if not times:
            return None
        last = max(last, min(times))
    return last


def log_counts(nodes: list[Node]) -> dict[str, tuple[int, int]]:
    """Per node: (times it became coordinator, times it stepped down), from its log."""
    return {n.node_id: (len(_BECAME.findall(n.log_text())), len(_STEPPED.findall(n.log_text())))
            for n in nodes}


def report(args: argparse.Namespace, phases: list[str], res: dict,
           counts: dict[str, tuple[int, int]]) -> None:
    print()
    table = PercentileTable(50)
    table.header()

    goals = []
    if "kill" in phases:
        table.row("kill: SIGKILL coordinator -> survivors agree", res["kill"])
        table.row("kill: SIGKILL -> the last survivor logs it", res["kill_logged"])
        table.row("kill: restart (same id) -> all follow again", res["kill_rejoin"])
    if "cut" in phases:
        table.row("cut: cable cut -> the rest agree on another", res["cut_elect"])
        table.row("cut: heal -> all agree on one coordinator", res["cut"])
        table.row("cut: heal -> two nodes say coordinator (time)", res["dual"])
    if "freeze" in phases:
        table.row("freeze: SIGSTOP coordinator -> others agree", res["freeze_elect"])
        table.row("freeze: SIGCONT -> all agree on one", res["thaw"])
    if "follower" in phases:
        table.row("follower: heal -> follows the sitting one", res["follower_rejoin"])
        table.row("follower: says solo after the heal (time)", res["follower_solo"])
    print()
    became = sum(c[0] for c in counts.values())
    stepped = sum(c[1] for c in counts.values())
    expected = args.reps * len([p for p in phases if p != "follower"]) + 1
    print(f"elections won (log lines): {became} (one per measured failover plus the first = "
          f"{expected}); step-downs: {stepped}; per node {counts}")
    print(f"flaps (an agreement broken within {args.hold_s} s): {res['flaps']}; restarts that "
          f"displaced the coordinator: {res['displaced']}")
    for e in res["flap_evidence"]:
        print(f"  FLAP {e}")
    failures = res["failures"]
    print(f"failures (no convergence within {args.timeout_s} s): {len(failures)}")
    for f in failures:
        print(f"  FAILED {f}")
    for phase, name, xs in (("kill", "SIGKILL -> agreed", res["kill"]),
                            ("cut", "heal -> agreed", res["cut"])):
        if phase in phases:
            p95 = pct(xs, .95)
            goals.append(f"GOAL {name} p95 {fmt(p95)} <= {GOAL_S} s ({ANCHOR}): "
                         f"{'MET' if p95 <= GOAL_S else 'MISSED'} [{len(xs)} runs]")
    if "follower" in phases:
        moves = res["follower_moves"]
        goals.append(f"GOAL coordinator moves when a follower is cut {args.follower_cut_s:.0f} s "
                     f"and returns: {moves} == 0: {'MET' if moves == 0 else 'MISSED'} "
                     f"[{len(res['follower_solo'])} runs]")
    print()
    for g in goals:
        print(g)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="N (default 3)")
    parser.add_argument("--reps", type=int, default=20, help="repetitions (default 20)")
    parser.add_argument("--hold-s", type=float, default=1.0,
                        help="watch each measured agreement this long for flaps (default 1.0)")
    parser.add_argument("--timeout-s", type=float, default=10.0,
                        help="a repetition that does not converge by then fails (default 10)")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="scripted seconds per answer (default 0.05)")
    parser.add_argument("--follower-cut-s", type=float, default=4.0,
                        help="follower phase: how long its cable stays out (default 4)")
    add_phase_options(parser, PHASES)
    args = parser.parse_args()
    phases = chosen_phases(parser, args, PHASES)
    if not 3 <= args.nodes <= 50 or not 1 <= args.reps <= 100 or not 0 <= args.hold_s <= 10:
        parser.error("keep it bounded: 3..50 nodes (scripted), 1..100 reps, 0..10 s of hold")

    from tests.netns import NetnsLan, netns_available

    ok, why = netns_available()
    if not ok:
        print(f"skipped: {why}")
        return 0
    started = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    print(f"[failover] {args.nodes} nodes, {args.reps} reps of {'+'.join(phases)} ...", flush=True)
    keep = args.keep_logs
    try:
        with NetnsLan(args.nodes + 1) as lan:
            bench = Bench(lan, args, logdir)
            try:
                bench.run(phases)
                counts = log_counts(bench.nodes)  # before the shutdown's own elections
            finally:
                bench.close()
        report(args, phases, bench.res, counts)
        if args.json:
            args.json.write_text(json.dumps({"nodes": args.nodes, "phases": phases,
                                             **bench.res}, default=str))
        keep = keep or bool(bench.res["failures"] or bench.res["flaps"])
    except BaseException:
        print(f"[failover] failed; node logs kept in {logdir}", flush=True)
        raise
    finish(started, logdir, keep)
    return 0


if __name__ == "__main__":
    if AGENT_FLAG in sys.argv[1:]:
        agent()
    else:
        sys.exit(main())
