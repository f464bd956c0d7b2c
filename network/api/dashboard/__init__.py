"""The dashboard: what a person sees of the swarm in a browser. `ledger.py` keeps the last
requests and the usage (tokens by strategy, API and node); `snapshot.py` builds the swarm's JSON
snapshot by pure functions (nodes, coordinator, span map with its gaps, requests, usage);
`watch.py` holds where the parts come from and the change counter watchers wait on; `routes.py`
serves the page (`static/`: HTML, CSS and vanilla JS, no build step), the long-polled snapshot
and `/v1/federation/stats`.
"""
