"""Worker of the floor workflow, in its own process as the journey worker (``worker.py``) is,
configured from the same settings: ``python -m bench.floor_worker``."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from bench.floor import BareJourney, noop
from settings import get_settings
from starter.client import connect


def build_floor_worker(client: Client, *, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BareJourney],
        activities=[noop],
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    client = await connect(settings)
    worker = build_floor_worker(client, task_queue=settings.temporal_task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("bench.floor").info(
        "worker polling task queue %r on %s", settings.temporal_task_queue, settings.temporal_target
    )
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
