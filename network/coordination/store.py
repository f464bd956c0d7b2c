"""The election's durable part: highest term and vote, so a restarted node never votes twice."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from network.trust.private_file import write_private
from network.wire.fields import MAX_TERM, is_identifier

log = logging.getLogger(__name__)


class ElectionStore:
    """(term, voted_term, voted_for) in a small JSON file; a bad or missing file reads as zeros."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._warned = False

    def load(self) -> tuple[int, int, str | None]:
        """The persisted term and vote; (0, 0, None) when absent or unreadable (logged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            term, voted_term, voted_for = data["term"], data["voted_term"], data["voted_for"]
            for value in (term, voted_term):
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TERM:
                    raise ValueError(f"bad term {value!r}")
            if voted_for is not None and not is_identifier(voted_for):
                raise ValueError(f"bad node id {voted_for!r}")
            return term, voted_term, voted_for
        except FileNotFoundError:
            return 0, 0, None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s (%s): the election starts from term 0", self.path, exc)
            return 0, 0, None

    def save(self, term: int, voted_term: int, voted_for: str | None) -> None:
        """Write atomically; a failure is logged once and the node carries on from memory."""
        try:
            write_private(self.path, json.dumps({"term": term, "voted_term": voted_term,
                                                 "voted_for": voted_for}).encode("utf-8"))
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot save the election term to %s: %s", self.path, exc)
