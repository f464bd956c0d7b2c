"""Embeddings through a real node: inputs per second, and a sanity measure of the vectors.

Starts `python main.py` (flags in --node-args) on a free loopback port and sends
`client.embeddings.create` with batches of 1, 16 and 64 sentences (float and base64); prints
inputs and tokens per second per batch size. Then 16 (anchor, paraphrase, unrelated) triplets:
how often the paraphrase is closer to its anchor than the unrelated sentence, and how often
the paraphrase is the anchor's nearest among all 47 other sentences (retrieval@1). With
--poolings, the same measure for the plain mean and the last token beside the served
position-weighted mean, from the transformers model's hidden states in this process (why
swarm/engine/embedding.py weights by position). The load average is printed beside the numbers.
Run: python bench/embeddings.py [--rounds 3] [--node-args "--backend transformers"] [--poolings]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import openai

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.node_process import start_node  # noqa: E402

sys.path.insert(0, str(ROOT))

TRIPLETS = [
    ("The cat sat on the mat.", "A kitten was sitting on the rug.", "Interest rates rose again."),
    ("How do I reset my password?", "I forgot my password, how can I change it?",
     "The museum opens at nine."),
    ("The weather is sunny today.", "It is a bright and sunny day.", "He plays the violin."),
    ("She is learning to play the piano.", "She takes piano lessons.",
     "The server crashed overnight."),
    ("The train to London was delayed.", "Our London train ran late.",
     "Bananas are rich in potassium."),
    ("Python is a programming language.", "Python is a language for writing software.",
     "The lake froze in January."),
    ("I love eating pizza.", "Pizza is my favourite food.", "The stock market fell sharply."),
    ("The dog barked at the mailman.", "The postman was barked at by the dog.",
     "Quantum computers use qubits."),
    ("Water boils at 100 degrees Celsius.", "At 100 C water starts to boil.",
     "She painted the fence green."),
    ("The meeting is moved to Friday.", "We rescheduled the meeting for Friday.",
     "Penguins live in Antarctica."),
    ("My phone battery is dead.", "My mobile has run out of charge.",
     "The novel won a literary prize."),
    ("The children played football in the park.", "Kids were playing soccer in the park.",
     "The recipe needs two eggs."),
    ("He bought a new car yesterday.", "Yesterday he purchased a new automobile.",
     "The volcano erupted last year."),
    ("The restaurant was very noisy.", "It was extremely loud in the restaurant.",
     "Mars has two small moons."),
    ("Please close the window.", "Could you shut the window?", "The election results are in."),
    ("The flight was cancelled due to snow.", "Snow caused the flight to be cancelled.",
     "He is allergic to peanuts."),
]



def sanity(vectors: np.ndarray) -> tuple[int, int]:
    """(paraphrase closer than unrelated, paraphrase nearest of all) over the triplets; rows
    are anchor, paraphrase, unrelated for each triplet in turn."""
    closer = nearest = 0
    sims = vectors @ vectors.T
    for t in range(len(TRIPLETS)):
        a, p, u = 3 * t, 3 * t + 1, 3 * t + 2
        closer += bool(sims[a, p] > sims[a, u])
        others = [j for j in range(len(vectors)) if j != a]
        nearest += max(others, key=lambda j: sims[a, j]) == p
    return closer, nearest


def poolings() -> None:
    """The triplet measure for three poolings of the transformers model's hidden states."""
    import torch

    from swarm.engine.embedding import normalize, pool
    from swarm.engine.loader import load_backends, plan_from_config
    from swarm.node.config import load_config

    config = load_config(env={}, cli={"model.backend": "transformers", "model.instances": 1})
    backend = load_backends(plan_from_config(config), config)[0]
    texts = [s for triplet in TRIPLETS for s in triplet]
    states = []
    with torch.inference_mode():
        for text in texts:
            ids = backend.tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
            out = backend.model.base_model(input_ids=torch.tensor([ids]))  # type: ignore[attr-defined]
            states.append(out.last_hidden_state[0].float().numpy())
    ways = {"position-weighted mean": pool,
            "mean": lambda s: normalize(s.mean(axis=0)),
            "last token": lambda s: normalize(s[-1])}
    for name, way in ways.items():
        closer, nearest = sanity(np.array([way(s) for s in states]))
        print(f"pooling {name:24s} closer {closer:2d}/16  retrieval@1 {nearest:2d}/16")


def main() -> None:
    """Parse arguments, start a node, time the batches, print the sanity measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="requests per batch size")
    parser.add_argument("--node-args", default="--instances 1",
                        help="extra flags for main.py (default: %(default)s)")
    parser.add_argument("--poolings", action="store_true",
                        help="also compare poolings on the transformers model in this process")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at the start; node: {args.node_args}")
    proc, url = start_node(args.node_args.split())
    sentences = [s for triplet in TRIPLETS for s in triplet]
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        client.embeddings.create(model="default", input="warm up")
        for size in (1, 16, 64):
            batch = (sentences * 2)[:size]
            for encoding in ("float", "base64"):
                tokens = 0
                started = time.perf_counter()
                for _ in range(args.rounds):
                    reply = client.embeddings.create(model="default", input=batch,
                                                     encoding_format=encoding)
                    tokens += reply.usage.total_tokens
                took = time.perf_counter() - started
                print(f"batch {size:3d} {encoding:6s} {size * args.rounds / took:7.1f} inputs/s "
                      f"{tokens / took:8.0f} tokens/s ({took / args.rounds * 1000:.0f} ms/request)")
        reply = client.embeddings.create(model="default", input=sentences, encoding_format="float")
        closer, nearest = sanity(np.array([d.embedding for d in reply.data]))
        print(f"served vectors: paraphrase closer than unrelated {closer}/16, "
              f"paraphrase nearest of all 47 {nearest}/16")
    finally:
        proc.terminate()
        proc.wait(10)
    if args.poolings:
        poolings()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
