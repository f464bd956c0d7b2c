"""Runs inside the span venv: leave nothing behind when this process or its node goes.

Each span process is the leader of its own process group (the node starts it in a new session),
and its children join that group: hivemind's DHT runs in a forked process and every P2P has its
p2pd daemon. Those outlive a main process that exits abruptly, so `end_group()` takes them along.
The node sets PR_SET_PDEATHSIG on its children too; `watch()` covers what that misses.
"""
import os
import signal
import threading
import time

GRACE_S = 10.0  # a clean shutdown after the node is gone gets this long, then the group is killed


def end_group():
    """SIGKILL our whole process group (ourselves included): the last thing a span process does."""
    os.killpg(os.getpgid(0), signal.SIGKILL)


def watch(interval=0.5):
    """Once our parent (the node) is gone: SIGTERM ourselves (a clean shutdown), and if we are
    still here `GRACE_S` later, end the group."""
    parent = os.getppid()

    def run():
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE_S)
        end_group()

    threading.Thread(target=run, name="orphan-watch", daemon=True).start()
