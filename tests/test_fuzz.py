"""Fuzzing a real node on 127.0.0.1:0 (scripted instances, federation routes included).

- schemathesis generates requests from the node's own /openapi.json (valid and invalid ones);
- hypothesis throws garbage, wrong content types, hostile JSON and msgpack, odd queries and
  oversize bodies (with and without Content-Length) at every route, and raw non-HTTP bytes at
  the port.
Whatever arrives: never a 5xx, never a hang (every request has a timeout), and the node still
answers a normal request afterwards. Example counts are bounded so the file runs in seconds.
"""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from network.api.auth import JOIN_PATHS, LOCAL_ADMIN_PATHS
from network.api.errors import OLLAMA_PREFIX
from network.api.openapi.document import OPERATIONS
from network.trust.signing import sign_request
from network.wire import codec
from swarm.node.config import ApiConfig
from tests.node_apps import KEYS, federated_app, scripted_pool
from tests.server import ServerThread

schemathesis = pytest.importorskip("schemathesis")
NOT_SET = schemathesis.core.NOT_SET

TIMEOUT = httpx.Timeout(10.0)
MAX_BODY = 64 * 1024  # small, so oversize bodies are cheap to send
ASK = {"messages": [{"role": "user", "content": "Capital of France?"}], "max_tokens": 8}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def node() -> Iterator[ServerThread]:
    """A full node (OpenAI + federation routes) over two fast scripted instances."""
    pool = scripted_pool(2, queue_depth=8)
    api = ApiConfig(max_body_bytes=MAX_BODY, max_tokens_limit=64, max_n=4,
                    max_prompt_tokens=2000)
    server = ServerThread(lambda: federated_app(pool, api)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=TIMEOUT) as client:
        yield client


def still_serves(http: httpx.Client) -> None:
    """The node answers a normal request on each surface."""
    assert http.post("/v1/chat/completions", json=ASK).status_code == 200
    assert http.get("/v1/federation/health").status_code == 200
    assert http.get("/health").json()["status"] == "ok"


# --- schemathesis against the served document -------------------------------------------

def pack(value) -> bytes:
    """msgpack bytes for a generated body (JSON where msgpack cannot: integers past 64 bits)."""
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return json.dumps(value).encode()


@schemathesis.serializer("application/msgpack")
def _msgpack(_ctx, value):
    return {"data": pack(value)}


@pytest.fixture(scope="module")
def api_schema(node):
    """The document as the node serves it."""
    return schemathesis.openapi.from_url(node.url + "/openapi.json")


SIGNED = ("/v1/federation/vote", "/v1/federation/cancel", "/v1/federation/election")


def signed_call(node: ServerThread, case) -> httpx.Response:
    """Send a generated vote, cancel or election message signed with the node's swarm key, so the body is what
    gets fuzzed (unsigned ones stop at the signature check: see test_bad_signatures_*)."""
    body = case.body
    if body is NOT_SET or body is None:
        raw = b""
    elif isinstance(body, bytes):
        raw = body
    elif case.media_type == "application/msgpack":
        raw = pack(body)
    else:
        raw = json.dumps(body, default=repr).encode()
    headers = {"Content-Type": case.media_type or "application/json",
               **sign_request(KEYS.current, "POST", case.path, raw, now=time.time())}
    return httpx.post(node.url + case.path, content=raw, headers=headers, timeout=TIMEOUT)


def _checks() -> list:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    return [not_a_server_error, status_code_conformance, content_type_conformance,
            response_schema_conformance]


# The strategies are driven by hand (not @schema.parametrize): schemathesis' lazy pytest loader
# reads a pytest-internal attribute that pytest 9 no longer has.
def _modes(route: tuple[str, str]) -> list[str]:
    """Negative cases need something to break: parameters or a body."""
    operation = OPERATIONS[route]
    takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
    return ["positive", "negative"] if takes_input else ["positive"]


