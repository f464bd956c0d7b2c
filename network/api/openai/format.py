"""OpenAI response bodies and streaming chunks, built from our completion records."""
from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from swarm.engine.backend import Completion


def new_id(kind: str) -> str:
    """An OpenAI-style object id such as `chatcmpl-…` or `cmpl-…`."""
    return f"{kind}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The `usage` object."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _finish(reason: str) -> str:
    return "stop" if reason == "cancelled" else reason


def chat_completion(rid: str, model: str, choices: Sequence[Completion],
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `chat.completion` object with one choice per completion."""
    body: dict[str, Any] = {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "system_fingerprint": None,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                     "logprobs": None, "finish_reason": _finish(c.finish_reason)}
                    for i, c in enumerate(choices)],
        "usage": usage(choices[0].prompt_tokens if choices else 0,
                       sum(c.completion_tokens for c in choices)),
    }
    body.update(extra or {})
    return body


def text_completion(rid: str, model: str, choices: Sequence[Completion],
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `text_completion` object with one choice per completion."""
    body: dict[str, Any] = {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "system_fingerprint": None,
        "choices": [{"index": i, "text": c.text, "logprobs": None,
                     "finish_reason": _finish(c.finish_reason)} for i, c in enumerate(choices)],
        "usage": usage(choices[0].prompt_tokens if choices else 0,
                       sum(c.completion_tokens for c in choices)),
    }
    body.update(extra or {})
    return body


class ChunkBuilder:
    """Builds the streaming chunks of one response (chat or text completion)."""

    def __init__(self, rid: str, model: str, chat: bool) -> None:
        self.rid, self.model, self.chat = rid, model, chat
        self.created = int(time.time())

    def _wrap(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": self.rid, "object": "chat.completion.chunk" if self.chat
                else "text_completion", "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices, **extra}

    def role(self, index: int) -> dict[str, Any]:
        """The opening chunk of a chat choice (announces the assistant role)."""
        return self._wrap([{"index": index, "delta": {"role": "assistant", "content": ""},
                            "logprobs": None, "finish_reason": None}])

    def delta(self, index: int, text: str) -> dict[str, Any]:
        """A chunk carrying generated text."""
        if self.chat:
            choice = {"index": index, "delta": {"content": text}, "logprobs": None,
                      "finish_reason": None}
        else:
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": None}
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

    def usage(self, prompt_tokens: int, completion_tokens: int,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The final usage chunk of `stream_options.include_usage` (no choices)."""
        return self._wrap([], usage=usage(prompt_tokens, completion_tokens), **(extra or {}))
