"""Consensus quality: exact-match accuracy of weighted_vote over n against one greedy answer.

Builds its own short-answer set of 50 questions (capitals, colours, opposites, simple facts, yes/no,
counts and tiny sums, each with its accepted answers; fixed before any result was seen, except for
adding "castilian"), loads the embedded model in an InstancePool of 2 instances x 1 thread
(llama.cpp when installed, else transformers) and asks each question
  - greedily: temperature 0, one candidate (the baseline), and
  - by weighted_vote with n = 1, 3, 5, 9 sampled candidates at each --temperature,
through `consensus.runner.run_consensus`, the API's own path, with the validator the API gives
weighted_vote (non-empty; truncated answers vote). Question i's request seed is 1000 + 100 i and
candidate k gets seed + k, so the n = 3 candidates are the first 3 of the n = 9 ones and a run is
reproducible. The prompt is the question plus "Answer with one word." (or "... a number.", "Answer
yes or no.").

Exact match (`is_correct`): a winning text is right when `normalize_answer` keys it as the
question's number, or when its `normalize_text` form (casefolded, punctuation and articles dropped:
what voting compares) contains an accepted answer as whole words and no rejected one ("yes"
questions reject "no" and vice versa). So "The capital of France is Paris." is right for Paris and
"It is 4." for 2 + 2, while "No, the sun is hot." is wrong for "Is the sun hot?".

Prints, per temperature and n: accuracy, its difference from greedy, questions fixed (greedy wrong,
vote right) and broken (the reverse), mean latency per question, the fraction of runs that stopped
early, and the mean number of candidates that arrived before the decision.
Run: python bench/consensus_quality.py [--temperature 0.5 0.7] [--dump out.json]; about 4 to 6
minutes per temperature on 2 cores with llama.cpp.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consensus.candidates import ConsensusError, Decision  # noqa: E402
from consensus.normalize import normalize_answer, normalize_text  # noqa: E402
from consensus.runner import run_consensus  # noqa: E402
from consensus.validators import build_validator  # noqa: E402
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams  # noqa: E402
from swarm.engine.loader import load_backends, plan_from_config  # noqa: E402
from swarm.engine.pool import InstancePool  # noqa: E402
from swarm.node.config import load_config  # noqa: E402

ONE_WORD = "Answer with one word."
NUMBER = "Answer with a number."
YES_NO = "Answer yes or no."


@dataclass(frozen=True)
class Question:
    """A question, the instruction appended to it, and the answers that count as right."""

    text: str
    accept: tuple[str, ...]
    reject: tuple[str, ...] = ()
    instruction: str = ONE_WORD
    number: str | None = None

    @property
    def prompt(self) -> str:
        """The user message sent to the model."""
        return f"{self.text} {self.instruction}"


def capital(country: str, *cities: str) -> Question:
    return Question(f"What is the capital of {country}?", cities)


def colour(thing: str, *colours: str) -> Question:
    return Question(f"What colour is {thing}?", colours)


def opposite(word: str, *answers: str) -> Question:
    return Question(f"What is the opposite of {word}?", answers)


def yes_no(text: str, yes: bool) -> Question:
    answer, other = ("yes", "no") if yes else ("no", "yes")
    return Question(text, (answer,), (other,), YES_NO)


def count(text: str, value: int, word: str) -> Question:
    return Question(text, (word, str(value)), (), NUMBER, str(value))


QUESTIONS: tuple[Question, ...] = (
    capital("France", "paris"), capital("Japan", "tokyo"), capital("Italy", "rome"),
    capital("Germany", "berlin"), capital("Spain", "madrid"),
    capital("the United Kingdom", "london"), capital("Russia", "moscow"),
    capital("China", "beijing"), capital("Egypt", "cairo"), capital("Greece", "athens"),
    colour("the sky on a clear day", "blue"), colour("grass", "green"), colour("snow", "white"),
    colour("a banana", "yellow"), colour("coal", "black"), colour("blood", "red"),
    colour("a ripe tomato", "red"), colour("milk", "white"),
    opposite("hot", "cold"), opposite("up", "down"), opposite("big", "small", "little"),
    opposite("day", "night"), opposite("fast", "slow"), opposite("happy", "sad", "unhappy"),
    opposite("left", "right"), opposite("open", "closed", "close", "shut"),
    Question("Which planet do we live on?", ("earth",)),
    Question("Which animal says moo?", ("cow", "cows")),
    Question("What do bees make?", ("honey",)),
    Question("What is the largest planet in the solar system?", ("jupiter",)),
    Question("Who wrote Romeo and Juliet?", ("shakespeare",)),
    Question("What is frozen water called?", ("ice",)),
    Question("In which direction does the sun rise?", ("east",)),
    Question("What language is spoken in Spain?", ("spanish", "castilian")),
    Question("What is the largest ocean on Earth?", ("pacific",)),
    Question("Which animal is known as the king of the jungle?", ("lion",)),
    yes_no("Is the sun hot?", True), yes_no("Is ice cold?", True),
    yes_no("Can fish swim?", True), yes_no("Is fire cold?", False),
    yes_no("Can a dog fly?", False), yes_no("Do cats bark?", False),
    count("How many legs does a dog have?", 4, "four"),
    count("How many days are in a week?", 7, "seven"),
    count("How many hours are in a day?", 24, "twenty four"),
    count("What is 2 + 2?", 4, "four"), count("What is 1 + 1?", 2, "two"),
    count("What is 3 + 2?", 5, "five"), count("What is 5 - 3?", 2, "two"),
    count("What is 2 times 3?", 6, "six"),
)


def _contains(words: list[str], phrase: str) -> bool:
    target = phrase.split()
    return any(words[i:i + len(target)] == target for i in range(len(words) - len(target) + 1))


def is_correct(answer: str, question: Question) -> bool:
    """Exact match as defined in the module docstring."""
    if question.number is not None:
        key = normalize_answer(answer)
        if key.kind == "number":
            return key.value == question.number
    words = normalize_text(answer).split()
    return (any(_contains(words, normalize_text(a)) for a in question.accept)
            and not any(_contains(words, normalize_text(r)) for r in question.reject))


@dataclass
class Tally:
    """Outcomes of one configuration (greedy, or one temperature and n) over the question set."""

    right: list[bool] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    early: int = 0
    arrived: list[int] = field(default_factory=list)
    failed: int = 0

    @property
    def asked(self) -> int:
        return len(self.latencies)

    @property
    def correct(self) -> int:
        return sum(self.right)


def _arrived(decision: Decision) -> int:
    return sum(c.arrival >= 0 for c in decision.candidates)


async def ask_question(pool: InstancePool, index: int, question: Question, *, n: int,
                       temperature: float, max_tokens: int) -> tuple[Decision | None, float]:
    """One weighted_vote run; (decision or None if no candidate was usable, seconds)."""
    seed = 1000 + 100 * index
    request = GenerationRequest(
        messages=(ChatMessage("user", question.prompt),),
        params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed))

    started = time.perf_counter()
    try:
        decision = await run_consensus(
            "weighted_vote", pool.instances, request, n=n, timeout_s=120.0,
            validator=build_validator(None, require_finished=False), rng=random.Random(seed))
    except ConsensusError:
        decision = None
    return decision, time.perf_counter() - started


def _record(tally: Tally, decision: Decision | None, latency: float, question: Question) -> str:
    tally.latencies.append(latency)
    if decision is None or decision.completion is None:
        tally.failed += 1
        tally.right.append(False)
        return ""
    text = decision.completion.text
    tally.right.append(is_correct(text, question))
    tally.early += decision.early_stopped
    tally.arrived.append(_arrived(decision))
    return text


def _dump_row(decision: Decision | None, question: Question, winner: str) -> dict:
    candidates = [] if decision is None else [
        {"text": c.completion.text if c.completion else None, "arrival": c.arrival,
         "source": c.source, "mean_logprob": c.mean_logprob if c.completion else None}
        for c in decision.candidates]
    groups = [] if decision is None else [
        {"answer": g.answer, "kind": g.kind, "weight": g.weight, "members": list(g.members)}
        for g in decision.groups]
    return {"winner": winner, "correct": is_correct(winner, question),
            "early_stop": bool(decision and decision.early_stopped),
            "candidates": candidates, "groups": groups}


async def measure(args: argparse.Namespace) -> tuple[str, dict[str, Tally], dict]:
    """Run every configuration; (backend name, tallies by label, dump)."""
    questions = QUESTIONS[:args.limit] if args.limit else QUESTIONS
    config = load_config(cli={"model.instances": 2, "model.threads": 1,
                              "model.backend": args.backend})
    pool = InstancePool(load_backends(plan_from_config(config), config))
    tallies: dict[str, Tally] = {}
    dump: dict = {"questions": [q.prompt for q in questions], "runs": {}}
    try:
        configs = [("greedy", 0.0, 1)] + [(f"T={t:g} n={n}", t, n)
                                          for t in args.temperature for n in args.n]
        for label, temperature, n in configs:
            tally = tallies[label] = Tally()
            rows = dump["runs"][label] = []
            for i, question in enumerate(questions):
                decision, latency = await ask_question(
                    pool, i, question, n=n, temperature=temperature, max_tokens=args.max_tokens)
                winner = _record(tally, decision, latency, question)
                rows.append(_dump_row(decision, question, winner))
            print(f"  {label:14s} {tally.correct}/{tally.asked} correct", file=sys.stderr)
        return pool.backend_name, tallies, dump
    finally:
        await drain(pool)
        pool.close()


async def drain(pool: InstancePool) -> None:
    """Wait until every instance has finished its work, cancelled candidates included.

    A candidate cancelled by an early stop still runs until its next token, and `pool.close()`
    frees the model without waiting for it (a crash in llama.cpp); a one-token request queued
    behind it on each instance's single worker returns only after it.
    """
    tiny = GenerationRequest(prompt="Hi", params=SamplingParams(max_tokens=1, temperature=0.0))
    await asyncio.gather(*(instance.complete(tiny) for instance in pool.instances),
                         return_exceptions=True)


def report(backend: str, tallies: dict[str, Tally], temperatures: list[float],
           ns: list[int]) -> str:
    """The accuracy curve as a text table."""
    greedy = tallies["greedy"]
    base = greedy.correct / greedy.asked
    lines = [f"backend {backend}, {greedy.asked} questions; exact match of the winning answer",
             f"greedy (temperature 0, one candidate): accuracy {base:.3f} "
             f"({greedy.correct}/{greedy.asked}), mean latency "
             f"{statistics.fmean(greedy.latencies):.2f} s", ""]
    for t in temperatures:
        lines.append(f"weighted_vote, temperature {t:g}")
        lines.append("   n  accuracy  vs greedy  fixed  broken  latency_s  early_stop  arrived")
        for n in ns:
            tally = tallies[f"T={t:g} n={n}"]
            acc = tally.correct / tally.asked
            pairs = list(zip(tally.right, greedy.right, strict=True))
            fixed = sum(r and not g for r, g in pairs)
            broken = sum(g and not r for r, g in pairs)
            arrived = statistics.fmean(tally.arrived) if tally.arrived else 0.0
            lines.append(f"  {n:2d}  {acc:8.3f}  {acc - base:+9.3f}  {fixed:5d}  {broken:6d}  "
                         f"{statistics.fmean(tally.latencies):9.2f}  "
                         f"{tally.early / tally.asked:10.2f}  {arrived:7.2f}")
        failed = sum(tallies[f"T={t:g} n={n}"].failed for n in ns)
        if failed:
            lines.append(f"  ({failed} runs had no usable candidate: counted wrong)")
        lines.append("")
    return "\n".join(lines)


def curve(backend: str, tallies: dict[str, Tally], temperatures: list[float],
          ns: list[int]) -> dict:
    """The accuracy curve as plain data: greedy, then per temperature and n."""
    def point(tally: Tally) -> dict:
        return {"accuracy": tally.correct / tally.asked, "asked": tally.asked,
                "latency_s": statistics.fmean(tally.latencies),
                "early_stop": tally.early / tally.asked}

    return {"backend": backend, "greedy": point(tallies["greedy"]),
            "weighted_vote": {f"{t:g}": {str(n): point(tallies[f"T={t:g} n={n}"]) for n in ns}
                              for t in temperatures}}


def main() -> None:
    """Parse arguments, run the bench and print the curve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 3, 5, 9])
    parser.add_argument("--max-tokens", type=int, default=20)
    parser.add_argument("--backend", default="auto", choices=["auto", "llamacpp", "transformers"])
    parser.add_argument("--limit", type=int, default=0, help="only the first LIMIT questions")
    parser.add_argument("--dump", type=Path, help="write every candidate and group as JSON here")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write the accuracy curve as JSON (bench/report.py reads it)")
    args = parser.parse_args()
    started = time.perf_counter()
    backend, tallies, dump = asyncio.run(measure(args))
    print(report(backend, tallies, args.temperature, args.n))
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(curve(backend, tallies, args.temperature, args.n)))
    if args.dump:
        args.dump.write_text(json.dumps(dump, indent=1))


if __name__ == "__main__":
    main()
