"""The node's shell: configuration (`config.py`, what each value may be in `config_values.py`), the
command line (`cli.py`), loading the node's model (`loading.py`: `--auto`, then the instances), what
a person sees in the terminal (`terminal.py`; `peer_view.py` the peer table; `swarm_view.py` the
whole swarm, the dashboard's snapshot rendered as text, live or once), the client commands that talk
to a running node (`commands.py`: `status`, `peers`, `peers approve|revoke`, `setup-spans`) and the
one that manages the swarm key (`key_command.py`: `swarm-key`).

May import: anything; nothing imports it but `main.py`, benches and `config` readers.
"""
