"""Structured output through a real node: the share of JSON answers that parse and validate.

Starts `python main.py` (the default engine: llama.cpp on the embedded model's F16 copy when
installed; `--backend`, `--quant`, `--instances` pass through) on a free loopback port and sends
json_object and json_schema requests with every combination of strategy (route, best_of_n,
weighted_vote, first_valid; swarm.n = 2), temperature (0 and 0.8), and streamed or not, for each
prompt; then the OpenAI SDK's `chat.completions.parse` with a pydantic model. An answer counts
when `json.loads` accepts it and, for json_schema, `jsonschema` validates it. Prints the counts
per format, strategy, temperature and stream, each failure, and the load average.
Run: python bench/structured_output.py [--prompts 2] [--max-tokens 64]; 64 requests by default.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import openai
from jsonschema import validate
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.node_process import start_node  # noqa: E402

PROMPTS = ("Describe a person as JSON.", "What is the capital of France?",
           "Give me a recipe as JSON.", "Invent a pet and describe it.")
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "hobbies"],
          "properties": {"name": {"type": "string", "maxLength": 30},
                         "age": {"type": "integer", "minimum": 0, "maximum": 130},
                         "hobbies": {"type": "array", "maxItems": 3,
                                     "items": {"type": "string", "maxLength": 20}}}}
FORMATS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "json_object": ({"type": "json_object"}, {"type": "object"}),
    "json_schema": ({"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
                    PERSON)}
STRATEGIES = ("route", "best_of_n", "weighted_vote", "first_valid")


class Person(BaseModel):
    """What `chat.completions.parse` is asked for."""

    name: str = Field(max_length=30)
    age: int



def ask(client: openai.OpenAI, prompt: str, response_format: dict, strategy: str,
        temperature: float, stream: bool, seed: int, max_tokens: int) -> str:
    """One request's answer text."""
    swarm = {} if strategy == "route" else {"swarm": {"strategy": strategy, "n": 2}}
    kwargs: dict[str, Any] = dict(model="default", messages=[{"role": "user", "content": prompt}],
                  response_format=response_format, temperature=temperature, seed=seed,
                  max_tokens=max_tokens, extra_body=swarm)
    if not stream:
        return client.chat.completions.create(**kwargs).choices[0].message.content or ""
    chunks = client.chat.completions.create(stream=True, **kwargs)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def check(text: str, schema: dict) -> str:
    """"" when `text` parses and validates, else why not."""
    try:
        validate(json.loads(text), schema)
    except Exception as exc:  # noqa: BLE001 (the reason is what we print)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    return ""


def main() -> None:
    """Parse arguments, start a node, send every combination, print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2, help="how many of the prompts to use")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--node-args", default="--instances 2 --threads 1",
                        help="extra flags for main.py (default: %(default)s)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    proc, url = start_node(args.node_args.split())
    ok: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        combos = itertools.product(PROMPTS[:args.prompts], FORMATS.items(), STRATEGIES,
                                   (0.0, 0.8), (False, True))
        for i, (prompt, (name, (fmt, schema)), strategy, temperature, stream) in enumerate(combos):
            text = ask(client, prompt, fmt, strategy, temperature, stream, i, args.max_tokens)
            why = check(text, schema)
            for key in ("all", name, strategy, f"T={temperature:g}",
                        "stream" if stream else "whole"):
                sent[key] += 1
                ok[key] += not why
            if why:
                failures.append(f"{name} {strategy} T={temperature:g} stream={stream} "
                                f"{prompt!r}: {why}: {text[:80]!r}")
        for prompt in PROMPTS[:args.prompts]:
            reply = client.chat.completions.parse(
                model="default", messages=[{"role": "user", "content": prompt}],
                response_format=Person, max_tokens=args.max_tokens)
            sent["parse"] += 1
            ok["parse"] += isinstance(reply.choices[0].message.parsed, Person)
    finally:
        proc.terminate()
        proc.wait(10)
    for key in sent:
        print(f"{key:14s} {ok[key]:4d} / {sent[key]:4d} parse and validate")
    for failure in failures:
        print("FAILED", failure)
    print(f"load average {os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
