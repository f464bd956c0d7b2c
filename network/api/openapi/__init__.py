"""`GET /openapi.json`: the document (`document.py`) built from every operation a node can serve
(`operations.py`) and the JSON Schemas of their bodies (`schemas.py`, the very schemas the handlers
validate with).
"""
