"""Several answers, one reply: the records of a run and the strategy names (`candidates.py`),
answer normalisation (`normalize.py`, reading free text with `sentences.py`), the pure
strategies (`strategies.py`), validators (`validators.py`), the async fan-out runner
(`runner.py`) and the service that answers one API request (`service.py`). Sources are asked
through the `Source` seam; which ones is the chooser's decision, passed in.

May import: `swarm.engine` (its records and the `Source` seam), `swarm.errors`; never `network`.
"""
