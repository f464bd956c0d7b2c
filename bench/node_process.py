"""A node process for a benchmark: `python main.py` on a free loopback port, its URL read from its
log (the benches that time the HTTP API against a real node share it)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_node(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    """`python main.py --port 0 EXTRA...` and its URL, once it says where it listens."""
    proc = subprocess.Popen([sys.executable, "main.py", "--port", "0", *extra], cwd=ROOT,
                            text=True, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "200"})
    for line in proc.stderr:  # type: ignore[union-attr]
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
            return proc, match.group(1)
    raise RuntimeError("the node did not start")
