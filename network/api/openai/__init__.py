"""OpenAI-compatible generation: request schemas and their conversion (`schema.py`), response bodies
and stream chunks (`format.py`), and the `/v1/chat/completions` and `/v1/completions` routes that
route to one source or run a consensus (`routes.py`).
"""
