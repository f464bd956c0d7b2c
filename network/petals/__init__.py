"""The span runtime: Petals and hivemind in their own virtual environment (`environment.py`, pinned
by `requirements.txt`, `constraints.txt` and `no-deps.txt`), the model folder it reads
(`model.py`), and the processes this node supervises: the DHT bootstrap and span servers
(`servers.py`), the distributed client (`client.py`), each a `processes.py` process group; a
node's span server under `supervisor.py`; `--spans` in a running node (`service.py`, wired into
it and started by `node.py`; the coordinator's DHT bootstrap and span map in `leader.py`); and
the span chain as the third `Source` (`chain.py`, swarm/engine/source.py), beside local
instances and peers, which `SwarmSources` hands to route mode's serving code and to consensus.
`runtime/` is our code that runs inside the span venv (shim, address guard, petals fixes,
launcher, worker).
See docs/spans.md.

May import: the other `network` rooms, `swarm.engine`, `swarm.models`, `swarm.node.config` (and
`swarm.node.terminal` for the span runtime's progress bar at start);
`runtime/` imports nothing of ours (another interpreter).
"""
