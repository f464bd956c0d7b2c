"""OpenAI-compatible generation: request schemas and their conversion (`schema.py`, with the tool
fields of `tools.py`), response bodies and stream chunks (`format.py`, tool calls included), the
`/v1/chat/completions` and `/v1/completions` routes that route to one source or run a consensus
(`routes.py`), their server-sent events (`streaming.py`), the record of what one request did
for the dashboard's ledger (`trace.py`), and `/v1/embeddings` (`embeddings.py`).
"""
