"""What the node shows a person: rich logging, progress bars and the start-up panel."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

console = Console(stderr=True)


def plain_console() -> Console:
    """Where a command prints its result: the terminal, or stdout without wrapping in a pipe."""
    return console if console.is_terminal else Console(width=200)


def setup_logging(level: str) -> None:
    """Install rich's handler once on the root logger; quiet chatty libraries."""
    logging.basicConfig(level=level.upper(), format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=console, show_path=False,
                                              rich_tracebacks=True)], force=True)
    for noisy in ("aiohttp.access", "transformers", "httpx", "urllib3", "filelock", "gguf"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[str, float], None]]:
    """A progress bar driven by (stage, fraction) reports; disappears when done."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(title, total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=f"{title}: {stage}")

        yield report


@contextmanager
def transfer_bar(title: str, total_bytes: int) -> Iterator[Callable[[int, Iterable[str]], None]]:
    """A download bar driven by (bytes done, peers sending) reports: bytes, rate, time left and
    the peers; disappears when done."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[peers]}"),
                  console=console, transient=True) as progress:
        task = progress.add_task(title, total=total_bytes, peers="")

        def report(done_bytes: int, peers: Iterable[str]) -> None:
            progress.update(task, completed=done_bytes, peers="from " + ", ".join(peers))

        yield report


def startup_panel(rows: dict[str, str], url: str) -> Panel:
    """The panel printed once the node serves: model, backend, instances, URL."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, value)
    table.add_row("OpenAI URL", f"[bold green]{url}/v1[/]")
    table.add_row("Ollama URL", f"{url} (/api/chat, /api/generate, /api/tags)")
    table.add_row("dashboard", f"[bold green]{url}/dashboard[/]")
    table.add_row("try", f'curl {url}/v1/chat/completions -H "Content-Type: application/json" '
                         "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'")
    return Panel(table, title="[bold]Local Swarm[/] node ready", subtitle="Ctrl-C to stop",
                 expand=False)
