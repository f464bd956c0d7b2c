"""OpenAI response bodies and streaming chunks, built from our completion records."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from swarm.engine.backend import Completion, TopLogprob
from swarm.engine.toolcalls import ToolCallReader, ToolEvent, read_answer


def new_id(kind: str) -> str:
    """An OpenAI-style object id such as `chatcmpl-…` or `cmpl-…`."""
    return f"{kind}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The `usage` object."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _finish(reason: str) -> str:
    return "stop" if reason == "cancelled" else reason


def token_text(piece: bytes) -> str:
    """A token's bytes as OpenAI shows them: UTF-8, with a lone partial character as \\xNN."""
    return piece.decode("utf-8", errors="backslashreplace")


def _entry(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": token_text(piece), "logprob": logprob, "bytes": list(piece)}


def chat_logprobs(pieces: Sequence[bytes], logprobs: Sequence[float],
                  top: Sequence[Sequence[TopLogprob]]) -> dict[str, Any]:
    """A chat choice's `logprobs`: per token its text, log-probability, bytes and alternatives."""
    content = []
    for i, (piece, logprob) in enumerate(zip(pieces, logprobs, strict=False)):
        entry = _entry(piece, logprob)
        entry["top_logprobs"] = [_entry(t.piece, t.logprob) for t in top[i]] if i < len(top) else []
        content.append(entry)
    return {"content": content, "refusal": None}


def text_logprobs(pieces: Sequence[bytes], logprobs: Sequence[float],
                  top: Sequence[Sequence[TopLogprob]], offset: int = 0) -> dict[str, Any]:
    """A text completion choice's legacy `logprobs`: tokens, their log-probabilities, the
    alternatives as {token: logprob} maps, and each token's character offset."""
    tokens = [token_text(p) for p in pieces]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": list(logprobs[:len(tokens)]),
            "top_logprobs": [{token_text(t.piece): t.logprob for t in step} for step in top]
            if top else None, "text_offset": offsets}


def _logprobs_of(c: Completion, chat: bool, wanted: bool) -> dict[str, Any] | None:
    if not wanted:
        return None
    return (chat_logprobs if chat else text_logprobs)(c.pieces, c.logprobs, c.top)


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """One entry of a message's `tool_calls`."""
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}


def assistant_message(c: Completion, tools: bool) -> tuple[dict[str, Any], str]:
    """A chat choice's message and finish reason; with `tools`, an answer that is calls becomes
    `tool_calls` (finish reason "tool_calls", or "length" when the last was cut off)."""
    message: dict[str, Any] = {"role": "assistant", "content": c.text, "refusal": None}
    if not tools:
        return message, _finish(c.finish_reason)
    content, calls, complete = read_answer(c.text)
    if content is not None:
        return message, _finish(c.finish_reason)
    message["content"] = None
    message["tool_calls"] = [tool_call(t.id, t.name, t.arguments) for t in calls]
    return message, "tool_calls" if complete and calls else _finish(c.finish_reason)


def chat_completion(rid: str, model: str, choices: Sequence[Completion],
                    extra: dict[str, Any] | None = None,
                    logprobs: bool = False, tools: bool = False) -> dict[str, Any]:
    """A `chat.completion` object with one choice per completion (`logprobs`: with each
    token's log-probability; `tools`: calls read as `tool_calls`)."""
    replies = [assistant_message(c, tools) for c in choices]
    body: dict[str, Any] = {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "system_fingerprint": None,
        "choices": [{"index": i, "message": message,
                     "logprobs": _logprobs_of(c, True, logprobs),
                     "finish_reason": reason}
                    for i, (c, (message, reason)) in enumerate(zip(choices, replies,
                                                                   strict=True))],
        "usage": usage(choices[0].prompt_tokens if choices else 0,
                       sum(c.completion_tokens for c in choices)),
    }
    body.update(extra or {})
    return body


def text_completion(rid: str, model: str, choices: Sequence[Completion],
                    extra: dict[str, Any] | None = None,
                    logprobs: bool = False, tools: bool = False) -> dict[str, Any]:
    """A `text_completion` object with one choice per completion."""
    body: dict[str, Any] = {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "system_fingerprint": None,
        "choices": [{"index": i, "text": c.text, "logprobs": _logprobs_of(c, False, logprobs),
                     "finish_reason": _finish(c.finish_reason)} for i, c in enumerate(choices)],
        "usage": usage(choices[0].prompt_tokens if choices else 0,
                       sum(c.completion_tokens for c in choices)),
    }
    body.update(extra or {})
    return body


