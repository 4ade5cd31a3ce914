"""Liveness (/healthz), readiness (/readyz) and Prometheus metrics (/metrics) for load balancers and monitoring.

All three pass the access policy (see portal/policy.py). /metrics reveals only counts and timings, never
names or ids; when the metrics_token setting is set, it answers only requests carrying
`Authorization: Bearer <token>` (compared in constant time) and logged-in admins, and everyone else gets
a 401 with `WWW-Authenticate: Bearer`. Left empty, /metrics answers anyone: keep it inside the cluster.
"""

from __future__ import annotations

import hmac
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Response, jsonify, make_response, request
from flask_login import current_user
from redis import Redis
from sqlalchemy import text

from portal.context import settings
from portal.db import session_factory
from portal.errors import error_response
from portal.metrics import CONTENT_TYPE, render_metrics
from portal.settings import Settings
from portal.storage import open_settings_store

blueprint = Blueprint("health", __name__)

CHECK_TIMEOUT_SECONDS = 2.0


def check_database(settings: Settings) -> str:
    session = session_factory(settings.sqlalchemy_url)()
    try:
        session.execute(text("SELECT 1")).scalar_one()
    finally:
        session.close()
    return "ok"


def check_redis(settings: Settings) -> str:
    if not settings.redis_url:
        return "not configured"
    connection = Redis.from_url(settings.redis_url, socket_timeout=CHECK_TIMEOUT_SECONDS,
                                socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        connection.ping()
    finally:
        connection.close()
    return "ok"


def check_storage(settings: Settings) -> str:
    """The data folder exists and a file can be created in it (and removed again); so can an object in S3 storage."""
    folder = settings.data_path
    if not folder.is_dir():
        raise RuntimeError(f"the data folder {folder} does not exist")
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".readyz-") as probe:
        probe.write(b"ok")
        probe.flush()
        os.fsync(probe.fileno())
        store = open_settings_store(settings)
        if not store.is_local:  # originals, pyramids and results live in an object store: write and remove a probe
            place = store.location(f".readyz/{socket.gethostname()}-{os.getpid()}")
            place.put_file(probe.name)
            place.delete()
    return "ok"


CHECKS = {"database": check_database, "redis": check_redis, "storage": check_storage}


def readiness(settings: Settings, timeout: float = CHECK_TIMEOUT_SECONDS) -> tuple[bool, dict]:
    """Run every check at once, each bounded by `timeout`; (all passed, {name: {status, ms[, reason]}})."""
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    started = time.perf_counter()
    futures = {name: pool.submit(_timed, check, settings) for name, check in CHECKS.items()}
    results = {}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.perf_counter() - started))
        try:
            status, ms = future.result(timeout=remaining)
            results[name] = {"status": status, "ms": ms}
        except FutureTimeout:
            results[name] = {"status": "failed", "ms": round(timeout * 1000, 1), "reason": f"no answer in {timeout:g} s"}
        except Exception as exc:  # noqa: BLE001 - any failure makes the check fail, with its reason
            results[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    pool.shutdown(wait=False, cancel_futures=True)  # a hung check must not hold up the answer
    return all(r["status"] != "failed" for r in results.values()), results


def _timed(check, settings: Settings) -> tuple[str, float]:
    started = time.perf_counter()
    status = check(settings)
    return status, round((time.perf_counter() - started) * 1000, 1)


@blueprint.get("/healthz")
def health():
    """The process is alive; no dependency is touched."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def ready():
    ok, checks = readiness(settings())
    if ok:
        return jsonify(status="ready", checks=checks)
    failed = {name: check["reason"] for name, check in checks.items() if check["status"] == "failed"}
    reason = "; ".join(f"{name}: {why}" for name, why in failed.items())
    return jsonify(status="not ready", reason=reason, checks=checks), 503


@blueprint.get("/metrics")
def metrics():
    refusal = metrics_refusal(settings().metrics_token)
    if refusal is not None:
        return refusal
    return Response(render_metrics(settings()), content_type=CONTENT_TYPE)


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when the request carries none."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def metrics_refusal(expected: str):
    """None when /metrics may answer (no token configured, the right bearer token, a logged-in admin); else a 401."""
    if not expected:
        return None
    sent = bearer_token()
    if sent is not None and hmac.compare_digest(sent.encode(), expected.encode()):
        return None  # checked before the session: a scrape with the token costs no database query
    if current_user.is_authenticated and current_user.is_admin:
        return None
    if sent is None:
        message = ("/metrics needs the metrics token: send 'Authorization: Bearer <token>' with the value of "
                   "TILESCOPE_METRICS_TOKEN (or log in as an admin)")
        challenge = 'Bearer realm="tilescope metrics"'
    else:
        message = "the bearer token is not the metrics token (TILESCOPE_METRICS_TOKEN); /metrics refused"
        challenge = 'Bearer realm="tilescope metrics", error="invalid_token"'
    response = make_response(error_response(401, message))
    response.headers["WWW-Authenticate"] = challenge
    response.headers["Cache-Control"] = "no-store"
    return response
