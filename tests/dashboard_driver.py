"""Drives the dashboard in Debian's headless chromium through Playwright (never Playwright's own
browser download), inside a node's namespace, where the namespace LAN is reachable. Reads one JSON
command a line on stdin and answers one JSON line on stdout:
  {"op": "wait", "js": EXPR, "timeout_s": S}   wait until the page's EXPR is truthy
  {"op": "eval", "js": EXPR}                   its value
  {"op": "shot", "path": FILE, "width": W, "height": H}   a full-page screenshot at that size
  {"op": "quit"}
Usage: dashboard_driver.py URL
"""
from __future__ import annotations

import json
import sys
import tempfile
from typing import Any

from playwright.sync_api import Error, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def answer(payload: dict[str, Any]) -> None:
    print(json.dumps(payload), flush=True)


def main(url: str) -> None:
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        answer({"ready": True, "title": page.title()})
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            try:
                if op == "quit":
                    break
                if op == "wait":
                    page.wait_for_function(command["js"], timeout=command["timeout_s"] * 1000)
                    answer({"ok": True, "errors": errors})
                elif op == "eval":
                    answer({"ok": True, "value": page.evaluate(command["js"]), "errors": errors})
                elif op == "shot":
                    page.set_viewport_size({"width": command["width"],
                                            "height": command["height"]})
                    page.screenshot(path=command["path"], full_page=True)
                    answer({"ok": True})
            except Error as exc:
                answer({"ok": False, "error": str(exc)[:2000], "errors": errors,
                        "html": page.inner_text("body")[:4000]})
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1])
