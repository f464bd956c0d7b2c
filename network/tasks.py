"""How a component stops the background tasks it owns: cancel them and wait until every one has
ended, so nothing it started outlives its `close()`. Open to every room, like swarm.errors."""
from __future__ import annotations

import asyncio
from typing import Any


async def stop_tasks(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel each of `tasks` (None ones are skipped) and wait for all of them to end. What a
    task raised is its own (each logs its failures where it runs), not its closer's: it is
    retrieved and dropped, never re-raised here."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)
