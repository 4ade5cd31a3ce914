"""Deployment files: docker-compose.yml, Dockerfile, .dockerignore, docs/deploy.md, deploy/ (health checks, nginx)."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import socket
import subprocess
import sys

import pytest
import yaml
from redis import Redis

from portal.embedded_redis import free_port
from portal.migrations import upgrade
from portal.settings import Settings
from tests.conftest import REPO, serving, settings_env, wait_until

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
NGINX_CONF = REPO / "deploy" / "nginx" / "tilescope.conf"
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
ONE_SHOT = {"migrate", "createbucket"}
SCALABLE = {"web", "worker", "dask-worker"}


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), one list per FROM stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


# ---- docker-compose.yml ------------------------------------------------------------------------------------
def test_compose_has_the_whole_stack(services):
    assert {"postgres", "redis", "minio", "createbucket", "migrate", "web", "worker"} <= set(services)
    assert services["migrate"]["command"] == ["tilescope", "db", "upgrade"]
    assert services["worker"]["command"] == ["tilescope", "worker"]
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert any("pg_isready" in part for part in services["postgres"]["healthcheck"]["test"])
    assert any("ping" in part for part in services["redis"]["healthcheck"]["test"])
    for name in ("postgres", "redis", "minio"):
        volume = services[name]["volumes"][0].split(":")[0]
        assert volume in yaml.safe_load(COMPOSE.read_text())["volumes"], f"{name} keeps its data in a named volume"
    for name in ("dask-scheduler", "dask-worker", "proxy"):
        assert services[name].get("profiles"), f"{name} is optional: it belongs to a profile"


def test_every_long_running_service_has_a_working_healthcheck(services):
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} runs once"
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_scalable_services_have_no_container_name_and_no_fixed_host_port(services):
    for name in SCALABLE:
        assert "container_name" not in services[name], name
        for port in services[name].get("ports", []):
            assert str(port).startswith("${"), f"{name}: host port {port} would clash when scaled"


def test_web_and_worker_wait_for_the_one_shot_services(services):
    for name in ("web", "worker"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["createbucket"]["condition"] == "service_completed_successfully", name
        assert needs["redis"]["condition"] == "service_healthy", name
        assert "tilescope-data:/data" in services[name]["volumes"], f"{name} shares the data folder (tus uploads)"
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_every_dependency_names_an_existing_service(services):
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        needs = service.get("depends_on", {})
        for other in needs:
            assert other in services, f"{name} depends on unknown service {other}"
            if isinstance(needs, dict):
                assert needs[other]["condition"] in conditions
            if needs[other]["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}, which has no healthcheck"


def test_web_and_worker_get_the_same_settings(services):
    web_env, worker_env = services["web"]["environment"], services["worker"]["environment"]
    shared = {key: value for key, value in web_env.items() if key.startswith("TILESCOPE_")}
    assert shared == {key: value for key, value in worker_env.items() if key.startswith("TILESCOPE_")}
    for key in ("TILESCOPE_DATABASE_URL", "TILESCOPE_REDIS_URL", "TILESCOPE_SECRET_KEY", "TILESCOPE_STORAGE_URL",
                "TILESCOPE_S3_ENDPOINT_URL", "TILESCOPE_DATA_DIR"):
        assert key in shared, key
    assert ":?" in shared["TILESCOPE_SECRET_KEY"], "the secret key has no default: compose refuses to start without it"


def test_every_tilescope_variable_mentioned_is_a_real_setting():
    settings = {"TILESCOPE_" + f.name.upper() for f in dataclasses.fields(Settings)}
    files = [COMPOSE, DOCKERFILE, DEPLOY_DOC, *sorted((REPO / "deploy").rglob("*.*"))]
    mentioned = {}
    for path in files:
        if path.suffix in (".pyc",):
            continue
        for name in re.findall(r"\bTILESCOPE_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")):
            mentioned.setdefault(name, path.relative_to(REPO))
    unknown = {name: str(path) for name, path in mentioned.items() if name not in settings}
    assert not unknown, f"not settings of portal/settings.py: {unknown}"
    assert len(mentioned) >= 15


# ---- Dockerfile and .dockerignore ----------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    runtime = stages[-1]
    users = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert any(line.upper().startswith("HEALTHCHECK ") and "/healthz" in (REPO / "deploy/healthcheck.py").read_text()
               for line in runtime)
    assert any(line.upper().startswith("CMD ") for line in runtime)
    runtime_text = "\n".join(runtime)
    assert "from=builder" in runtime_text, "the runtime stage installs the builder's wheels"
    for compiler in ("build-essential", "gcc", "redis-server"):
        assert compiler not in runtime_text, f"{compiler} in the runtime stage"
    assert 'VOLUME ["/data"]' in runtime_text and "chown tilescope:tilescope /data" in runtime_text
    assert "PROMETHEUS_MULTIPROC_DIR" in runtime_text


def test_dockerfile_copies_only_files_that_exist_and_are_in_the_build_context():
    ignored = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    copied = []
    for line in (line for stage in dockerfile_stages() for line in stage):
        if line.upper().startswith("COPY ") and "--from=" not in line:
            copied += line.split()[1:-1]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        top = source.split("/")[0]
        assert not any(fnmatch.fnmatch(source, pattern) or fnmatch.fnmatch(top, pattern) for pattern in ignored), \
            f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_secrets_out():
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for needed in (".venv", "var", ".env", ".git", ".pytest_cache", "__pycache__"):
        assert needed in patterns, needed
    assert "tests" in patterns or "tests/artifacts" in patterns


# ---- deploy/healthcheck.py -----------------------------------------------------------------------------------
def run_healthcheck(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)


def test_web_healthcheck_passes_on_a_live_server_and_fails_on_a_dead_one(app, settings):
    settings.data_path.mkdir(parents=True, exist_ok=True)  # /readyz checks the data folder; the image creates /data
    with serving(app) as url:
        alive = run_healthcheck("web", f"{url}/healthz")
        ready = run_healthcheck("web", f"{url}/readyz")
    assert alive.returncode == 0 and "200" in alive.stdout, alive.stderr
    assert ready.returncode == 0, ready.stderr
    dead = run_healthcheck("web", f"http://127.0.0.1:{free_port()}/healthz")
    assert dead.returncode == 1 and "unhealthy" in dead.stderr


def test_worker_healthcheck_needs_a_live_worker_of_this_host(tmp_path, redis_server, start_worker):
    # SQLite only: the check's database part is one SELECT 1 (the readiness test above runs on both databases).
    # A Redis database of its own, so that workers of other tests (still within their TTL) do not count; a
    # heartbeat every second, so a dead worker is stale after 16 s.
    database_url = f"sqlite:///{tmp_path / 'worker.db'}"
    upgrade(database_url)
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, secret_key="test-secret",
                        redis_url=redis_server.url.rsplit("/", 1)[0] + "/9", job_heartbeat_seconds=1,
                        log_level="WARNING")
    Redis.from_url(settings.redis_url).flushdb()
    env = settings_env(settings)
    before = run_healthcheck("worker", env=env)
    assert before.returncode == 1 and f"no worker of host {socket.gethostname()}" in before.stderr, before.stderr
    worker = start_worker(settings)
    wait_until(lambda: run_healthcheck("worker", env=env).returncode == 0, timeout=90, interval=1,
               what="the worker healthcheck to pass")
    worker.kill_with_its_jobs()  # SIGKILL: no chance to unregister; the check must notice by the missing heartbeat
    wait_until(lambda: run_healthcheck("worker", env=env).returncode == 1, timeout=60, interval=1,
               what="the worker healthcheck to fail after the worker died")
    broken = run_healthcheck("worker", env=dict(env, TILESCOPE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    assert broken.returncode == 1 and "unhealthy" in broken.stderr


# ---- the front proxy's tile cache (deploy/nginx/tilescope.conf) -----------------------------------------------
def tile_location() -> re.Pattern:
    match = re.search(r"location ~ (\^/\(.*tiles.*\)) \{", NGINX_CONF.read_text())
    assert match, "no tile location in the nginx example"
    return re.compile(match.group(1))


def test_the_tile_location_matches_every_tile_url_and_nothing_else(app):
    location = tile_location()
    with app.test_request_context():
        from flask import url_for

        tiles = [url_for("tiles.tile", dataset_id="d1", level=2, row=3, col=4, ext="jpg"),
                 url_for("iiif.iiif_image", dataset_id="d1", region="full", size="max", rotation="0",
                         quality="default", fmt="jpg"),
                 url_for("iiif.dzi_image_tile", dataset_id="d1", level=9, col=1, row=2, ext="jpeg"),
                 url_for("result_tiles.label_tile", result_id="r1", level=0, row=0, col=0)]
        others = [url_for("tiles.info", dataset_id="d1"), url_for("iiif.iiif_info", dataset_id="d1"),
                  url_for("iiif.dzi_descriptor", dataset_id="d1"), url_for("iiif.iiif_base", dataset_id="d1"),
                  "/api/v1/datasets/d1", "/datasets/d1/view", "/metrics", "/readyz"]
    for path in tiles:
        assert location.match(path), f"{path} is a tile but would not be cached"
    for path in others:
        assert not location.match(path), f"{path} is not a tile but would be cached"


def test_token_signed_tiles_are_cacheable_and_tiles_without_a_token_are_not(app, logged_in, ready_dataset):
    """What the nginx example relies on: a tile carrying `t=` is the same for everyone and sets no cookie; one without
    it depends on the session cookie (so it must never be answered from a shared cache)."""
    info = logged_in.get(f"/api/v1/datasets/{ready_dataset}/info").get_json()
    path = f"/api/v1/datasets/{ready_dataset}/tiles/0/0/0.jpg"
    assert tile_location().match(path)
    with_session = logged_in.get(f"{path}?v={info['version']}&t={info['token']}")
    stranger = app.test_client().get(f"{path}?v={info['version']}&t={info['token']}")
    assert with_session.status_code == stranger.status_code == 200
    assert with_session.data == stranger.data
    for response in (with_session, stranger):
        assert "Set-Cookie" not in response.headers
        assert response.headers["ETag"] and "max-age" in response.headers["Cache-Control"]
    assert app.test_client().get(path).status_code == 401
    assert logged_in.get(path).status_code == 200  # the same URL without a token: allowed only by the cookie
    conf = NGINX_CONF.read_text()
    assert "proxy_no_cache $tile_without_token" in conf and "proxy_cache_bypass $tile_without_token" in conf
    assert "Set-Cookie" not in re.search(r"proxy_ignore_headers([^;]*);", conf).group(1)
