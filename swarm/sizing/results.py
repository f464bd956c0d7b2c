"""The benchmark's results: one record per measured configuration, its score, the best of them,
and the cache that keeps them per hardware fingerprint (so `--auto` measures once).

Score: the effective speed of a typical 64-token answer, first token included,
    score = 64 / (ttft_s + 64 / decode_tok_s)        (0 when decode_tok_s is 0)
so it rises with decode speed, falls with first-token latency and is in tokens per second.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ANSWER_TOKENS = 64
_CACHE_VERSION = 1


@dataclass(frozen=True)
class BenchmarkResult:
    """One measured configuration; `peak_rss_bytes` is the per-instance growth (module doc)."""

    backend: str
    model_id: str
    threads: int
    instances: int
    ttft_s: float
    decode_tok_s: float
    peak_rss_bytes: int
    score: float
    measured_at: str
    device: str = "cpu"  # where the layers ran: "cpu", "metal", "mps", "cuda"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkResult:
        """The result stored in `data`; unknown keys are ignored, a missing or bad one raises."""
        return cls(backend=str(data["backend"]), model_id=str(data["model_id"]),
                   threads=int(data["threads"]), instances=int(data["instances"]),
                   ttft_s=float(data["ttft_s"]), decode_tok_s=float(data["decode_tok_s"]),
                   peak_rss_bytes=int(data["peak_rss_bytes"]), score=float(data["score"]),
                   measured_at=str(data["measured_at"]), device=str(data.get("device", "cpu")))


def composite_score(decode_tok_s: float, ttft_s: float) -> float:
    """Tokens per second of a 64-token answer including the first-token wait (module doc)."""
    if decode_tok_s <= 0:
        return 0.0
    return ANSWER_TOKENS / (max(ttft_s, 0.0) + ANSWER_TOKENS / decode_tok_s)


def best(results: Sequence[BenchmarkResult]) -> BenchmarkResult | None:
    """The highest-scoring result, fewest threads on ties; None for no results."""
    return max(results, key=lambda r: (r.score, -r.threads), default=None)


class BenchmarkCache:
    """Benchmark results in one JSON file, keyed by hardware fingerprint; writes are atomic."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable benchmark cache %s: %s", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def load(self, fingerprint: str) -> list[BenchmarkResult] | None:
        """The results saved under `fingerprint`, or None (missing, corrupt or old format)."""
        entry = self._read().get(fingerprint)
        if not isinstance(entry, dict) or not isinstance(entry.get("results"), list):
            return None
        try:
            results = [BenchmarkResult.from_dict(item) for item in entry["results"]]
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a malformed benchmark cache entry: %s", exc)
            return None
        return results or None

    def save(self, fingerprint: str, results: Sequence[BenchmarkResult]) -> None:
        """Store `results` under `fingerprint`, keeping other entries; tmp file + os.replace."""
        entries = self._read()
        entries[fingerprint] = {"results": [r.to_dict() for r in results]}
        blob = json.dumps({"version": _CACHE_VERSION, "entries": entries}, indent=2, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise


def load_or_run(cache: BenchmarkCache, fingerprint: str, run: Callable[[], list[BenchmarkResult]],
                *, refresh: bool = False) -> tuple[list[BenchmarkResult], bool]:
    """(results, True) from the cache when `fingerprint` is there and not `refresh`; else run and save."""
    if not refresh:
        cached = cache.load(fingerprint)
        if cached is not None:
            log.info("reusing the benchmark measured at %s", cached[0].measured_at)
            return cached, True
    results = run()
    cache.save(fingerprint, results)
    return results, False
