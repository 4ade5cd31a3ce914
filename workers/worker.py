"""The worker entry point: an RQ worker on the Tilescope queues (`tilescope worker`)."""

from __future__ import annotations

import logging

from rq import Queue, Worker

from portal.jobs import ALL_QUEUES, redis_connection
from portal.settings import Settings


def run_worker(settings: Settings, queues: tuple[str, ...] = ALL_QUEUES, *, burst: bool = False, name: str | None = None) -> bool:
    """Work on `queues` (in priority order) until stopped, or until they are empty with `burst`."""
    connection = redis_connection(settings)
    worker = Worker([Queue(q, connection=connection) for q in queues], connection=connection, name=name)
    logging.getLogger("rq.worker").setLevel(settings.log_level.upper())
    return worker.work(burst=burst, logging_level=settings.log_level.upper())
