"""Shared fixtures: a private Redis, every database test on SQLite and PostgreSQL, app/client/login helpers."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from portal.accounts import create_user
from portal.db import dispose_engines, session_scope
from portal.embedded_redis import EmbeddedRedis
from portal.migrations import upgrade
from portal.settings import Settings, normalise_database_url

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("TILESCOPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server of our own on a free port, for the whole test session."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server():
    """moto's standalone S3 server on a free loopback port, for the whole test session (per xdist worker)."""
    from tests.s3 import start_s3_server

    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture
def s3_storage_env(s3_server) -> dict[str, str]:
    """TILESCOPE_* variables putting storage in a fresh bucket of the loopback S3 server."""
    return {**s3_server.env(), "TILESCOPE_STORAGE_URL": f"s3://{s3_server.new_bucket()}/tilescope"}


@pytest.fixture(scope="session")
def postgres_admin_url():
    url = normalise_database_url(POSTGRES_URL)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except OperationalError as exc:  # CI must fail, not skip, when PostgreSQL is missing
        pytest.fail(f"PostgreSQL is unreachable at {POSTGRES_URL} (set TILESCOPE_TEST_POSTGRES_URL): {exc}", pytrace=False)
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        dispose_engines()
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    name = f"tilescope_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory) -> Path:
    """One SQLite file migrated to the newest schema per test session, copied for each test (0.3 s saved a test)."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    upgrade(f"sqlite:///{path}")
    dispose_engines()
    return path


@pytest.fixture
def database_url(request, empty_database_url):
    """A fresh database migrated to the newest schema."""
    if empty_database_url.startswith("sqlite:///"):
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_template"), empty_database_url[len("sqlite:///"):])
    else:
        upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def settings(tmp_path, database_url, redis_server):
    return Settings(data_dir=tmp_path / "var", database_url=database_url, redis_url=redis_server.url,
                    secret_key="test-secret", log_level="WARNING")


@pytest.fixture
def app(settings):
    from portal.app import create_app

    app = create_app(settings)
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_user(settings):
    def make(email="ana@example.org", *, admin=False, password=PASSWORD):
        with session_scope(settings.sqlalchemy_url) as session:
            return create_user(session, email, password, is_admin=admin).id
    return make


def csrf_token(client, path="/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def log_in(client, email="ana@example.org", password=PASSWORD):
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


@pytest.fixture
def logged_in(client, make_user):
    make_user()
    log_in(client)
    return client


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a worker subprocess with exactly these settings, logging warnings only."""
    return dict(settings_env(settings), TILESCOPE_LOG_LEVEL="WARNING")


def run_worker_burst(settings: Settings) -> subprocess.CompletedProcess:
    """A real `tilescope worker --burst` process: works every queued job, then exits."""
    result = subprocess.run([sys.executable, "-m", "portal.cli", "worker", "--burst"], env=worker_env(settings),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def post_multipart(client, path: str, data: dict, headers: dict | None = None):
    """POST multipart/form-data through the test client, closing the temporary body file Werkzeug spools big bodies to."""
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path=path, method="POST", data=data, headers=headers, content_type="multipart/form-data")
    environ = builder.get_environ()
    builder.close()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()


def add_converted_dataset(settings, source_path, *, name: str, voxel_size=None) -> str:
    """Convert `source_path` straight into a new READY dataset of a new project owned by the only user; no worker."""
    from sqlalchemy import select

    from portal.models import Dataset, DatasetStatus, Membership, Project, Role, User
    from portal.storage import Storage
    from tiler.convert import build_pyramid
    from tiler.readers import open_image

    storage = Storage(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User))
        project = Project(name=f"{name} project", created_by_id=user.id)
        project.memberships.append(Membership(user_id=user.id, role=Role.OWNER.value))
        session.add(project)
        session.flush()
        dataset = Dataset(project_id=project.id, name=name, original_filename=source_path.name,
                          original_sha256="0" * 64, original_size=1, format="TEST")
        session.add(dataset)
        session.flush()
        with open_image(source_path) as source:
            if voxel_size:
                source.voxel_size = voxel_size
            built = storage.scratch(f"test-{dataset.id}") / "pyramid.ome.zarr"
            summary = build_pyramid(source, built)
        storage.pyramid(dataset.id).publish_tree(built)
        *depth, dataset.height, dataset.width = summary.shape[1:]
        dataset.depth = depth[0] if depth else None
        dataset.status = DatasetStatus.READY.value
        dataset.pyramid_path = storage.pyramid(dataset.id).key
        dataset.pyramid_info = {"levels": [list(level) for level in summary.levels]}
        return dataset.id


@pytest.fixture
def ready_dataset(settings, logged_in):
    """A project of the logged-in user holding one converted 1000×700 uint8 dataset (no worker needed)."""
    from tiler.synthetic import write_synthetic_tiff

    source = write_synthetic_tiff(settings.storage_dir("uploads") / "source.tif", (700, 1000), "uint8", tile=256)
    return add_converted_dataset(settings, source, name="ready")


# ==== jobs (tests/test_jobs_*.py): real worker processes with every setting, a loopback SMTP server ====

