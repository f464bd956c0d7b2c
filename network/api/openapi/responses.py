"""The building blocks of the operations in /openapi.json: the media types, a `$ref` to a
component schema, JSON content, and the error responses every operation shares (one `Error`
body, with what each status means on this node)."""
from __future__ import annotations

from typing import Any

JSON = "application/json"
MSGPACK = "application/msgpack"
SSE = "text/event-stream"
_ERROR_CODES = {
    400: "Invalid input (the error names the parameter)",
    401: "Missing or wrong API key; on federation routes (and forwarded requests) a missing, "
         "malformed, stale (over 30 s of skew), wrongly signed or replayed swarm signature",
    403: "Signed with a swarm key this node does not accept; for approve, not sent from the "
         "node's own machine",
    404: "Unknown model",
    409: "The vote is running already, or was cancelled; for approve, the approved list is full",
    413: "Request body over [api] max_body_bytes",
    415: "Content-Type is neither JSON nor msgpack",
    429: "Busy (every queue full, or too many requests from this client): see Retry-After",
    500: "The backend failed to generate",
    502: "No candidate of a consensus was usable",
    503: "The node is shutting down",
    504: "The consensus deadline passed without a quorum",
}


def ref(name: str) -> dict[str, str]:
    """A `$ref` to the component schema `name` (schemas.py)."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON content map of `schema`."""
    return {JSON: {"schema": schema}}


def error_responses(*codes: int, notes: dict[int, str] | None = None) -> dict[str, Any]:
    """Error responses for `codes`; `notes` replaces the usual description of some codes."""
    out: dict[str, Any] = {}
    for code in codes:
        headers = ({"Retry-After": {"description": "seconds to wait before retrying",
                                    "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
                   if code == 429 else {})
        description = (notes or {}).get(code, _ERROR_CODES[code])
        out[str(code)] = {"description": description, "content": json_content(ref("Error")),
                          **({"headers": headers} if headers else {})}
    out["default"] = {"description": "Any other error, in the same body",
                      "content": json_content(ref("Error"))}
    return out
