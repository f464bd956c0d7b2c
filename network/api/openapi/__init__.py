"""`GET /openapi.json`: the document (`document.py`) built from every operation a node can serve
(`operations.py`, the `/v1/federation/*` ones in `federation.py`, each built from the media types,
`$ref`s and error responses of `responses.py`) and the JSON Schemas of their bodies (`schemas.py`,
the very schemas the handlers validate with; the wire messages' in `federation_schemas.py`).
"""
