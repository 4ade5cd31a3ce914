"""Web replicas are stateless: two real gunicorn hosts on one database, one Redis and one data folder behave as one.

Every step alternates hosts A and B: a login on A is a login on B, a CSRF token of A is good on B, a project
made on B is listed by A, a tus upload is begun on A, continued on B and finished on A, a real worker
converts and analyses, tiles are the same bytes from both, viewer tokens and share links travel, logging
out and in works across hosts, and B keeps serving A's sessions when A is killed outright.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from portal.embedded_redis import free_port
from tests.analysis_helpers import disks_image
from tests.conftest import PASSWORD, REPO, settings_env, wait_until

GUNICORN = REPO / ".venv" / "bin" / "gunicorn"
TUS = {"Tus-Resumable": "1.0.0"}
START_TIMEOUT_SECONDS = 30


class Replica:
    """One `gunicorn wsgi:app` host (1 worker process) in its own process group, so that it can die as a whole."""

    def __init__(self, name: str, settings, log_dir: Path):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (log_dir / f"gunicorn-{name}.log").open("w+")
        args = [str(GUNICORN), "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4",
                "--timeout", "120", "--graceful-timeout", "5", "--no-control-socket", "--chdir", str(REPO), "wsgi:app"]
        self.process = subprocess.Popen(args, env=settings_env(settings), cwd=REPO, stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def wait_ready(self) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn {self.name} exited with {self.process.returncode}:\n{self.output()}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200
            except requests.RequestException:  # not bound yet, or bound while the worker still imports
                return False
        wait_until(answers, timeout=START_TIMEOUT_SECONDS, what=f"gunicorn {self.name} answering /healthz")

    def kill(self, signum=signal.SIGKILL) -> None:
        """The host is gone: its master and its worker process die at once (SIGKILL cannot be handled)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill(signal.SIGTERM)
        self.log.close()


@pytest.fixture
def hosts(settings, tmp_path):
    """Settings shared by hosts A and B (and the worker), and the two running hosts."""
    if not GUNICORN.exists() and not shutil.which("gunicorn"):
        pytest.skip("gunicorn is not installed in .venv (it is a dependency: pip install -e .)")
    shared = replace(settings, analysis_processes=1)
    shared.data_path.mkdir(parents=True, exist_ok=True)
    a, b = Replica("A", shared, tmp_path), Replica("B", shared, tmp_path)
    try:
        a.wait_ready()
        b.wait_ready()
        yield shared, a, b
    finally:
        for host in (a, b):
            print(f"---- gunicorn {host.name} ----\n{host.output()}")  # shown by pytest when the test fails
            host.stop()


# ---- small HTTP helpers -------------------------------------------------------------------

