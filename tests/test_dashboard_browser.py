"""The dashboard in a real headless Chromium against real nodes (`main.py --federation`, the
embedded model) on a namespace LAN: the nodes and the coordinator appear, a request appears in the
history with its candidates, a killed node turns dead, and the page fits a phone's screen.

The browser runs in node 1's namespace (tests/dashboard_driver.py), since the root namespace cannot
reach the namespace LAN. Screenshots go to $DASHBOARD_SHOTS (a temporary folder by default).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm.node.config import ApiConfig
from tests.netns import NetnsLan, netns_available
from tests.node_apps import federated_app, scripted_pool
from tests.server import ServerThread
from tests.test_lan_swarm import ASK, ROOT, Node, client

AVAILABLE, WHY = netns_available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="Debian's chromium is not installed (apt-get install chromium; "
                              ".ci/run installs it)"),
]
playwright = pytest.importorskip("playwright", reason="Playwright (pip) drives chromium")
DRIVER = str(ROOT / "tests" / "dashboard_driver.py")


class Browser:
    """tests/dashboard_driver.py showing `url`: in namespace `i` of `lan`, or on this machine's
    loopback without one."""

    def __init__(self, lan: NetnsLan | None, i: int, url: str) -> None:
        argv = [sys.executable, DRIVER, url]
        pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE,
                                 "text": True}
        self.proc = lan.spawn(i, argv, **pipes) if lan is not None else subprocess.Popen(
            argv, **pipes)
        ready = self._read()
        assert ready.get("ready"), ready
        assert ready["title"] == "Local Swarm"

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the browser driver exited"
        return json.loads(line)

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def wait(self, js: str, timeout_s: float) -> None:
        reply = self.ask(op="wait", js=js, timeout_s=timeout_s)
        assert reply["ok"], reply
        assert not reply["errors"], reply["errors"]  # no JavaScript error on the page

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(30)


@pytest.mark.lan
@pytest.mark.skipif(not AVAILABLE, reason=WHY)
def test_the_page_shows_nodes_coordinator_requests_and_a_killed_node(tmp_path):
    shots = Path(os.environ.get("DASHBOARD_SHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with NetnsLan(3) as lan:
        nodes = [Node(lan, i) for i in (1, 2, 3)]
        for node in nodes:
            node.wait_ready()
        browser = Browser(lan, 1, nodes[0].url + "/dashboard")
        try:
            browser.wait("document.querySelectorAll('#nodes tr[data-state=alive]').length === 3"
                         " && document.querySelectorAll('#nodes tr[data-coordinator=yes]')"
                         ".length === 1 && document.querySelector('#status').dataset.status"
                         " === 'live'", 30)
            coordinator = browser.ask(op="eval", js="document.querySelector("
                                      "'#nodes tr[data-coordinator=yes]').dataset.node")["value"]
            assert coordinator in {"n1", "n2", "n3"}

            body = {"messages": ASK, "max_tokens": 12, "seed": 3,
                    "swarm": {"strategy": "weighted_vote", "n": 3}}
            reply = client(lan, 1, "chat", nodes[0].url, json.dumps(body))
            assert reply["status"] == 200, reply
            browser.wait("document.querySelectorAll("
                         "'#requests [data-strategy=weighted_vote] tr[data-candidate]').length"
                         " === 3", 15)
            shown = browser.ask(op="eval", js="[...document.querySelectorAll("
                                "'#requests [data-strategy=weighted_vote] tr[data-candidate]')]"
                                ".map(r => r.innerText)")["value"]
            assert sum("winner" in row for row in shown) == 1, shown
            assert browser.ask(op="shot", path=str(shots / "dashboard.png"), width=1280,
                               height=900)["ok"]

            nodes[2].proc.send_signal(signal.SIGKILL)
            browser.wait("document.querySelector('#nodes tr[data-node=n3]').dataset.state"
                         " === 'dead'", 30)
            assert browser.ask(op="shot", path=str(shots / "dashboard-dead.png"), width=1280,
                               height=900)["ok"]
            # A phone: no sideways scrolling, the rows become cards.
            assert browser.ask(op="shot", path=str(shots / "dashboard-phone.png"), width=390,
                               height=844)["ok"]
            wide = browser.ask(op="eval", js="document.documentElement.scrollWidth")["value"]
            assert wide <= 390, wide
        finally:
            browser.close()


def test_with_api_keys_the_page_asks_for_one_and_then_shows_the_node(tmp_path):
    pool = scripted_pool(2)
    server = ServerThread(lambda: federated_app(pool, ApiConfig(keys=("sekrit",)))).start()
    browser = Browser(None, 0, server.url + "/dashboard")
    try:
        browser.wait("!document.getElementById('keyform').hidden", 15)
        submit = ("(k => { document.getElementById('key').value = k; "
                  "document.getElementById('keyform').requestSubmit(); return true; })")
        assert browser.ask(op="eval", js=submit + "('wrong')")["ok"]
        browser.wait("document.getElementById('keyerror').textContent.includes('refused')", 15)
        assert browser.ask(op="eval", js=submit + "('sekrit')")["ok"]
        browser.wait("document.querySelectorAll('#nodes tr[data-state=alive]').length === 1", 15)
        reply = httpx.post(server.url + "/v1/chat/completions", timeout=30,
                           headers={"Authorization": "Bearer sekrit"},
                           json={"messages": [{"role": "user", "content": "hi"}],
                                 "swarm": {"strategy": "best_of_n", "n": 2}})
        assert reply.status_code == 200
        browser.wait("document.querySelectorAll('#requests [data-strategy=best_of_n] "
                     "tr[data-candidate]').length === 2", 15)
        assert browser.ask(op="shot", path=str(tmp_path / "keyed.png"), width=1000,
                           height=700)["ok"]
    finally:
        browser.close()
        server.stop()
