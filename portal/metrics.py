"""Prometheus metrics: request and tile counters/latencies per process, queue and job gauges read at scrape time.

Per-request metrics are recorded by a before/after_request pair (`install_metrics(app)`) that never touches
the database, so tile requests stay query-free. Queue lengths (Redis) and jobs by status and their recent
durations (the database) are read only when /metrics is scraped, by `ScrapeTimeCollector`.

Several Gunicorn processes: set `PROMETHEUS_MULTIPROC_DIR` to an empty, writable folder (emptied at every
start, e.g. `rm -rf $DIR && mkdir $DIR` before Gunicorn starts) in the environment of every web process.
prometheus_client then keeps each process's counters and histograms in memory-mapped files there, and a
scrape, whichever process answers it, adds them all up (`MultiProcessCollector`). Only counters and
histograms are kept per process, so no `mark_process_dead` hook is needed in the Gunicorn config. Without
the variable, each process reports its own numbers (fine for one process and for tests).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from portal.db import session_factory
from portal.models import Job, JobStatus, utcnow
from portal.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Flask endpoints that serve one tile, and the kind each is counted as.
TILE_ENDPOINTS = {"tiles.tile": "native", "iiif.iiif_image": "iiif", "iiif.dzi_image_tile": "dzi",
                  "result_tiles.label_tile": "label"}
TILE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
REQUEST_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600)
JOB_WINDOW = timedelta(hours=1)

#: The per-process metrics live in their own registry, never in prometheus_client's global one.
PROCESS_REGISTRY = CollectorRegistry()
TILES_SERVED = Counter("tilescope_tiles_served_total", "Tiles answered, by endpoint kind and status class.",
                       ["kind", "status"], registry=PROCESS_REGISTRY)
TILE_SECONDS = Histogram("tilescope_tile_seconds", "Time to answer one tile request, in seconds.",
                         ["kind"], buckets=TILE_BUCKETS, registry=PROCESS_REGISTRY)
HTTP_REQUESTS = Counter("tilescope_http_requests_total", "HTTP requests, by Flask endpoint, method and status code.",
                        ["endpoint", "method", "status"], registry=PROCESS_REGISTRY)
HTTP_SECONDS = Histogram("tilescope_http_request_seconds", "Time to answer an HTTP request, by Flask endpoint.",
                         ["endpoint"], buckets=REQUEST_BUCKETS, registry=PROCESS_REGISTRY)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def record_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    """Count one answered request (and, for tile endpoints, one tile)."""
    name = endpoint or "unmatched"  # 404s are not labelled by path: unbounded label values would swamp Prometheus
    HTTP_REQUESTS.labels(name, method, str(status)).inc()
    HTTP_SECONDS.labels(name).observe(seconds)
    kind = TILE_ENDPOINTS.get(name)
    if kind:
        TILES_SERVED.labels(kind, f"{status // 100}xx").inc()
        TILE_SECONDS.labels(kind).observe(seconds)


class ScrapeTimeCollector(Collector):
    """Queue lengths from Redis and job counts and durations from the database, read when scraped."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def collect(self):
        yield from self.queue_lengths()
        yield from self.job_metrics()

    def queue_lengths(self):
        if not self.settings.redis_url:
            return
        from rq import Queue

        from portal.jobs import ALL_QUEUES

        gauge = GaugeMetricFamily("tilescope_queue_length", "Jobs waiting in each RQ queue.", labels=["queue"])
        try:
            connection = Redis.from_url(self.settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
            for name in ALL_QUEUES:
                gauge.add_metric([name], Queue(name, connection=connection).count)
        except (RedisError, OSError):
            log.warning("metrics: Redis is unreachable; queue lengths left out")
            return
        yield gauge

    def job_metrics(self):
        session = session_factory(self.settings.sqlalchemy_url)()
        try:
            counts = session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)).all()
            since = utcnow() - JOB_WINDOW
            durations = session.execute(select(Job.kind, Job.wall_seconds).where(
                Job.status == JobStatus.FINISHED.value, Job.finished_at >= since,
                Job.wall_seconds.is_not(None))).all()
        except SQLAlchemyError:
            log.warning("metrics: the database is unreachable; job metrics left out")
            return
        finally:
            session.close()
        gauge = GaugeMetricFamily("tilescope_jobs", "Jobs in the database, by kind and status.",
                                  labels=["kind", "status"])
        for kind, status, count in counts:
            gauge.add_metric([kind, status], count)
        yield gauge
        yield job_duration_histogram(durations)


def job_duration_histogram(durations) -> HistogramMetricFamily:
    """Wall-clock seconds of the jobs finished in the last hour, by kind, as a histogram."""
    family = HistogramMetricFamily("tilescope_job_recent_seconds",
                                   "Wall-clock seconds of jobs finished in the last hour, by kind.", labels=["kind"])
    by_kind: dict[str, list[float]] = {}
    for kind, seconds in durations:
        by_kind.setdefault(kind, []).append(float(seconds))
    for kind, values in sorted(by_kind.items()):
        buckets = [(str(float(bound)), sum(v <= bound for v in values)) for bound in JOB_BUCKETS]
        buckets.append(("+Inf", len(values)))
        family.add_metric([kind], buckets, sum(values))
    return family


def render_metrics(settings: Settings) -> bytes:
    """The Prometheus text exposition of this process (or of all processes, in multiprocess mode)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = PROCESS_REGISTRY
    scrape = CollectorRegistry()
    scrape.register(ScrapeTimeCollector(settings))
    return generate_latest(registry) + generate_latest(scrape)


def install_metrics(app) -> None:
    """Time every request of `app` and count it; no database or Redis access on the request path."""
    from flask import g, request

    def start_timer():
        g.metrics_started = time.perf_counter()

    def record(response):
        started = g.pop("metrics_started", None)
        if started is not None:
            record_request(request.endpoint, request.method, response.status_code, time.perf_counter() - started)
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)  # before the policy check: time it too
    app.after_request(record)
