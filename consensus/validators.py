"""Validators: callables `Completion -> (valid, reason)` that decide which candidates may win."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from jsonschema.exceptions import SchemaError, best_match
from jsonschema.validators import validator_for

from consensus.normalize import strip_fences
from swarm.engine.backend import Completion
from swarm.engine.toolcalls import read_answer
from swarm.engine.tools import ToolUse

Validator = Callable[[Completion], tuple[bool, str]]
OK = "ok"


def finished_nonempty(completion: Completion) -> tuple[bool, str]:
    """Valid when generation stopped by itself (not at `max_tokens`) with non-blank text."""
    if completion.finish_reason != "stop":
        return False, f"finish_reason is {completion.finish_reason!r}, not 'stop'"
    if not completion.text.strip():
        return False, "empty text"
    return True, OK


def nonempty(completion: Completion) -> tuple[bool, str]:
    """Valid when the text is not blank, however generation ended (truncated answers allowed)."""
    return (True, OK) if completion.text.strip() else (False, "empty text")


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(strip_fences(text)), None
    except (ValueError, RecursionError) as exc:  # a candidate (a peer's, say) nested too deep
        return None, f"not JSON: {type(exc).__name__}: {exc}"


def json_object(completion: Completion) -> tuple[bool, str]:
    """Valid when the text (``` fences stripped) parses as a JSON object."""
    value, error = _parse_json(completion.text)
    if error is not None:
        return False, error
    if not isinstance(value, dict):
        return False, f"JSON {type(value).__name__}, not an object"
    return True, OK


def json_schema(schema: Mapping[str, Any]) -> Validator:
    """A validator for JSON matching `schema`; a malformed schema raises ValueError now."""
    cls = validator_for(schema)
    try:
        cls.check_schema(dict(schema))
    except SchemaError as exc:
        raise ValueError(f"invalid JSON schema: {exc.message}") from exc
    checker = cls(schema)

    def check(completion: Completion) -> tuple[bool, str]:
        value, error = _parse_json(completion.text)
        if error is not None:
            return False, error
        problem = best_match(checker.iter_errors(value))
        if problem is not None:
            where = "/".join(str(p) for p in problem.absolute_path) or "(root)"
            return False, f"schema violation at {where}: {problem.message}"
        return True, OK

    return check


def regex(pattern: str) -> Validator:
    """A validator for text where `pattern` matches somewhere (`re.search`; anchor it with ^…$
    for a whole-text match); a malformed pattern raises ValueError now."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from exc

    def check(completion: Completion) -> tuple[bool, str]:
        if compiled.search(completion.text):
            return True, OK
        return False, f"no match for /{pattern}/"

    return check


def tool_calls(use: ToolUse, text: Validator) -> Validator:
    """A validator for an answer to a request with tools: calls must be complete, name a
    function the request lets the model call, and carry arguments that match its parameters
    schema; a text answer must pass `text`, and is invalid when a call was required."""
    callable_ = {t.name: json_schema(t.schema()) for t in use.callable()}
    must_call = use.choice in ("required", "function")

    def check(completion: Completion) -> tuple[bool, str]:
        content, calls, complete = read_answer(completion.text, new_id=str)
        if content is not None:
            return (False, "a tool call was required") if must_call else text(completion)
        if not complete:
            return False, "the last tool call was cut off"
        for call in calls:
            if call.name not in callable_:
                return False, f"calls {call.name!r}, which the request does not offer"
            valid, why = callable_[call.name](Completion(call.arguments, (), (), "stop", 0))
            if not valid:
                return False, f"{call.name} arguments: {why}"
        return True, OK

    return check


def all_of(*validators: Validator) -> Validator:
    """A validator passing when every one of `validators` passes; the first failure's reason."""

    def check(completion: Completion) -> tuple[bool, str]:
        for validator in validators:
            valid, reason = validator(completion)
            if not valid:
                return False, reason
        return True, OK

    return check


_regex = regex


def build_validator(
    response_format: Mapping[str, Any] | None = None,
    regex: str | None = None,
    *,
    require_finished: bool = True,
    tools: ToolUse | None = None,
) -> Validator:
    """The validator for an OpenAI `response_format` plus an optional regex; ValueError if bad.

    Shapes: None or {"type": "text"}; {"type": "json_object"};
    {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}} (no schema: any object).
    `require_finished` makes truncated ("length") answers invalid; with `tools`, an answer
    that is calls is checked as calls (`tool_calls`), a text answer as above.
    """
    parts: list[Validator] = [finished_nonempty if require_finished else nonempty]
    kind = (response_format or {}).get("type", "text")
    if kind == "json_object":
        parts.append(json_object)
    elif kind == "json_schema":
        spec = (response_format or {}).get("json_schema")
        if not isinstance(spec, Mapping):
            raise ValueError("response_format json_schema needs a 'json_schema' object")
        schema = spec.get("schema")
        if schema is None:
            parts.append(json_object)
        elif isinstance(schema, Mapping):
            parts.append(json_schema(schema))
        else:
            raise ValueError("response_format json_schema.schema must be an object")
    elif kind != "text":
        raise ValueError(f"unsupported response_format type {kind!r}")
    if regex is not None:
        parts.append(_regex(regex))
    validator = parts[0] if len(parts) == 1 else all_of(*parts)
    return validator if tools is None else tool_calls(tools, validator)
