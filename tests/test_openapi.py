"""GET /openapi.json describes exactly the routes the app serves, and is a valid OpenAPI 3.1."""
from __future__ import annotations

import dataclasses

import httpx
import pytest

from network.api.app import build_app
from network.api.openai.schema import CHAT_SCHEMA, COMPLETION_SCHEMA
from network.api.openapi.document import OPERATIONS, openapi_document, served_operations
from network.wire.paths import STATS_PATH
from swarm.node.config import ApiConfig
from tests.node_apps import federated_app, scripted_pool
from tests.server import ServerThread


def _documented(doc: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item}


@pytest.mark.parametrize("federated", [False, True])
def test_document_and_router_name_the_same_operations(federated):
    pool = scripted_pool(1)
    app = federated_app(pool) if federated else build_app(pool, ApiConfig())
    served = served_operations(app)
    assert served <= set(OPERATIONS), f"describe these in network/api/openapi/document.py: " \
                                      f"{sorted(served - set(OPERATIONS))}"
    assert _documented(openapi_document(app, ApiConfig())) == served
    # Usage (/v1/federation/stats) is served with or without --federation.
    federation = {op for op in served if op[0].startswith("/v1/federation/")
                  and op[0] != STATS_PATH}
    assert bool(federation) == federated
    if federated:  # every described operation is served by a full node
        assert served == set(OPERATIONS)


def test_request_schemas_are_the_validators_own_with_the_configured_limits():
    api = ApiConfig(max_tokens_limit=100, max_n=3)
    doc = openapi_document(federated_app(scripted_pool(1)), api)
    chat = doc["components"]["schemas"]["ChatRequest"]
    assert chat["properties"]["messages"] == CHAT_SCHEMA["properties"]["messages"]
    assert chat["properties"]["max_tokens"]["maximum"] == 100
    assert chat["properties"]["n"]["maximum"] == 3
    assert chat["properties"]["swarm"]["properties"]["n"]["maximum"] == 3
    completion = doc["components"]["schemas"]["CompletionRequest"]
    assert completion["properties"]["prompt"] == COMPLETION_SCHEMA["properties"]["prompt"]
    assert "security" not in doc["paths"]["/v1/models"]["get"]
    keyed = openapi_document(federated_app(scripted_pool(1)), dataclasses.replace(api, keys=("k",)))
    assert keyed["paths"]["/v1/models"]["get"]["security"] == [{"apiKey": []}]
    # Read-only federation views take the API key or a swarm signature; a heartbeat probe
    # (with a nonce) neither; peers' signed POSTs are checked by the swarm key alone.
    either = [{"apiKey": []}, {"swarmSignature": []}]
    assert keyed["paths"]["/v1/federation/peers"]["get"]["security"] == either
    assert keyed["paths"]["/v1/federation/plan"]["get"]["security"] == either
    assert keyed["paths"]["/v1/federation/health"]["get"]["security"] == [*either, {}]
    assert keyed["paths"]["/v1/federation/approve"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in keyed["paths"]["/v1/federation/vote"]["post"]
    assert "security" not in keyed["paths"]["/openapi.json"]["get"]


def test_document_is_valid_openapi_3_1():
    validator = pytest.importorskip("openapi_spec_validator")
    doc = openapi_document(federated_app(scripted_pool(1)), ApiConfig(keys=("k",)))
    validator.validate(doc)


def test_served_document_is_the_same_and_open_without_the_api_key():
    pool = scripted_pool(1)
    api = ApiConfig(keys=("sekrit",))
    server = ServerThread(lambda: federated_app(pool, api)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            response = http.get("/openapi.json")
            assert response.status_code == 200
            doc = response.json()
            assert doc["openapi"].startswith("3.1")
            assert _documented(doc) == set(OPERATIONS)
            assert http.get("/v1/models").status_code == 401  # the document says so too
    finally:
        server.stop()
