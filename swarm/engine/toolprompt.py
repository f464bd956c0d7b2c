"""Tools and tool turns in the prompt: the messages (and tools) a chat template is given.

A template that speaks the call syntax of tools.py (it mentions `tools` and `<tool_call>`: Qwen2.5,
Qwen3, Hermes, SmolLM3) gets OpenAI's structures as Hugging Face templates take them: `tools` as
a list of `{"type": "function", "function": {...}}`, assistant turns with `tool_calls` (arguments
as objects) and `tool` turns with their `tool_call_id`.

Every other template (the embedded SmolLM2's ChatML among them, and a model with no template) gets
the fallback format, in plain turns any template renders:
- the tools, and how to call them, close the system turn (one is opened when there is none):
  their JSON signatures within <tools></tools>, then the call syntax;
- an assistant turn's calls follow its text, each as the model writes one (tools.py);
- each run of `tool` turns becomes one user turn of <tool_response></tool_response> blocks, so
  templates that insist on alternating user and assistant turns still render it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from swarm.engine.tools import CLOSER, HEAD, MIDDLE, OPENER, SEPARATOR, TAIL, Tool, ToolCall, ToolUse

if TYPE_CHECKING:
    from swarm.engine.backend import ChatMessage

FALLBACK_PROMPT = """# Tools

You may call one or more functions to help with the user's request. Their JSON signatures are \
within <tools></tools> tags:
<tools>
{tools}
</tools>

To call functions, answer with nothing but the calls, one per block, each a JSON object with the \
function's name and its arguments within <tool_call></tool_call> tags:
<tool_call>
{{"name": <function name>, "arguments": <the arguments as a JSON object>}}
</tool_call>
Each call's result comes back within <tool_response></tool_response> tags."""


def has_tool_syntax(template: str | None) -> bool:
    """True when a chat template renders tools in the call syntax of tools.py itself."""
    return bool(template) and "tools" in template and "<tool_call>" in template  # type: ignore[operator]


def _function(tool: Tool) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": tool.schema()}}


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments  # a client's own malformed arguments are shown as they came


def written_call(call: ToolCall) -> str:
    """A call as the model writes it (tools.py's syntax)."""
    return f"{OPENER}{HEAD}{call.name}{MIDDLE}{call.arguments}{TAIL}{CLOSER}"


def native_messages(messages: Sequence[ChatMessage],
                    use: ToolUse | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages and tools as a template with tool syntax takes them."""
    out: list[dict[str, Any]] = []
    for m in messages:
        turn: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            turn["tool_calls"] = [{"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": _arguments(c)}}
                                  for c in m.tool_calls]
        if m.tool_call_id is not None:
            turn["tool_call_id"] = m.tool_call_id
        out.append(turn)
    return out, ([_function(t) for t in use.tools] if use is not None and use.tools else None)


def fallback_messages(messages: Sequence[ChatMessage],
                      use: ToolUse | None) -> list[dict[str, Any]]:
    """Plain turns for any template: tools in the system turn, calls and results as text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            block = f"<tool_response>\n{m.content}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
            continue
        content = m.content
        if m.tool_calls:
            calls = SEPARATOR.join(written_call(c) for c in m.tool_calls)
            content = f"{content}\n{calls}" if content else calls
        out.append({"role": m.role, "content": content})
    for turn in out:
        turn.pop("tool_results", None)
    if use is not None and use.tools:
        signatures = "\n".join(json.dumps(_function(t)) for t in use.tools)
        section = FALLBACK_PROMPT.format(tools=signatures)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{section}" if out[0]["content"] else section
        else:
            out.insert(0, {"role": "system", "content": section})
    return out


def template_messages(messages: Sequence[ChatMessage], use: ToolUse | None,
                      template: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages and tools to give `template` (None: the tools are already in the messages)."""
    if has_tool_syntax(template):
        return native_messages(messages, use)
    return fallback_messages(messages, use), None