class ChunkBuilder:
    """Builds the streaming chunks of one response (chat or text completion); with `tools`, each
    chat choice's deltas are read for tool calls (swarm/engine/toolcalls.py) and sent as OpenAI
    streams them: a call's id and name, then pieces of its arguments."""

    def __init__(self, rid: str, model: str, chat: bool, tools: bool = False) -> None:
        self.rid, self.model, self.chat = rid, model, chat
        self.created = int(time.time())
        self._readers: dict[int, ToolCallReader] | None = {} if tools and chat else None
        self._held_logprobs: dict[int, list[dict[str, Any]]] = {}
        # A delta chunk is sent per token: its JSON is this prefix, the choice, and "]}".
        head = json.dumps(self._wrap([]))
        self._prefix = head[:head.index('"choices": [') + len('"choices": [')]

    def delta_json(self, index: int, text: str, logprobs: dict[str, Any] | None = None) -> str:
        """`json.dumps(self.delta(index, text, logprobs))`, built faster (once per token)."""
        lp = "null" if logprobs is None else json.dumps(logprobs)
        body = '"delta": {"content": %s}' if self.chat else '"text": %s'
        return (f'{self._prefix}{{"index": {index}, {body % json.dumps(text)}, '
                f'"logprobs": {lp}, "finish_reason": null}}]}}')

    def _wrap(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": self.rid, "object": "chat.completion.chunk" if self.chat
                else "text_completion", "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices, **extra}

    def role(self, index: int) -> dict[str, Any]:
        """The opening chunk of a chat choice (announces the assistant role)."""
        return self._wrap([{"index": index, "delta": {"role": "assistant", "content": ""},
                            "logprobs": None, "finish_reason": None}])

    def delta(self, index: int, text: str,
              logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        """A chunk carrying generated text (and, when asked for, its tokens' logprobs)."""
        if self.chat:
            choice = {"index": index, "delta": {"content": text}, "logprobs": logprobs,
                      "finish_reason": None}
        else:
            choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": None}
        return self._wrap([choice])

    def finish(self, index: int, reason: str) -> dict[str, Any]:
        """The closing chunk of one choice."""
        if self.chat:
            choice = {"index": index, "delta": {}, "logprobs": None,
                      "finish_reason": _finish(reason)}
        else:
            choice = {"index": index, "text": "", "logprobs": None,
                      "finish_reason": _finish(reason)}
        return self._wrap([choice])

    def deltas(self, index: int, text: str,
               logprobs: dict[str, Any] | None = None) -> list[str]:
        """The chunks (JSON) for more text of choice `index`: one delta, or, with tools, what
        the text says so far (content, a call's start, arguments; nothing while undecided:
        its logprobs ride on the next chunk)."""
        if self._readers is None:
            return [self.delta_json(index, text, logprobs)]
        reader = self._readers.setdefault(index, ToolCallReader())
        if logprobs is not None:
            self._held_logprobs.setdefault(index, []).extend(logprobs["content"])
        return [json.dumps(c) for c in self._tool_chunks(index, reader.feed(text))]

    def end(self, index: int, reason: str) -> list[str]:
        """The chunks (JSON) that close choice `index`: what was held back, then the finish
        (reason "tool_calls" when the answer was complete calls)."""
        reader = self._readers.get(index) if self._readers is not None else None
        if reader is None:
            return [json.dumps(self.finish(index, reason))]
        out = [json.dumps(c) for c in self._tool_chunks(index, reader.close())]
        if reader.is_calls and reader.calls and reader.complete:
            reason = "tool_calls"
        final = self.finish(index, reason)
        final["choices"][0]["logprobs"] = self._take_logprobs(index)
        return [*out, json.dumps(final)]

    def _take_logprobs(self, index: int) -> dict[str, Any] | None:
        held = self._held_logprobs.pop(index, None)
        return {"content": held, "refusal": None} if held else None

    def _tool_chunks(self, index: int, events: list[ToolEvent]) -> list[dict[str, Any]]:
        chunks = []
        for event in events:
            if event.kind == "text":
                delta: dict[str, Any] = {"content": event.text}
            elif event.kind == "call":
                delta = {"tool_calls": [{"index": event.index,
                                         **tool_call(event.call_id, event.text, "")}]}
            else:
                delta = {"tool_calls": [{"index": event.index,
                                         "function": {"arguments": event.text}}]}
            chunks.append(self._wrap([{"index": index, "delta": delta,
                                       "logprobs": self._take_logprobs(index),
                                       "finish_reason": None}]))
        return chunks

    def usage(self, prompt_tokens: int, completion_tokens: int,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The final usage chunk of `stream_options.include_usage` (no choices)."""
        return self._wrap([], usage=usage(prompt_tokens, completion_tokens), **(extra or {}))
