"""Runs inside the span venv: end this process when the node that started it is gone.

The node also sets PR_SET_PDEATHSIG on its children; this watch covers what that misses (the
death signal follows the thread that forked, and is lost when it is sent before a handler runs).
"""
import os
import signal
import threading
import time


def watch(interval=0.5):
    """SIGTERM ourselves (a clean shutdown) once our parent process has changed."""
    parent = os.getppid()

    def run():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=run, name="orphan-watch", daemon=True).start()