def _constrained(body: object) -> bool:
    """True when a generated chat/completion body asks for constrained output."""
    if not isinstance(body, dict):
        return False
    swarm = body.get("swarm")
    return bool(body.get("response_format")) or isinstance(swarm, dict) and "regex" in swarm


@pytest.mark.parametrize(("route", "mode"), [(r, m) for r in sorted(OPERATIONS) for m in _modes(r)],
                         ids=lambda v: f"{v[1].upper()} {v[0]}" if isinstance(v, tuple) else v)
def test_schemathesis_finds_no_server_error(node, api_schema, route, mode):
    path, method = route
    operation = api_schema[path][method.upper()]
    checks = _checks()
    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        response = signed_call(node, case) if path in SIGNED else case.call(timeout=10)
        if _constrained(case.body) and response.status_code == 502:
            # The scripted instances write their script whatever the constraint (the real
            # engines decode under llguidance's masks): consensus finds no valid candidate.
            assert response.json()["error"]["code"] == "no_valid_candidate"
            return
        assert response.status_code < 500, (case.method, case.path, case.body, response.text)
        if mode == "positive":
            case.validate_response(response, checks=checks)

    run()


def test_node_serves_after_schemathesis(http):
    still_serves(http)


# --- hypothesis: garbage at every route ----------------------------------------------------

ROUTES = sorted(OPERATIONS)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=25)
# Bodies that look almost right: the real field names with arbitrary values.
FIELDS = ["v", "request_id", "messages", "prompt", "max_tokens", "temperature", "top_p", "seed",
          "stop", "n", "stream", "stream_options", "swarm", "model", "response_format",
          "max_completion_tokens", "role", "content", "kind", "term", "candidate", "voter",
          "granted", "seen_term", "coordinator", "node_id", "priority", "score"]
near_miss = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)
CONTENT_TYPES = ["application/json", "application/msgpack", "application/x-msgpack",
                 "text/plain", "application/json; charset=latin-1", "", "*/*", "\x7f",
                 "application/msgpack; q=0"]


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "msgpack", "near_json", "near_msgpack"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2048))
    value = draw(json_values if kind in ("json", "msgpack") else near_miss)
    if kind.endswith("json"):
        return json.dumps(value).encode()
    return pack(value)


@FUZZ
@given(route=st.sampled_from(ROUTES), body=bodies(), content_type=st.sampled_from(CONTENT_TYPES),
       accept=st.sampled_from(["", "application/msgpack", "application/msgpack;q=0", "*/*",
                               "text/html, application/x-msgpack;q=0.5", ",,;;=="]),
       signed=st.booleans())
def test_garbage_bodies_never_5xx(http, route, body, content_type, accept, signed):
    path, method = route
    headers = {"Content-Type": content_type, "Accept": accept}
    if signed:  # past the signature check, into the decoder
        headers.update(sign_request(KEYS.current, method.upper(), path, body, now=time.time()))
    response = http.request(method.upper(), path, content=body if method == "post" else None,
                            headers=headers)
    assert response.status_code < 500, (path, body[:200], response.text)
    if response.status_code >= 400 and content_type != "\x7f":  # that one aiohttp refuses itself
        error = response.json()["error"]
        # Ollama's clients read {"error": "message"}; every other route answers OpenAI's body.
        assert (isinstance(error, str) and error) if path.startswith(OLLAMA_PREFIX) \
            else error["message"]


SIGNATURE_HEADERS = ["X-Swarm-Key-Id", "X-Swarm-Timestamp", "X-Swarm-Nonce",
                     "X-Swarm-Signature", "X-Local-Swarm-Forwarded"]
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                        max_size=80).map(str.strip)  # what a client can send


@FUZZ
@given(route=st.sampled_from([r for r in ROUTES if r[1] == "post"]),
       headers=st.dictionaries(st.sampled_from(SIGNATURE_HEADERS), header_values, max_size=5),
       fresh=st.booleans())
