"""Tool calls through a real node: the share of calls whose arguments validate, and their cost.

Starts `python main.py` (flags in --node-args) on a free loopback port and asks, with the
official openai SDK, each prompt with two tools (get_weather, get_time) under tool_choice
"required", a named function and "auto", at temperature 0.8, streamed and not. A call counts
as valid when it names an offered function (the named one when named) and `jsonschema`
validates its arguments; an answer under "required" or a named function must be calls. Under
"auto" it prints how often the model chose to call. Then the same prompts without tools, as
the baseline of the same run: seconds per request with tools over seconds without. The load
average is printed beside the numbers.
Run: python bench/tool_calls.py [--rounds 5] [--prompts 4] [--max-tokens 48]
     [--node-args "--backend transformers"]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import openai
from jsonschema import validate

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.node_process import start_node  # noqa: E402

PROMPTS = ("What is the weather in Paris?", "Is it raining in Tokyo right now?",
           "What time is it in New York?", "Tell me the temperature in Berlin in fahrenheit.")
WEATHER = {"type": "object", "required": ["city"],
           "properties": {"city": {"type": "string", "maxLength": 30},
                          "unit": {"enum": ["celsius", "fahrenheit"]}}}
TIME = {"type": "object", "required": ["zone"],
        "properties": {"zone": {"type": "string", "maxLength": 40}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER,
                                           "description": "Current weather in a city"}},
         {"type": "function", "function": {"name": "get_time", "parameters": TIME,
                                           "description": "Local time in a time zone"}}]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
CHOICES: dict[str, Any] = {"required": "required", "auto": "auto",
                           "named": {"type": "function", "function": {"name": "get_time"}}}



def ask(client: openai.OpenAI, prompt: str, stream: bool, seed: int, max_tokens: int,
        choice: Any = None) -> tuple[list[tuple[str, str]], str, str]:
    """(calls as (name, arguments), content, finish reason) of one request."""
    kwargs: dict[str, Any] = dict(model="default", temperature=0.8, seed=seed,
                                  max_tokens=max_tokens,
                                  messages=[{"role": "user", "content": prompt}])
    if choice is not None:
        kwargs.update(tools=TOOLS, tool_choice=choice)
    if not stream:
        reply = client.chat.completions.create(**kwargs).choices[0]
        calls = [(c.function.name, c.function.arguments)
                 for c in reply.message.tool_calls or []]
        return calls, reply.message.content or "", reply.finish_reason
    made: dict[int, list[str]] = {}
    content, finish = "", ""
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for c in chunk.choices:
            content += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                call = made.setdefault(d.index, ["", ""])
                call[0] += d.function.name or "" if d.function else ""
                call[1] += d.function.arguments or "" if d.function else ""
            finish = c.finish_reason or finish
    return [(n, a) for n, a in made.values()], content, finish


def invalid(calls: list[tuple[str, str]], kind: str) -> str:
    """"" when every call is valid for tool_choice `kind`, else why not."""
    if kind != "auto" and not calls:
        return "no call"
    for name, arguments in calls:
        if name not in SCHEMAS or (kind == "named" and name != "get_time"):
            return f"calls {name!r}"
        try:
            validate(json.loads(arguments), SCHEMAS[name])
        except Exception as exc:  # noqa: BLE001 (the reason is what we print)
            return f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    return ""


def main() -> None:
    """Parse arguments, start a node, send the requests, print the counts and timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="seeds per prompt and mode")
    parser.add_argument("--prompts", type=int, default=4, help="how many of the prompts to use")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--node-args", default="--instances 1",
                        help="extra flags for main.py (default: %(default)s)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at the start; node: {args.node_args}")
    proc, url = start_node(args.node_args.split())
    sent: Counter[str] = Counter()
    valid: Counter[str] = Counter()
    called: Counter[str] = Counter()
    seconds: defaultdict[str, float] = defaultdict(float)
    failures: list[str] = []
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        for seed in range(args.rounds):
            for prompt in PROMPTS[:args.prompts]:
                for stream in (False, True):
                    for kind, choice in (*CHOICES.items(), ("plain", None)):
                        started = time.perf_counter()
                        calls, content, finish = ask(client, prompt, stream, seed,
                                                     args.max_tokens, choice)
                        seconds[kind] += time.perf_counter() - started
                        key = f"{kind} {'stream' if stream else 'whole'}"
                        sent[kind] += 1
                        sent[key] += 1
                        called[kind] += bool(calls)
                        if kind == "plain":
                            continue
                        why = invalid(calls, kind)
                        if calls and finish != "tool_calls":
                            why = why or f"finish_reason {finish}"
                        valid[kind] += not why
                        valid[key] += not why
                        if why:
                            failures.append(f"{key} seed={seed} {prompt!r}: {why}: "
                                            f"{calls or content[:60]!r}")
    finally:
        proc.terminate()
        proc.wait(10)
    for key in sorted(k for k in sent if not k.startswith("plain") and " " in k):
        print(f"{key:16s} {valid[key]:3d} / {sent[key]:3d} valid")
    for kind in CHOICES:
        print(f"{kind:9s} called {called[kind]:3d} / {sent[kind]:3d}; "
              f"{seconds[kind] / sent[kind]:.2f} s/request, "
              f"{seconds[kind] / seconds['plain']:.2f}x the plain request's time")
    print(f"plain     {seconds['plain'] / sent['plain']:.2f} s/request (no tools, same prompts)")
    for failure in failures:
        print("FAILED", failure)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
