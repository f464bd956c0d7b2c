"""The HTTP surface clients call: one aiohttp app (`app.py`) with its middlewares (`errors.py`
every failure as an OpenAI error body, `auth.py` API keys, `limits.py` body and per-client
bounds), the OpenAI routes (`openai/`) and their OpenAPI document (`openapi/`). The coming
dashboard and Ollama routes live here too, as `dashboard/` and `ollama/`.

May import: `consensus`, `swarm.engine`, `swarm.node.config`, and the other `network` rooms (for
federation-aware routes). Nothing here owns a socket other than the server itself.
"""
