"""The model-sharing routes: `GET /v1/federation/models` (the manifests of the models this node
holds) and `GET /v1/federation/models/blob/{sha256}` (one file's bytes, Range requests answered
with 206, sent with sendfile).

Both need a request signed with the swarm key (401/403 otherwise, even with an API key: a node
without the swarm key can neither list nor fetch). The listing is signed back over the request's
nonce; a file's bytes are not (the downloader checks every piece against the manifest's hashes).
A file is found by its sha256 in the store's index, never by a path the caller names.
"""
from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from network.federation.gate import VERDICT_KEY, FederationGate, signed_response
from network.wire import codec
from network.wire.paths import BLOB_PATH, MODELS_PATH
from swarm.errors import RequestError
from swarm.models.library import ModelLibrary
from swarm.models.manifest import SHA256_PATTERN

log = logging.getLogger(__name__)

SEND_CHUNK_BYTES = 1 << 20  # FileResponse's read size when sendfile is not available


class ModelRoutes:
    """Serves the models of `library` to peers that sign with the swarm key (via `gate`)."""

    def __init__(self, library: ModelLibrary, gate: FederationGate, node_id: str) -> None:
        self.library = library
        self.gate = gate
        self.node_id = node_id

    def add_to(self, app: web.Application) -> None:
        """Register the two routes."""
        app.router.add_get(MODELS_PATH, self.listing)
        app.router.add_get(BLOB_PATH + "{sha256}", self.blob)

    async def listing(self, request: web.Request) -> web.Response:
        """GET /v1/federation/models: every model held, with its manifest; signed back."""
        await self.gate.require(request)
        manifests = await asyncio.to_thread(self.library.manifests)
        body = json.dumps({"object": "list", "node_id": self.node_id,
                           "data": [m.to_wire() for m in manifests]},
                          separators=(",", ":")).encode()
        return signed_response(body, codec.JSON, request[VERDICT_KEY])

    async def blob(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/federation/models/blob/{sha256}: the bytes of one held file (Range: 206)."""
        await self.gate.require(request)
        sha = request.match_info["sha256"]
        if SHA256_PATTERN.fullmatch(sha) is None:
            raise RequestError("a file is named by its sha256: 64 lowercase hex digits",
                               param="sha256", code="invalid_value")
        found = await asyncio.to_thread(self.library.blob, sha)
        if found is None:
            raise RequestError(f"this node holds no file with sha256 {sha}", status=404,
                               code="file_not_found")
        path, _size = found
        return web.FileResponse(path, chunk_size=SEND_CHUNK_BYTES,
                                headers={"Content-Type": "application/octet-stream",
                                         "Cache-Control": "no-store"})

