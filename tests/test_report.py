"""bench/report.py runs a real bench and writes its markdown report with the PNG plot in it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("matplotlib")


@pytest.mark.slow
def test_the_report_renders_with_its_plot(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--quick",
                           "--only", "overhead", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "report.md").read_text()
    assert "![overhead](overhead.png)" in report
    assert "load average" in report and "| overhead | ok |" in report
    assert "first_valid / fastest alone" in report
    png = (tmp_path / "overhead.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    from PIL import Image

    with Image.open(tmp_path / "overhead.png") as image:
        assert image.size[0] >= 800 and image.size[1] >= 300


def test_an_unknown_bench_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--only", "nope",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 2 and "unknown bench" in done.stderr
