"""Runs the project's benches and writes one markdown report with PNG plots, to look at rather than
read: discovery and failover time distributions, consensus overhead ratios, weighted_vote accuracy
against n, and backend decode speed (in-process and through the HTTP API).

Each bench runs as its own process with `--json FILE` (its raw numbers) and its printed output kept
for the report; a bench that cannot run here (the namespace benches without root or user
namespaces) is reported as skipped with its reason. The machine's load average is recorded before
and after, beside the numbers: ratios against a baseline of the same run are what to compare.

  python bench/report.py --quick          # bounded: about 4 to 6 minutes on 2 cores
  python bench/report.py                  # the benches' own defaults (20 minutes or more)
  python bench/report.py --only overhead,quality --out /tmp/report
Writes OUT/report.md and OUT/*.png (default OUT: bench-report/).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Bench:
    """One bench script, its arguments in quick and full mode, and how long it may take."""

    name: str
    script: str
    quick: tuple[str, ...]
    full: tuple[str, ...] = ()
    timeout_s: float = 1800.0


BENCHES = (
    Bench("discovery", "discovery.py", ("--reps", "6", "--only", "join,route",
                                        "--route-requests", "6")),
    Bench("failover", "failover.py", ("--reps", "4", "--only", "kill,cut")),
    Bench("overhead", "consensus_overhead.py", ("--rounds", "3")),
    Bench("quality", "consensus_quality.py", ("--limit", "16", "--temperature", "0.7",
                                              "--n", "1", "3", "5")),
    Bench("throughput", "api_throughput.py", ("--tokens", "32", "--rounds", "1")),
)


@dataclass
class Result:
    """What one bench run gave: its JSON (None when it wrote none), output, time and status."""

    bench: Bench
    data: dict[str, Any] | None
    output: str
    seconds: float
    status: str  # "ok", "skipped: ...", "failed (exit N)", "timed out"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(bench: Bench, quick: bool, out: Path) -> Result:
    """Run one bench with --json and keep what it printed."""
    data_file = out / f"{bench.name}.json"
    data_file.unlink(missing_ok=True)
    argv = [sys.executable, str(ROOT / "bench" / bench.script),
            *(bench.quick if quick else bench.full), "--json", str(data_file)]
    print(f"[report] {bench.name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=bench.timeout_s,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout
        return Result(bench, None, output or "", time.monotonic() - started, "timed out")
    seconds = time.monotonic() - started
    output = done.stdout + (f"\n[stderr]\n{done.stderr[-3000:]}" if done.returncode else "")
    skipped = next((line for line in done.stdout.splitlines() if line.startswith("skipped:")),
                   None)
    if done.returncode:
        status = f"failed (exit {done.returncode})"
    else:
        status = skipped or "ok"
    data = json.loads(data_file.read_text()) if data_file.exists() else None
    print(f"[report] {bench.name}: {status} in {seconds:.0f} s", flush=True)
    return Result(bench, data, output, seconds, status)


def plot_times(results: dict[str, Result], path: Path) -> bool:
    """Discovery and failover time distributions: every sample, with its median marked."""
    series: list[tuple[str, list[float]]] = []
    discovery = results.get("discovery")
    if discovery and discovery.data and "join" in discovery.data:
        join = discovery.data["join"]
        series += [("join: all see a new node", join.get("joins", [])),
                   ("crash: all see it not alive", join.get("crashes", []))]
    failover = results.get("failover")
    if failover and failover.data:
        for key, label in (("kill", "SIGKILL coordinator -> new one"),
                           ("cut_elect", "cable cut -> new one"),
                           ("cut", "heal -> one coordinator"),
                           ("freeze_elect", "SIGSTOP coordinator -> new one"),
                           ("thaw", "SIGCONT -> one coordinator")):
            if failover.data.get(key):
                series.append((label, failover.data[key]))
    series = [(label, [float(x) for x in xs]) for label, xs in series if xs]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(series) + 1.6))
    for row, (_label, xs) in enumerate(series):
        ax.scatter(xs, [row] * len(xs), alpha=0.6, s=28)
        median = sorted(xs)[len(xs) // 2]
        ax.plot([median, median], [row - 0.3, row + 0.3], color="black", linewidth=2)
    ax.set_yticks(range(len(series)), [f"{label} (n={len(xs)})" for label, xs in series])
    ax.axvline(1.5, color="red", linestyle="--", linewidth=1, label="goal p95 1.5 s (discovery)")
    ax.axvline(2.0, color="orange", linestyle=":", linewidth=1, label="goal p95 2 s (failover)")
    ax.set_xlabel("seconds (black bar: median)")
    ax.set_title("Discovery and failover times")
    ax.legend(loc="lower right", fontsize=8)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def overhead_ratios(med: dict[str, float]) -> list[tuple[str, float, float | None]]:
    """(label, ratio, goal) of each strategy over the source it must wait for."""
    return [(f"{key} / {base} alone", med[key] / med[f"{base} alone"], goal)
            for key, base, goal in (("first_valid", "fastest", 1.05),
                                    ("weighted_vote (split)", "slowest", 1.10),
                                    ("best_of_n", "slowest", 1.10),
                                    ("weighted_vote (agree)", "slowest", None))
            if key in med and f"{base} alone" in med]


def plot_overhead(med: dict[str, float], path: Path) -> None:
    ratios = overhead_ratios(med)
    fig, ax = plt.subplots(figsize=(9, 3.2))
    labels = [label for label, _r, _g in ratios]
    ax.barh(labels, [r for _l, r, _g in ratios],
            color=["tab:red" if g is not None and r > g else "tab:green" for _l, r, g in ratios])
    for i, (_label, ratio, goal) in enumerate(ratios):
        ax.text(ratio, i, f" {ratio:.3f}", va="center")
        if goal is not None:
            ax.plot([goal, goal], [i - 0.4, i + 0.4], color="black", linestyle="--")
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("latency ratio (dashed: goal; below 1 = faster than waiting for that source)")
    ax.set_title("Consensus overhead")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy(curve: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    greedy = curve["greedy"]["accuracy"]
    ax.axhline(greedy, color="black", linestyle="--", label=f"greedy ({greedy:.2f})")
    for temperature, points in curve["weighted_vote"].items():
        ns = sorted(points, key=int)
        ax.plot([int(n) for n in ns], [points[n]["accuracy"] for n in ns], marker="o",
                label=f"weighted_vote, T={temperature}")
    ax.set_xticks(sorted({int(n) for points in curve["weighted_vote"].values() for n in points}))
    ax.set_xlabel("n (candidates)")
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"Accuracy against n ({curve['greedy']['asked']} questions, {curve['backend']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(data: dict[str, dict[str, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(data)
    for offset, (key, label) in enumerate((("direct_rate", "in-process"),
                                           ("http_rate", "through the HTTP API"))):
        xs = [i + offset * 0.38 for i in range(len(names))]
        bars = ax.bar(xs, [data[n][key] for n in names], width=0.36, label=label)
        ax.bar_label(bars, fmt="%.1f")
    ax.set_xticks([i + 0.19 for i in range(len(names))], names)
    ax.set_ylabel("decode tokens/s (median)")
    ax.set_title("Backend decode speed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def route_lines(discovery: Result | None) -> list[str]:
    """Route-mode throughput of N nodes over 1, from the discovery bench's route phase."""
    runs = ((discovery.data or {}).get("route") or {}).get("runs") or [] if discovery else []
    alone = [r["rps"] for r in runs if r.get("nodes") == 1 and r.get("ok")]
    many = [(r["nodes"], r["rps"]) for r in runs if r.get("nodes", 1) > 1 and r.get("ok")]
    if not alone or not many:
        return []
    nodes, rps = many[-1]
    return [f"- route mode: {alone[-1]:.2f} requests/s on 1 node, {rps:.2f} on {nodes} "
            f"({rps / alone[-1]:.2f}x; goal >= {0.9 * nodes:.1f}x)"]


