"""The span runtime: Petals and hivemind in their own virtual environment, run as processes this
node supervises (DHT bootstrap, span servers, the distributed client). A span chain will be a
third `Source` (swarm/engine/source.py), beside local instances and peers, so consensus and route
mode use it unchanged; its plan comes from `network/coordination/spans.py`. Empty until layer
spans land.

May import: the other `network` rooms, `swarm.engine`, `swarm.models`, `swarm.node.config`.
"""
