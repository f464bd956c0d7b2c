"""The HTTP surface clients call: one aiohttp app (`app.py`) with its middlewares (`errors.py`
every failure as an OpenAI error body, or Ollama's on /api/; `auth.py` API keys; `limits.py` body
and per-client bounds), the OpenAI routes (`openai/`), the Ollama routes over the same engine
(`ollama/`), embeddings as one call every route can use (`embeddings.py`: limits, the least
busy instance, `dimensions`), the dashboard (`dashboard/`: the page, the swarm snapshot, the
usage ledger), the OpenAPI document of them all (`openapi/`), and where it listens
(`listener.py`: the node's address, moved when the machine's LAN address changes, and 127.0.0.1).

May import: `consensus`, `swarm.engine`, `swarm.node.config`, and the other `network` rooms (for
federation-aware routes). Nothing here owns a socket other than the server's own listening sockets.
"""
