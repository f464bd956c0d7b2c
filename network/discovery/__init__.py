"""How peers are found: mDNS advertise and browse through python-zeroconf (`mdns.py`), manual peers from
flags or a watched file (`manual.py`), the events both report and the error when mDNS cannot run
(`events.py`), this machine's LAN address to bind and advertise (`lan.py`), and
the watcher that re-announces when an interface drops and returns and follows the machine to a
new LAN address (`interfaces.py`), and what the OS may block between nodes, with what to tell the
person (`privacy.py`: macOS Local Network privacy). Discovery only says a peer
exists; `membership/` decides whether it is alive.

May import: `network.wire`, `swarm.errors`.
"""
