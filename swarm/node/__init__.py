"""The node's shell: configuration (`config.py`), the command line (`cli.py`), what a person sees in
the terminal (`terminal.py`, `peer_view.py`).

May import: anything; nothing imports it but `main.py`, benches and `config` readers.
"""
