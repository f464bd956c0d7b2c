"""The span runtime: Petals and hivemind in their own virtual environment (`environment.py`, pinned
by `requirements.txt`, `constraints.txt` and `no-deps.txt`), the model folder it reads
(`model.py`), and the processes this node supervises: the DHT bootstrap and span servers
(`servers.py`), the distributed client (`client.py`), each a `processes.py` process group; a
node's span server under `supervisor.py`; `--spans` in a running node (`service.py`). `runtime/`
is our code that runs inside the span venv (shim, address guard, petals fixes, launcher, worker).
See docs/spans.md.

May import: `network.coordination`, `network.membership`, `network.wire`, `swarm.models`,
`swarm.node.config`, `swarm.errors`; `runtime/` imports nothing of ours (another interpreter).
"""
