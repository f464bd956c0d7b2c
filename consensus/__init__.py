"""Several answers, one reply: the records of a run (`candidates.py`), answer normalisation
(`normalize.py`), the pure strategies (`strategies.py`), validators (`validators.py`), the async
fan-out runner (`runner.py`) and the service that answers one API request (`service.py`).

May import: `swarm.engine.backend` (the records); never `network`.
"""
