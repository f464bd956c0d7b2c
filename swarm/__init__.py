"""The machine this node runs on: `engine/` (backends, decoding, loader, instance pool), `sizing/`
(hardware probe, first-run benchmark, the `--auto` plan), `models/` (the model store and, later,
sharing) and `node/` (config, command line, terminal, client commands). `swarm` imports nothing from
`network` except in `node/`, the shell that wires both.
"""
