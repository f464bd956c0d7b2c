"""Runs inside the span venv: generate through the span chain (petals' distributed client), or
locally with the same code path for a reference, speaking JSON lines on stdin and stdout.

    python worker.py --model DIR (--initial-peers MADDR... --dht-prefix P | --local)

stdin, one JSON object a line:
  {"op": "generate", "id": ID, "input_ids": [...] | "prompt": TEXT | "messages": [...],
   "max_tokens": N, "temperature": T, "top_p": P, "seed": S, "ignore_eos": false,
   "logprobs": false, "top_logprobs": K}
  {"op": "gone", "peers": [base58 peer id, ...]}   a server is gone: re-route now
  {"op": "cancel", "id": ID}                       stop that generation after its next token
  {"op": "reset", "id": ID}   a new plan: every server may be used again, routes read anew
                               (in turn with generations; answered {"id", "done", "refreshed"})
stdout: {"event": "ready", ...} once, then per generation {"id", "token", "text", "logprob"} lines
(the first also with "prompt_tokens"; with "logprobs" the token's bytes as hex in "piece", with
"top_logprobs" K the K likeliest tokens as [[hex bytes, logprob], ...] in "top") and one
{"id", "done": true, "finish_reason", "prompt_tokens", "completion_tokens", "decode_s"} or
{"id", "error": MESSAGE}. Generations run one at a time, in order, on a thread of their own, so a
"gone" line is acted on while a step is in flight.
"""
import argparse
import json
import os
import queue
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import compat  # noqa: E402

compat.apply()
import guard  # noqa: E402

guard.install()
import fixes  # noqa: E402
import orphan  # noqa: E402

fixes.install()
import torch  # noqa: E402

_out_lock = threading.Lock()
_cancelled = set()  # ids of generations the node gave up on (its client went away)


def emit(obj):
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class Chain:
    """Next-token logits through the span chain, one inference session per generation."""

    def __init__(self, args):
        from petals import AutoDistributedModelForCausalLM

        self.model = AutoDistributedModelForCausalLM.from_pretrained(
            args.model, initial_peers=args.initial_peers, dht_prefix=args.dht_prefix,
            torch_dtype=torch.float32, allowed_servers=args.allowed_servers or None,
            request_timeout=args.request_timeout,
            update_period=args.update_period, max_retries=args.max_retries, min_backoff=0.5,
            ban_timeout=args.ban_timeout)
        self.model.eval()
        self.num_blocks = self.model.config.num_hidden_layers
        if args.heartbeat > 0:
            from hivemind.moe.client.remote_expert_worker import RemoteExpertWorker

            p2p = self.model.transformer.h.sequence_manager.state.p2p
            self._watch = RemoteExpertWorker.run_coroutine(
                fixes.watch_servers(p2p, args.heartbeat, fixes.mark_gone), return_future=True)

    def refresh(self, allowed=None):
        """Route only through `allowed` peer ids (None: any), and read the routing table from
        the DHT now (a new plan moved blocks)."""
        manager = self.model.transformer.h.sequence_manager
        manager.config.allowed_servers = allowed
        manager.allowed_servers = manager._peer_ids_to_set(allowed)
        manager.update(wait=True)

    def session(self, max_length):
        manager = self.model.inference_session(max_length=max_length)
        model = self.model

        class Step:
            inner = None

            def __enter__(self):
                self.inner = manager.__enter__()
                return self

            def __exit__(self, *exc):
                manager.__exit__(*exc)

            def logits(self, ids):
                hidden = self.inner.step(model.transformer.word_embeddings(ids))
                return model.lm_head(model.transformer.ln_f(hidden[:, -1:]))[0, -1]

        return Step()


class Local:
    """The same model run in this process (transformers 4.34), for references and benches."""

    def __init__(self, args):
        from transformers import LlamaForCausalLM

        self.model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
        self.num_blocks = self.model.config.num_hidden_layers

    def refresh(self, allowed=None):
        pass

    def session(self, max_length):
        model = self.model

        class Step:
            past = None

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.past = None

            def logits(self, ids):
                out = model(input_ids=ids, past_key_values=self.past, use_cache=True)
                self.past = out.past_key_values
                return out.logits[0, -1]

        return Step()


def pick(logits, temperature, top_p, generator):
    """Greedy at temperature 0, else nucleus sampling with the request's seed: (token, the
    log-probabilities of every token under the model's own distribution)."""
    token = _sample(logits, temperature, top_p, generator)
    return token, torch.log_softmax(logits.float(), dim=-1)