def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess exactly these settings (every TILESCOPE_* variable)."""
    from dataclasses import fields

    env = {k: v for k, v in os.environ.items() if not k.startswith("TILESCOPE_")}
    for f in fields(settings):
        value = getattr(settings, f.name)
        env[f"TILESCOPE_{f.name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class WorkerProcess:
    """A `tilescope worker` subprocess; `kill_with_its_jobs` is a machine gone: the worker and its work-horse die."""

    def __init__(self, settings: Settings, queues: tuple[str, ...] = ()):
        args = [sys.executable, "-m", "portal.cli", "worker"] + [a for q in queues for a in ("--queue", q)]
        self.process = subprocess.Popen(args, env=settings_env(settings), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill_with_its_jobs(self) -> None:
        import psutil

        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.process.kill()
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=10)
        psutil.wait_procs(children, timeout=10)

    def stderr(self) -> str:
        return self.process.stderr.read() if self.process.poll() is not None else ""


@pytest.fixture
def start_worker():
    """Start `tilescope worker` processes (queues optional); every one still running is killed afterwards."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, *queues: str) -> WorkerProcess:
        started.append(WorkerProcess(settings, queues))
        return started[-1]

    yield start
    for worker in started:
        if worker.alive():
            worker.kill_with_its_jobs()
        worker.process.stderr.close()


@pytest.fixture
def smtp_inbox():
    """A real SMTP server (aiosmtpd) on loopback: yields (port, list of the messages it received)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    from portal.embedded_redis import free_port

    class Collect(Message):
        def __init__(self):
            super().__init__()
            self.messages = []

        def handle_message(self, message):
            self.messages.append(message)

    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, handler.messages
    controller.stop()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "the condition"):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def run_burst(settings: Settings) -> subprocess.CompletedProcess:
    """`tilescope worker --burst` with exactly these settings (see settings_env): works every queued job, then exits."""
    result = subprocess.run([sys.executable, "-m", "portal.cli", "worker", "--burst"], env=settings_env(settings),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result
# ==== end of jobs fixtures ====


# ==== search (tests/test_search.py, tests/test_catalogue.py) ====
def add_search_fixture_project(settings, user_email: str = "ana@example.org", name: str = "Bone study") -> int:
    """A project owned by the user with this email; returns its id."""
    from sqlalchemy import select

    from portal.models import Membership, Project, Role, User

    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User).where(User.email == user_email))
        project = Project(name=name, created_by_id=user.id)
        project.memberships.append(Membership(user_id=user.id, role=Role.OWNER.value))
        session.add(project)
        session.flush()
        return project.id
# ==== end of search fixtures ====


# ==== research data (tests/test_research_data.py, test_history.py): pages carry a CSP without 'unsafe-eval' ====

_FUNCTION_SOURCE = re.compile(r"^\s*(async\s+)?(function\b|\(?[\w\s,]*\)?\s*=>)")


@pytest.fixture(scope="session", autouse=True)
def csp_safe_wait_for_function():
    """Playwright runs a plain-expression predicate of wait_for_function through eval(), which the pages'
    Content-Security-Policy forbids; the same expression as an arrow function is called without eval."""
    try:
        from playwright.sync_api import Frame, Page
    except ImportError:
        yield
        return
    originals = {cls: cls.wait_for_function for cls in (Page, Frame)}

    def wrapped(original):
        def wait_for_function(self, expression, *args, **kwargs):
            if isinstance(expression, str) and not _FUNCTION_SOURCE.match(expression):
                expression = f"() => ({expression})"
            return original(self, expression, *args, **kwargs)
        return wait_for_function

    for cls, original in originals.items():
        cls.wait_for_function = wrapped(original)
    yield
    for cls, original in originals.items():
        cls.wait_for_function = original
# ==== end of research data fixtures ====


# ==== analysis (tests/test_analysis_*.py, test_share_links.py, test_permission_matrix.py) ====
@pytest.fixture
def disks_dataset(settings, logged_in):
    """A ready 640×480 dataset of bright disks and a bar with known truth (tests/analysis_helpers.py)."""
    import tifffile

    from tests.analysis_helpers import disks_image

    path = settings.storage_dir("uploads") / "disks.tif"
    tifffile.imwrite(path, disks_image()[0], tile=(256, 256))
    return add_converted_dataset(settings, path, name="disks")


@pytest.fixture
def analysed(settings, logged_in, disks_dataset):
    """The id of a finished Otsu threshold result on `disks_dataset`, queued over the API and run in this process."""
    from tests.analysis_helpers import finished_result, queue_analysis, run_here

    response = queue_analysis(logged_in, disks_dataset)
    assert response.status_code == 202, response.get_json()
    run_here(settings, response.get_json()["job_id"])  # the real worker runs jobs in test_reproduce… and test_mailed…
    return finished_result(settings, response.get_json()["job_id"])


# ==== a live HTTP server for browser and tus tests ====
@contextlib.contextmanager
def serving(app, port: int = 0):
    """Serve `app` over HTTP on 127.0.0.1 (`port`, or a free one) from a threaded WSGI server; yields its URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def launched_chromium():
    """Debian's Chromium, headless, driven by Playwright; the suite fails (never skips) when it is missing."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def chromium():
    """A browser for one test (see launched_chromium)."""
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def live_url(app):
    """The test app served over HTTP, for browsers and protocol clients."""
    with serving(app) as url:
        yield url