def test_bad_signatures_are_401_or_403_never_5xx(http, route, headers, fresh):
    path, _method = route
    bodies = {"/v1/chat/completions": ASK, "/v1/completions": {"prompt": "hi", "max_tokens": 2}}
    body = json.dumps(bodies.get(path, {"v": 1, "request_id": "fz", "prompt": "hi",
                                        "max_tokens": 2})).encode()
    sent = {"Content-Type": "application/json"}
    if fresh:  # a valid signature with one header then replaced by garbage
        sent.update(sign_request(KEYS.current, "POST", path, body, now=time.time()))
    sent.update(headers)
    response = http.post(path, content=body, headers=sent)
    assert response.status_code < 500, (path, headers, response.text)
    # Joins are unsigned by nature (a new machine has no key): signatures mean nothing there.
    federation_refused = "federation" in path and path not in LOCAL_ADMIN_PATHS | JOIN_PATHS \
        and not fresh
    # Empty counts as absent; the header means something on the OpenAI routes only.
    forwarded = bool(headers.get("X-Local-Swarm-Forwarded")) and "federation" not in path \
        and not path.startswith(OLLAMA_PREFIX)
    if federation_refused or forwarded and not fresh:
        assert response.status_code in (401, 403), (path, headers, response.text)


query_values = st.text(st.characters(codec="utf-8"), max_size=40)


@FUZZ
@given(route=st.sampled_from([r for r in ROUTES if r[1] == "get"]),
       query=st.dictionaries(st.sampled_from(["nonce", "min_ram_gb", "min_vram_gb", "model",
                                              "status", "idle", "x"]), query_values,
                             max_size=4))
def test_garbage_queries_never_5xx(http, route, query):
    response = http.get(route[0], params=query)
    assert response.status_code < 500, (route, query, response.text)


@pytest.mark.parametrize("route", [r for r in ROUTES if r[1] == "post"])
@pytest.mark.parametrize("chunked", [False, True])
def test_oversize_bodies_are_413(http, route, chunked):
    path, _method = route
    # The OpenAI routes (and approve) take [api] max_body_bytes; peers' routes the wire's limit;
    # the unsigned join routes 4 KiB (refused at once).
    peer_route = "federation" in path and path not in LOCAL_ADMIN_PATHS | JOIN_PATHS
    limit = codec.MAX_BYTES if peer_route else MAX_BODY
    data = b"{" + b" " * limit + b"}"

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 8192):
            yield data[start:start + 8192]

    headers = {"Content-Type": "application/json"}
    if peer_route:  # unsigned: refused before the body is read; signed: read, 413
        headers["Content-Type"] = "application/msgpack"
        response = http.post(path, content=pieces() if chunked else data, headers=headers)
        assert response.status_code == 401, (path, response.text)
        headers.update(sign_request(KEYS.current, "POST", path, data, now=time.time()))
    response = http.post(path, content=pieces() if chunked else data, headers=headers)
    assert response.status_code == 413, (path, response.text)
    error = response.json()["error"]
    if path.startswith(OLLAMA_PREFIX):  # Ollama's body: {"error": "message"}
        assert "too large" in error, error
    else:
        assert error["code"] == "request_too_large"


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(garbage=st.binary(min_size=1, max_size=4096))
def test_raw_garbage_on_the_socket_is_refused_or_dropped(node, http, garbage):
    host, port = node.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.settimeout(1.0)
        try:
            sock.sendall(garbage + b"\r\n\r\n")
            answer = sock.recv(64)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
        except TimeoutError:
            # Bytes that may still become a request (blank lines, an unfinished header) keep
            # the connection waiting, as HTTP wants; the node itself must stay responsive.
            answer = None
    if answer is None:
        assert http.get("/health", timeout=2).status_code == 200
        return
    # Either aiohttp's 4xx for a malformed request, or a closed connection; never a 5xx.
    assert answer == b"" or answer.startswith(b"HTTP/1.") and answer[9:10] == b"4", answer


def test_node_serves_after_the_fuzzers(http):
    still_serves(http)