def _byte_decoder():
    """Byte-level BPE's printable stand-ins back to bytes (GPT-2's table, which the tokenizer's
    ByteLevel pre-tokenizer uses): printable bytes stand for themselves, the others for 256 + n."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in kept}
    others = [b for b in range(256) if b not in table.values()]
    table.update({chr(256 + n): b for n, b in enumerate(others)})
    return table


_BYTES = _byte_decoder()


def token_bytes(tokenizer, token):
    """The bytes of one token (part of a UTF-8 character, possibly)."""
    text = tokenizer.convert_ids_to_tokens(int(token))
    if all(ch in _BYTES for ch in text):
        return bytes(_BYTES[ch] for ch in text)
    return text.encode()  # a special or added token: its text


def _sample(logits, temperature, top_p, generator):
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def prompt_ids(tokenizer, request):
    if "input_ids" in request:
        return list(request["input_ids"])
    if "messages" in request:
        text = tokenizer.apply_chat_template(request["messages"], tokenize=False,
                                             add_generation_prompt=True)
    else:
        text = request["prompt"]
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def generate(engine, tokenizer, stop_ids, request):
    rid = request.get("id")
    ids = prompt_ids(tokenizer, request)
    max_tokens = int(request.get("max_tokens", 16))
    generator = torch.Generator()
    if request.get("seed") is None:
        generator.seed()  # no seed asked: each generation samples differently
    else:
        generator.manual_seed(int(request["seed"]))
    temperature = float(request.get("temperature", 0.0))
    top_p = float(request.get("top_p", 1.0))
    top_k = int(request.get("top_logprobs") or 0)
    new, text, finish = [], "", "length"
    started = first = time.monotonic()
    with torch.inference_mode(), engine.session(len(ids) + max_tokens) as session:
        step_input = torch.tensor([ids])
        for n in range(max_tokens):
            token, logprobs = pick(session.logits(step_input), temperature, top_p, generator)
            if n == 0:
                first = time.monotonic()
            if rid in _cancelled:
                finish = "cancelled"
                break
            if token in stop_ids and not request.get("ignore_eos"):
                finish = "stop"
                break
            new.append(token)
            full = tokenizer.decode(new, skip_special_tokens=True)
            delta = full[len(text):] if not full.endswith("\ufffd") else ""
            text += delta
            event = {"id": rid, "token": token, "text": delta, "logprob": float(logprobs[token])}
            if n == 0:
                event["prompt_tokens"] = len(ids)
            if request.get("logprobs"):
                event["piece"] = token_bytes(tokenizer, token).hex()
            if top_k:
                best = torch.topk(logprobs, min(top_k, logprobs.numel()))
                event["top"] = [[token_bytes(tokenizer, t).hex(), float(v)]
                                for v, t in zip(best.values.tolist(), best.indices.tolist(), strict=True)]
            emit(event)
            step_input = torch.tensor([[token]])
    emit({"id": rid, "done": True, "finish_reason": finish, "prompt_tokens": len(ids),
          "completion_tokens": len(new), "first_token_s": first - started,
          "decode_s": time.monotonic() - first})


def serve(engine, tokenizer, stop_ids, jobs):
    while True:
        request = jobs.get()
        if request is None:
            return
        if request.get("op") == "reset":
            fixes.forget_gone()
            engine.refresh(request.get("allowed"))
            emit({"id": request.get("id"), "done": True, "refreshed": True})
            continue
        try:
            generate(engine, tokenizer, stop_ids, request)
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the node
            emit({"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--initial-peers", nargs="*", default=[])
    parser.add_argument("--dht-prefix", default="")
    parser.add_argument("--local", action="store_true")
    parser.add_argument("--allowed-servers", nargs="*", default=[])
    parser.add_argument("--heartbeat", type=float, default=0.25)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--update-period", type=float, default=5.0)
    parser.add_argument("--max-retries", type=int, default=4)
    parser.add_argument("--ban-timeout", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    # SIGTERM (from the node, or our parent's death): leave at once with our whole group (the
    # client's forked DHT process and the p2pd daemons); petals' client threads would hold a
    # normal exit (see fixes.py).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: orphan.end_group())
    orphan.watch()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    stop_ids = {tokenizer.eos_token_id}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        stop_ids.add(im_end)
    engine = Local(args) if args.local else Chain(args)
    jobs = queue.Queue()
    runner = threading.Thread(target=serve, args=(engine, tokenizer, stop_ids, jobs), daemon=True)
    runner.start()
    emit({"event": "ready", "num_blocks": engine.num_blocks, "pid": os.getpid()})
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            emit({"event": "bad_line"})
            continue
        op = request.get("op")
        if op == "generate":
            jobs.put(request)
        elif op == "cancel":
            _cancelled.add(request.get("id"))
        elif op == "gone":
            fixes.mark_gone(list(request.get("peers", [])))
        elif op == "reset":
            jobs.put(request)
    jobs.put(None)
    runner.join(timeout=5)
    sys.stdout.flush()
    orphan.end_group()  # petals' client threads must not hold the exit, nor its DHT outlive us


if __name__ == "__main__":
    main()
