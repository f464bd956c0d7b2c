"""Runs inside the span venv: start petals' own DHT bootstrap or span server CLI, guarded.

    python launch.py dht    [petals run_dht arguments]
    python launch.py server [petals run_server arguments]

Before petals is imported: the hivemind shim (`compat`), the address guard (`guard`). SIGTERM and
SIGINT become KeyboardInterrupt in this main process, the one exit on which petals shuts down its
children and both p2pd daemons (under `nohup` SIGINT starts ignored, and a plain SIGTERM orphans
them); SIGUSR1 dumps every thread's stack to stderr. A server prints `ANNOUNCED_ONLINE` once
its blocks are stored in the DHT as online: the line our supervisor waits for.
"""
import faulthandler
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import compat  # noqa: E402

compat.apply()
import guard  # noqa: E402
import orphan  # noqa: E402

guard.install()

_MAIN_PID = os.getpid()
ANNOUNCED_ONLINE = "[local-swarm] blocks announced online"


def _report_online_announcements(server_module):
    """Print `ANNOUNCED_ONLINE` after the first declaration of the server's blocks as ONLINE that
    the DHT stored. petals logs "Started" when its runtime runs, but its announcer thread stores
    the ONLINE record only afterwards: a client that reads the DHT between the two sees no server
    for those blocks (MissingBlocksError right after a re-plan)."""
    from petals.data_structures import ServerState

    declare = server_module.declare_active_modules
    reported = []

    def declare_and_report(dht, uids, server_info, expiration_time, wait=True):
        stored = declare(dht, uids, server_info, expiration_time, wait=wait)
        if wait and not reported and server_info.state == ServerState.ONLINE \
                and stored and all(stored.values()):
            reported.append(True)
            print(ANNOUNCED_ONLINE, flush=True)
        return stored

    server_module.declare_active_modules = declare_and_report


def _interrupt(_signum, _frame):
    if os.getpid() == _MAIN_PID:
        raise KeyboardInterrupt


def main():
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    orphan.watch()
    what = sys.argv.pop(1)
    sys.argv[0] = f"petals.cli.run_{what}"
    if what == "dht":
        # The forked DHT child inherits _interrupt, which ignores SIGTERM outside the main pid, so
        # multiprocessing's exit-time terminate() + join() of that child would hang forever.
        os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
        from petals.cli import run_dht as cli
    elif what == "server":
        import petals.server.server
        from petals.cli import run_server as cli

        _report_online_announcements(petals.server.server)
        cli.validate_version = lambda: None  # no request to the package index
    else:
        raise SystemExit(f"launch.py: unknown command {what!r} (dht or server)")
    try:
        cli.main()
    except KeyboardInterrupt:
        pass
    finally:
        # petals has stopped what it knows of; children it lost track of (a forked DHT, a p2pd)
        # must not outlive us.
        orphan.end_group()


if __name__ == "__main__":
    main()