def write_report(results: dict[str, Result], out: Path, quick: bool, loads: tuple[str, str],
                 seconds: float) -> Path:
    """OUT/report.md: each section's plot, its key numbers, and the bench's own output."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip() or "unknown"
    lines = [f"# Local Swarm benchmark report ({'quick' if quick else 'full'} mode)", "",
             f"{datetime.now():%Y-%m-%d %H:%M}, commit {commit}, {os.cpu_count()} cores; load "
             f"average (1, 5, 15 min) {loads[0]} before, {loads[1]} after; {seconds:.0f} s in "
             "all. Absolute times move with the load; ratios within one run do not.", "",
             "| bench | status | time |", "|---|---|---|",
             *(f"| {r.bench.name} | {r.status} | {r.seconds:.0f} s |" for r in results.values()),
             ""]
    if plot_times(results, out / "times.png"):
        lines += ["## Discovery and failover", "", "![times](times.png)", "",
                  *route_lines(results.get("discovery")), ""]
    overhead = results.get("overhead")
    if overhead and overhead.data:
        plot_overhead(overhead.data, out / "overhead.png")
        lines += ["## Consensus overhead", "", "![overhead](overhead.png)", "",
                  *(f"- {label}: {ratio:.3f}" + (f" (goal <= {goal:.2f})" if goal else "")
                    for label, ratio, goal in overhead_ratios(overhead.data)), ""]
    quality = results.get("quality")
    if quality and quality.data:
        plot_accuracy(quality.data, out / "accuracy.png")
        lines += ["## Accuracy against n", "", "![accuracy](accuracy.png)", ""]
    throughput = results.get("throughput")
    if throughput and throughput.data:
        plot_throughput(throughput.data, out / "throughput.png")
        lines += ["## Backend decode speed", "", "![throughput](throughput.png)", "",
                  *(f"- {name}: HTTP / in-process {m['http_rate'] / m['direct_rate']:.3f} "
                    f"(goal >= 0.95), added time to first token "
                    f"{(m['http_ttft'] - m['direct_ttft']) * 1000:+.0f} ms"
                    for name, m in throughput.data.items()), ""]
    lines += ["## What each bench printed", ""]
    for result in results.values():
        lines += [f"<details><summary>{result.bench.name}: {result.status}</summary>", "",
                  "```", result.output.strip()[-6000:], "```", "", "</details>", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="bounded runs (minutes, not tens)")
    parser.add_argument("--only", default=",".join(b.name for b in BENCHES),
                        help=f"comma-separated benches of {', '.join(b.name for b in BENCHES)}")
    parser.add_argument("--out", type=Path, default=Path("bench-report"))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    if bad := set(chosen) - {b.name for b in BENCHES}:
        parser.error(f"unknown bench(es) {', '.join(sorted(bad))}")
    args.out.mkdir(parents=True, exist_ok=True)
    started, before = time.monotonic(), load_average()
    results = {b.name: run(b, args.quick, args.out) for b in BENCHES if b.name in chosen}
    path = write_report(results, args.out, args.quick, (before, load_average()),
                        time.monotonic() - started)
    print(f"[report] wrote {path}")
    return 0 if all(not r.status.startswith(("failed", "timed")) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