def page_csrf(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, (url, page.status_code)
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def log_in(session: requests.Session, host: Replica, email: str = "ana@example.org") -> requests.Response:
    """Through the real form: GET /login for its CSRF token (kept in the session cookie), then POST it."""
    form = session.get(f"{host.url}/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = session.post(f"{host.url}/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302, (response.status_code, response.text[:500])
    return response


def with_cookie(value: str) -> requests.Session:
    """A new browser holding nothing but this session cookie."""
    browser = requests.Session()
    browser.cookies.set("session", value, domain="127.0.0.1", path="/")
    return browser


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def tiff_bytes() -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, disks_image()[0], tile=(256, 256))
    return buffer.getvalue()


def alternate(*hosts: Replica):
    """A, B, A, B, … for polling loops: every poll goes to the other host."""
    while True:
        yield from hosts


# ---- the test -----------------------------------------------------------------------------

def test_two_gunicorn_hosts_behave_as_one(hosts, make_user, start_worker):
    settings, a, b = hosts
    make_user("ana@example.org")

    # a login on A is a login on B: the same cookie, and nothing else, opens B
    user = requests.Session()
    log_in(user, a)
    cookie = user.cookies["session"]
    assert with_cookie(cookie).get(f"{b.url}/api/v1/projects", timeout=10).status_code == 200
    assert requests.get(f"{b.url}/api/v1/projects", timeout=10).status_code == 401  # and without it: nobody

    # a CSRF token issued by A is accepted by B (and B does check one)
    token = page_csrf(user, f"{a.url}/")
    assert user.post(f"{b.url}/api/v1/projects", json={"name": "no token"}, timeout=10).status_code == 400
    created = user.post(f"{b.url}/api/v1/projects", json={"name": "Replicated"}, headers={"X-CSRFToken": token},
                        timeout=10)
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    listed = user.get(f"{a.url}/api/v1/projects", timeout=10).json()["projects"]  # made on B, seen on A
    assert [p["name"] for p in listed if p["id"] == project_id] == ["Replicated"]
    assert user.get(f"{a.url}/projects/{project_id}", timeout=10).status_code == 200

    # a tus upload created on A, half PATCHed on B, finished on A becomes a dataset
    data = tiff_bytes()
    half = len(data) // 2
    headers = TUS | {"X-CSRFToken": token}
    begun = user.post(f"{a.url}/api/v1/projects/{project_id}/uploads", timeout=10, headers=headers | {
        "Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="disks.tif")})
    assert begun.status_code == 201, begun.text
    upload_path = urlsplit(begun.headers["Location"]).path
    octets = {"Content-Type": "application/offset+octet-stream"}
    first = user.patch(f"{b.url}{upload_path}", data=data[:half], timeout=10,
                       headers=headers | octets | {"Upload-Offset": "0"})
    assert first.status_code == 204 and first.headers["Upload-Offset"] == str(half), first.text
    assert user.head(f"{a.url}{upload_path}", headers=TUS, timeout=10).headers["Upload-Offset"] == str(half)
    # B's offset is A's offset. (On a connection of its own: a refused PATCH leaves its body unread, and gunicorn
    # then closes a keep-alive connection whose unread body exceeds 64 KiB, which a reused connection would hit.)
    stale = requests.patch(f"{a.url}{upload_path}", data=data[half:], cookies=user.cookies, timeout=10,
                           headers=headers | octets | {"Upload-Offset": "0"})
    assert stale.status_code == 409 and "offset" in stale.json()["error"], stale.text
    last = user.patch(f"{a.url}{upload_path}", data=data[half:], timeout=30,
                      headers=headers | octets | {"Upload-Offset": str(half)})
    assert last.status_code == 204 and last.headers["Upload-Offset"] == str(len(data)), last.text
    assert "Tilescope-Upload-Error" not in last.headers, last.headers["Tilescope-Upload-Error"]
    dataset_id = last.headers["Tilescope-Dataset-Id"]
    assert user.get(f"{b.url}{upload_path}", timeout=10).json()["dataset_id"] == dataset_id

    # a real worker converts it; both hosts see it become ready
    start_worker(settings)
    polls = alternate(b, a)
    wait_until(lambda: user.get(f"{next(polls).url}/api/v1/datasets/{dataset_id}", timeout=10).json()["status"]
               in ("ready", "failed"), timeout=60, interval=0.2, what="the conversion")
    converted = user.get(f"{a.url}/api/v1/datasets/{dataset_id}", timeout=10).json()
    assert converted["status"] == "ready", converted

    # tiles: the same bytes and the same validator from both hosts
    tile_path = f"/api/v1/datasets/{dataset_id}/tiles/0/0/0.png"
    tile_a, tile_b = (user.get(f"{host.url}{tile_path}", timeout=10) for host in (a, b))
    assert tile_a.status_code == tile_b.status_code == 200
    assert tile_a.content == tile_b.content and tile_a.content.startswith(b"\x89PNG")
    assert tile_a.headers["ETag"] == tile_b.headers["ETag"]
    assert user.get(f"{b.url}{tile_path}", headers={"If-None-Match": tile_a.headers["ETag"]},
                    timeout=10).status_code == 304
    iiif = f"/iiif/3/{dataset_id}/0,0,256,256/128,/0/default.jpg"
    assert user.get(f"{a.url}{iiif}", timeout=10).content == user.get(f"{b.url}{iiif}", timeout=10).content

    # a viewer token issued by A serves tiles from B to a browser without any session (and a forged one does not)
    view_token = user.get(f"{a.url}/api/v1/datasets/{dataset_id}/info", timeout=10).json()["token"]
    anonymous_tile = requests.get(f"{b.url}{tile_path}", params={"t": view_token}, timeout=10)
    assert anonymous_tile.status_code == 200 and anonymous_tile.content == tile_a.content
    assert requests.get(f"{b.url}{tile_path}", params={"t": view_token[:-2] + "xx"}, timeout=10).status_code == 403

    # an analysis queued on B, run by the worker, followed on A; its share link made on A opens on B
    queued = user.post(f"{b.url}/api/v1/datasets/{dataset_id}/analyses", headers={"X-CSRFToken": token}, timeout=10,
                       json={"method": "threshold", "params": {"algorithm": "otsu"}})
    assert queued.status_code == 202, queued.text
    job_path = queued.json()["status_url"]
    job = wait_until(lambda: (j := user.get(f"{next(polls).url}{job_path}", timeout=10).json())["status"]
                     in ("finished", "failed", "cancelled") and j, timeout=60, interval=0.2, what="the analysis")
    assert job["status"] == "finished", job
    result_id = job["result_url"].rsplit("/", 1)[1]
    shared = user.post(f"{a.url}/api/v1/results/{result_id}/shares", json={"label": "for review"}, timeout=10,
                       headers={"X-CSRFToken": token})
    assert shared.status_code == 201, shared.text
    stranger = requests.Session()
    opened = stranger.get(f"{b.url}{urlsplit(shared.json()['url']).path}", allow_redirects=False, timeout=10)
    assert opened.status_code == 302 and opened.headers["Location"].endswith(f"/results/{result_id}")
    seen = stranger.get(f"{a.url}/api/v1/results/{result_id}", timeout=10)  # the link held in the cookie, on A
    assert seen.status_code == 200 and seen.json()["via_share"] is True
    labels = seen.json()["labels"]["tiles_url"]
    assert stranger.get(f"{b.url}{labels}/0/0/0.png", timeout=10).status_code == 200
    assert stranger.get(f"{a.url}/api/v1/projects", timeout=10).status_code == 401
    uses = user.get(f"{b.url}/api/v1/results/{result_id}/shares", timeout=10).json()["shares"]
    assert [s["uses"] for s in uses if s["id"] == shared.json()["id"]] == [1]  # the use B counted, A reports

    # logout on A: this browser is logged out on B too; a fresh login on B works
    logged_out = user.post(f"{a.url}/logout", headers={"X-CSRFToken": token}, allow_redirects=False, timeout=10)
    assert logged_out.status_code == 302 and urlsplit(logged_out.headers["Location"]).path == "/login"
    assert user.get(f"{b.url}/api/v1/projects", timeout=10).status_code == 401
    assert user.get(f"{a.url}/api/v1/projects", timeout=10).status_code == 401
    # A copy of the cookie from before the logout: the login session ended in the shared database, so both hosts
    # refuse it (portal/login_sessions.py), not just the browser that logged out.
    replayed = [with_cookie(cookie).get(f"{host.url}/api/v1/projects", timeout=10).status_code for host in (a, b)]
    assert replayed == [401, 401], f"the pre-logout cookie still works somewhere: {replayed}"
    log_in(user, b)
    assert [p["id"] for p in user.get(f"{a.url}/api/v1/projects", timeout=10).json()["projects"]] == [project_id]

    # host A dies outright (SIGKILL, master and worker): B goes on serving the session A issued
    survivor = requests.Session()
    log_in(survivor, a)
    survivor_token = page_csrf(survivor, f"{a.url}/")
    a.kill()
    with pytest.raises(requests.ConnectionError):
        survivor.get(f"{a.url}/healthz", timeout=5)
    assert survivor.get(f"{b.url}/api/v1/projects", timeout=10).status_code == 200
    assert survivor.get(f"{b.url}{tile_path}", timeout=10).content == tile_a.content
    after = survivor.post(f"{b.url}/api/v1/projects", json={"name": "After A died"}, timeout=10,
                          headers={"X-CSRFToken": survivor_token})
    assert after.status_code == 201, after.text
    assert requests.get(f"{b.url}/readyz", timeout=10).json()["status"] == "ready"
    assert b.process.poll() is None
