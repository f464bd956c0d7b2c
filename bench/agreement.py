"""Correctness of each engine and file type: greedy agreement with the float32 reference.

For each configuration (engine and weights), on a fixed set of 52 prompts, the share of prompts
whose first 32 greedy tokens (fewer when the reference stops earlier) equal those of the
reference, transformers in float32 over the same weights (the embedded model's GGUF dequantized).
Beside it: the README example's answer, greedy accuracy on bench/consensus_quality.py's 50
questions (its exact-match rule, 20 tokens), and decode speed (tokens after the first over the
time they took, all prompts together), with the ratio to the first llama.cpp configuration.
Every configuration is loaded in one process with the same threads, and they answer each prompt
in turn (never at once), so background load falls on all of them alike.
Run: python bench/agreement.py [--configs transformers:float32 llamacpp:file llamacpp:f16 ...]
[--threads N] [--tokens 32] [--limit N] [--show-diffs] [--dump FILE]; about 8 minutes on 2 quiet
cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from consensus_quality import QUESTIONS, is_correct  # type: ignore[import-not-found]  # noqa: E402

from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams  # noqa: E402
from swarm.engine.loader import llamacpp_available, load_backends, plan_from_config  # noqa: E402
from swarm.node.config import load_config  # noqa: E402

README_EXAMPLE = "What is the capital of France?"
PROMPTS: tuple[str, ...] = (
    README_EXAMPLE, "Who wrote Romeo and Juliet?", "What is the largest planet in our solar system?",
    "Name three primary colours.", "What is the boiling point of water in Celsius?",
    "Explain photosynthesis in one sentence.", "Write a haiku about the sea.",
    "Give me a tip for sleeping better.", "What does a CPU do?", "Translate 'thank you' into Spanish.",
    "What is 12 times 12?", "List four fruits.", "Why is the sky blue?",
    "What is the opposite of 'ancient'?", "Describe a cat in two sentences.",
    "What is the capital of Japan?", "How many continents are there?",
    "Write a short greeting for a birthday card.", "What is DNA?", "Suggest a name for a pet goldfish.",
    "What language is spoken in Brazil?", "What is the freezing point of water in Fahrenheit?",
    "Summarise the story of Cinderella in one sentence.", "What are clouds made of?",
    "Give an example of a mammal that can fly.", "What is a prime number?",
    "Write one sentence about autumn.", "Who painted the Mona Lisa?", "How do bees make honey?",
    "What is the main ingredient of guacamole?", "What does HTML stand for?",
    "Name a famous scientist and what they discovered.", "What is the speed of light?",
    "Tell me a fun fact about octopuses.", "What is the tallest mountain on Earth?",
    "Explain what a noun is.", "How many sides does a hexagon have?", "What is gravity?",
    "Recommend a healthy breakfast.", "Write a two-line poem about coffee.",
    "What is the chemical symbol for gold?", "Why do we have seasons?",
    "What is the capital of Australia?", "Describe the taste of a lemon.",
    "How does a rainbow form?", "What is the difference between weather and climate?",
    "Give me three words that rhyme with 'cat'.", "What is the largest ocean?",
    "What do plants need to grow?", "Who was the first person to walk on the Moon?",
    "Write a sentence using the word 'serendipity'.", "What is an algorithm?",
)


@dataclass
class Result:
    """One configuration's figures."""

    label: str
    ids: list[list[int]] = field(default_factory=list)
    readme: str = ""
    right: int = 0
    asked: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")


def _request(text: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", text),),
                             params=SamplingParams(max_tokens=max_tokens, temperature=0.0))


def greedy(backend, text: str, max_tokens: int, result: Result) -> tuple[list[int], str]:
    """Token ids and text of one greedy answer; its decode time goes into `result`."""
    ids, pieces, stamps = [], [], []
    for event in backend.stream(_request(text, max_tokens), threading.Event()):
        pieces.append(event.text)
        if event.token_id < 0:
            continue  # held-back text at the end, no token
        stamps.append(time.perf_counter())
        ids.append(event.token_id)
    if len(stamps) > 1:
        result.tokens += len(stamps) - 1
        result.seconds += stamps[-1] - stamps[0]
    return ids, "".join(pieces)


