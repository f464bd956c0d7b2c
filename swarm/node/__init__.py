"""The node's shell: configuration (`config.py`), the command line (`cli.py`), what a person sees in
the terminal (`terminal.py`, `peer_view.py`), and the client commands that talk to a running node
or manage the swarm key (`commands.py`: `peers`, `peers approve|revoke`, `swarm-key`).

May import: anything; nothing imports it but `main.py`, benches and `config` readers.
"""
