"""Liveness, readiness (database, Redis, storage), Prometheus metrics and JSON log lines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from portal.db import session_scope
from portal.models import Job, utcnow

REPO_ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels...): value} of a Prometheus text exposition (which must parse)."""
    return {(s.name, *sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def data_folder(request):
    """`tilescope up` creates the data folder; the settings fixture alone does not."""
    if "settings" in request.fixturenames:
        request.getfixturevalue("settings").data_path.mkdir(parents=True, exist_ok=True)


def test_healthz_touches_nothing(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_every_check_with_its_time(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "redis", "storage"}
    for check in body["checks"].values():
        assert check["status"] == "ok" and check["ms"] >= 0
    assert not [p for p in (client.application.extensions["tilescope.settings"].data_path).iterdir()
                if p.name.startswith(".readyz-")]


def test_readyz_says_redis_is_not_configured(settings):
    from portal.app import create_app

    client = create_app(replace(settings, redis_url="")).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"]["redis"]["status"] == "not configured"


def test_readyz_fails_when_redis_is_unreachable(settings):
    from portal.app import create_app

    client = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0")).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not ready"
    assert body["checks"]["redis"]["status"] == "failed"
    assert body["reason"].startswith("redis: ") and "ConnectionError" in body["reason"]
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_readyz_fails_when_the_data_folder_is_read_only(client, settings):
    client.get("/healthz")
    settings.data_path.chmod(0o555)
    try:
        response = client.get("/readyz")
    finally:
        settings.data_path.chmod(0o755)
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["storage"]["status"] == "failed"
    assert "storage: PermissionError" in body["reason"]


def test_readyz_fails_when_the_data_folder_is_missing(settings):
    from portal.app import create_app

    missing = settings.data_path / "not-there"
    client = create_app(replace(settings, data_dir=missing)).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == f"storage: RuntimeError: the data folder {missing} does not exist"


def test_metrics_count_tiles_and_their_latency(client, ready_dataset):
    before = samples(client.get("/metrics").get_data(as_text=True))
    assert client.get(f"/api/v1/datasets/{ready_dataset}/tiles/0/0/0.png").status_code == 200
    assert client.get(f"/iiif/3/{ready_dataset}/0,0,256,256/256,/0/default.jpg").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    after = samples(response.get_data(as_text=True))

    def grew(*key):
        return after.get(key, 0) - before.get(key, 0)

    assert grew("tilescope_tiles_served_total", ("kind", "native"), ("status", "2xx")) == 1
    assert grew("tilescope_tiles_served_total", ("kind", "iiif"), ("status", "2xx")) == 1
    assert grew("tilescope_tile_seconds_count", ("kind", "native")) == 1
    assert grew("tilescope_tile_seconds_bucket", ("kind", "native"), ("le", "+Inf")) == 1
    assert grew("tilescope_tile_seconds_sum", ("kind", "native")) > 0
    assert grew("tilescope_http_requests_total", ("endpoint", "tiles.tile"), ("method", "GET"), ("status", "200")) == 1
    for queue in ("convert", "analysis", "mail"):
        assert ("tilescope_queue_length", ("queue", queue)) in after


def test_metrics_report_jobs_by_status_and_recent_durations(client, settings):
    with session_scope(settings.sqlalchemy_url) as session:
        for seconds in (3.0, 40.0):
            session.add(Job(kind="convert", queue="convert", status="finished", wall_seconds=seconds,
                            finished_at=utcnow()))
        session.add(Job(kind="segment", queue="analysis", status="queued"))
    found = samples(client.get("/metrics").get_data(as_text=True))
    assert found[("tilescope_jobs", ("kind", "convert"), ("status", "finished"))] == 2
    assert found[("tilescope_jobs", ("kind", "segment"), ("status", "queued"))] == 1
    assert found[("tilescope_job_recent_seconds_count", ("kind", "convert"))] == 2
    assert found[("tilescope_job_recent_seconds_sum", ("kind", "convert"))] == 43.0
    assert found[("tilescope_job_recent_seconds_bucket", ("kind", "convert"), ("le", "5.0"))] == 1


def test_metrics_leave_out_queues_when_redis_is_down(settings):
    from portal.app import create_app

    client = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0")).test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert "tilescope_queue_length" not in names and "tilescope_jobs" in names


def test_tile_requests_add_no_database_query(client, ready_dataset):
    from sqlalchemy import event

    from portal.db import engine_for
    from portal.settings import Settings

    token = client.get(f"/api/v1/datasets/{ready_dataset}/info").get_json().get("token")
    if not token:
        pytest.skip("the info endpoint hands out no viewer token")
    app_settings: Settings = client.application.extensions["tilescope.settings"]
    engine = engine_for(app_settings.sqlalchemy_url)
    statements = []

    def remember(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        response = client.application.test_client().get(f"/api/v1/datasets/{ready_dataset}/tiles/0/0/1.png?t={token}")
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert response.status_code == 200
    assert statements == []


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    script = ("from portal.metrics import record_request, render_metrics\n"
              "from portal.settings import Settings\n"
              "import sys\nfrom pathlib import Path\n"
              "record_request('tiles.tile', 'GET', 200, 0.003)\n"
              "if sys.argv[1] == 'render':\n"
              "    sys.stdout.write(render_metrics(Settings(data_dir=Path(sys.argv[2]))).decode())\n")
    env = {**REPO_ENV, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    (tmp_path / "prom").mkdir()
    subprocess.run([sys.executable, "-c", script, "record", str(tmp_path / "var")], env=env, check=True)
    out = subprocess.run([sys.executable, "-c", script, "render", str(tmp_path / "var")], env=env, check=True,
                         capture_output=True, text=True).stdout
    found = samples(out)
    assert found[("tilescope_tiles_served_total", ("kind", "native"), ("status", "2xx"))] == 2
    assert found[("tilescope_tile_seconds_bucket", ("kind", "native"), ("le", "0.005"))] == 2


def test_json_log_lines_parse(tmp_path):
    script = ("import logging\n"
              "from portal.app import create_app\n"
              "from pathlib import Path\n"
              "from portal.settings import Settings\n"
              f"create_app(Settings.from_env(data_dir=Path({str(tmp_path / 'var')!r}), secret_key='k'))\n"
              "log = logging.getLogger('tilescope.test')\n"
              "log.warning('tile %s served', 7, extra={'dataset': 'abc'})\n"
              "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('boom')\n")
    env = {**REPO_ENV, "TILESCOPE_LOG_FORMAT": "json"}
    env.pop("TILESCOPE_DATABASE_URL", None)
    stderr = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                            text=True).stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    served = next(line for line in lines if line["message"] == "tile 7 served")
    assert served["level"] == "WARNING" and served["logger"] == "tilescope.test" and served["dataset"] == "abc"
    assert "time" in served and "process" in served
    boom = next(line for line in lines if line["message"] == "boom")
    assert "ZeroDivisionError" in boom["exception"]


def test_json_log_lines_name_the_request(app):
    import logging

    from portal.logformat import JsonFormatter

    record = logging.makeLogRecord({"name": "portal.x", "levelname": "INFO", "msg": "hello %s", "args": ("you",)})
    with app.test_request_context("/api/v1/projects", method="POST"):
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you" and line["method"] == "POST" and line["path"] == "/api/v1/projects"
    assert "path" not in json.loads(JsonFormatter().format(record))


def test_unknown_log_format_is_refused():
    from portal.logformat import log_handler

    with pytest.raises(ValueError, match="text or json"):
        log_handler("xml")


# ---- /metrics behind TILESCOPE_METRICS_TOKEN ----

METRICS_TOKEN = "scrape-me-9f2c"


@pytest.fixture
def guarded(settings):
    """An app whose /metrics asks for METRICS_TOKEN."""
    from portal.app import create_app

    return create_app(replace(settings, metrics_token=METRICS_TOKEN))


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", f"Basic {METRICS_TOKEN}",
                                           f"Bearer {METRICS_TOKEN}x", f"Bearer {METRICS_TOKEN[:-1]}",
                                           "Bearer \u00fcber", f"Token {METRICS_TOKEN}"])
def test_metrics_refuse_a_missing_or_wrong_token(guarded, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = guarded.test_client().get("/metrics", headers=headers | {"Accept": "application/json"})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'realm="tilescope metrics"' in challenge
    sent_a_bearer_token = (authorization or "").startswith("Bearer ") and authorization.strip() != "Bearer"
    assert ('error="invalid_token"' in challenge) == sent_a_bearer_token
    error = response.get_json()["error"]
    assert ("not the metrics token" if sent_a_bearer_token else "Authorization: Bearer <token>") in error
    assert "tilescope_" not in response.get_data(as_text=True)


def test_metrics_refusal_is_a_page_for_browsers(guarded):
    response = guarded.test_client().get("/metrics", headers={"Accept": "text/html"})
    assert response.status_code == 401 and response.mimetype == "text/html"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "TILESCOPE_METRICS_TOKEN" in response.get_data(as_text=True)


@pytest.mark.parametrize("authorization", [f"Bearer {METRICS_TOKEN}", f"bearer {METRICS_TOKEN}",
                                           f"  Bearer   {METRICS_TOKEN}  "])
def test_metrics_answer_the_right_token_without_a_session(guarded, authorization):
    response = guarded.test_client().get("/metrics", headers={"Authorization": authorization})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "WWW-Authenticate" not in response.headers
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"tilescope_http_requests", "tilescope_jobs"} <= names


def test_metrics_answer_a_logged_in_admin_but_not_other_users(guarded, make_user):
    from tests.conftest import log_in

    make_user("ana@example.org")
    make_user("root@example.org", admin=True)
    user, admin = guarded.test_client(), guarded.test_client()
    log_in(user, "ana@example.org")
    log_in(admin, "root@example.org")
    refused = user.get("/metrics", headers={"Accept": "application/json"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "admin" in refused.get_json()["error"]
    assert admin.get("/metrics").status_code == 200
    assert admin.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 200  # token *or* admin


def test_the_token_is_checked_before_the_session_is_loaded(guarded, settings, make_user):
    """A scrape carrying the token costs no user lookup, even from a logged-in (non-admin) browser."""
    from sqlalchemy import event

    from portal.db import engine_for
    from tests.conftest import log_in

    make_user("ana@example.org")
    client = guarded.test_client()
    log_in(client, "ana@example.org")
    engine = engine_for(settings.sqlalchemy_url)
    statements = []

    def remember(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        with_token = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        token_statements = list(statements)
        without = client.get("/metrics")
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert with_token.status_code == 200 and without.status_code == 401
    assert not [s for s in token_statements if " users" in s.lower()]
    assert [s for s in statements[len(token_statements):] if " users" in s.lower()], "the session's user was looked up"


def test_metrics_stay_open_without_a_token(client, settings):
    assert settings.metrics_token == ""
    response = client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 200 and "WWW-Authenticate" not in response.headers
