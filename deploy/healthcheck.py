"""Container health checks: `web` asks this container's /healthz; `worker` wants this host's RQ worker alive and the database up.

    python /app/deploy/healthcheck.py web [URL]   default URL http://127.0.0.1:$TILESCOPE_PORT/healthz
    python /app/deploy/healthcheck.py worker      settings from the TILESCOPE_* environment, like the worker's

Exit status 0 when healthy, 1 (with the reason on stderr) when not; Docker runs it as a HEALTHCHECK.
The worker check is about the worker process, not only its dependencies: a `tilescope worker` registers itself in
Redis and sends a heartbeat every few seconds, idle or busy (RQ's worker heartbeat), so a worker that died, hung or
lost Redis is unhealthy once its last heartbeat is older than its TTL. The check also runs `SELECT 1` on the database.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

TIMEOUT_SECONDS = 4.0


def check_web(url: str | None = None) -> str:
    """The web server answers /healthz with 200 (urllib raises on anything else)."""
    url = url or f"http://127.0.0.1:{os.environ.get('TILESCOPE_PORT') or 8000}/healthz"
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        return f"{url} answered {response.status}"


def check_worker(hostname: str | None = None) -> str:
    """Redis answers, a worker of this host has sent a heartbeat within its TTL, and the database answers."""
    from datetime import UTC, datetime

    from redis import Redis
    from rq import Worker
    from sqlalchemy import text

    from portal.db import engine_for
    from portal.settings import Settings
    from workers.worker import check_interval

    settings = Settings.from_env()
    if not settings.redis_url:
        raise RuntimeError("TILESCOPE_REDIS_URL is not set")
    hostname = hostname or socket.gethostname()
    connection = Redis.from_url(settings.redis_url, socket_timeout=TIMEOUT_SECONDS,
                                socket_connect_timeout=TIMEOUT_SECONDS)
    try:
        registered = [worker for worker in Worker.all(connection=connection) if worker.hostname == hostname]
    finally:
        connection.close()
    if not registered:
        raise RuntimeError(f"no worker of host {hostname} is registered in Redis")
    # A worker beats every check_interval seconds, idle or busy; its registration outlives a SIGKILL by a minute.
    ttl = check_interval(settings) + 15
    now = datetime.now(UTC)
    ages = [(now - _utc(worker.last_heartbeat)).total_seconds() if worker.last_heartbeat else float("inf")
            for worker in registered]
    if min(ages) > ttl:
        raise RuntimeError(f"the worker(s) of host {hostname} sent no heartbeat for {min(ages):.0f} s (limit {ttl} s)")
    with engine_for(settings.sqlalchemy_url).connect() as database:
        database.execute(text("SELECT 1")).scalar_one()
    return f"worker of {hostname} alive (heartbeat {min(ages):.0f} s ago); database answers"


def _utc(moment):
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


CHECKS = {"web": check_web, "worker": check_worker}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {{{'|'.join(CHECKS)}}} [argument]", file=sys.stderr)
        return 2
    try:
        print(CHECKS[argv[0]](*argv[1:2]))
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", with its reason
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