def load(label: str, threads: int):
    """One configuration's backend, e.g. "llamacpp:f16" or "transformers:float32"."""
    engine, weights = label.split(":")
    key = "model.dtype" if engine == "transformers" else "model.quant"
    config = load_config(env={k: v for k, v in os.environ.items()
                              if k == "LOCAL_SWARM_MODEL_CACHE_DIR"},
                         cli={"model.backend": engine, key: weights, "model.threads": threads})
    backend = load_backends(plan_from_config(config), config)[0]
    greedy(backend, "Hi", 4, Result(label))  # warm up
    return backend


def _dump(path: Path | None, results: list[Result]) -> None:
    if path is not None:
        path.write_text(json.dumps([{"label": r.label, "ids": r.ids, "readme": r.readme,
                                     "right": r.right, "asked": r.asked, "tokens": r.tokens,
                                     "seconds": r.seconds} for r in results]))


def measure(labels: list[str], threads: int, tokens: int, prompts: tuple[str, ...],
            questions: tuple, dump: Path | None = None) -> list[Result]:
    """Load every configuration, then ask each prompt and question of each in turn, so that
    background load falls on all of them alike."""
    backends = [load(label, threads) for label in labels]
    results = [Result(label) for label in labels]
    try:
        for i, text in enumerate(prompts):
            for backend, result in zip(backends, results, strict=True):
                ids, answer = greedy(backend, text, tokens, result)
                result.ids.append(ids)
                if text == README_EXAMPLE:
                    result.readme = answer
            print(f"  prompt {i + 1}/{len(prompts)}", file=sys.stderr, end="\r")
            _dump(dump, results)
        for question in questions:
            for backend, result in zip(backends, results, strict=True):
                _ids, answer = greedy(backend, question.prompt, 20, result)
                result.right += is_correct(answer, question)
                result.asked += 1
            _dump(dump, results)
    finally:
        for backend in backends:
            backend.close()
    return results


def report(results: list[Result], show_diffs: bool, prompts: tuple[str, ...]) -> str:
    """The side-by-side table (the first result is the reference)."""
    reference = results[0]
    speed_base = next((r for r in results if r.label.startswith("llamacpp")), reference)
    lines = [f"reference: {reference.label}; {len(prompts)} prompts; agreement = identical "
             f"first {len(reference.ids[0]) and max(len(i) for i in reference.ids)} greedy tokens",
             f"{'configuration':22s} {'agreement':>9s} {'accuracy':>9s} {'tok/s':>7s} "
             f"{'speed':>6s}  README example"]
    for r in results:
        same = sum(a == b for a, b in zip(r.ids, reference.ids, strict=True))
        lines.append(f"{r.label:22s} {same / len(prompts):9.3f} {r.right / r.asked:9.3f} "
                     f"{r.rate:7.1f} {r.rate / speed_base.rate:5.2f}x  {r.readme[:60]!r}")
        if show_diffs and r is not reference:
            for text, mine, ref in zip(prompts, r.ids, reference.ids, strict=True):
                if mine != ref:
                    at = next((i for i, (a, b) in enumerate(zip(mine, ref, strict=False)) if a != b),
                              min(len(mine), len(ref)))
                    lines.append(f"    differs at token {at}: {text!r}")
    lines.append(f"accuracy: exact match on bench/consensus_quality.py's {reference.asked} "
                 f"questions; speed: tok/s over {speed_base.label}'s")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, measure every configuration, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ["transformers:float32"]
    if llamacpp_available():
        default += ["llamacpp:file", "llamacpp:f16", "llamacpp:f32"]
    parser.add_argument("--configs", nargs="+", default=default,
                        help="ENGINE:WEIGHTS, the first is the reference (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="only the first LIMIT prompts")
    parser.add_argument("--show-diffs", action="store_true")
    parser.add_argument("--dump", type=Path, help="keep the figures so far in this JSON file")
    args = parser.parse_args()
    prompts = PROMPTS[:args.limit] if args.limit else PROMPTS
    questions = QUESTIONS[:args.limit] if args.limit else QUESTIONS
    started = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f} at the start; {args.threads} threads")
    results = measure(args.configs, args.threads, args.tokens, prompts, questions, args.dump)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(report(results, args.show_diffs, prompts))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
