"""Servers and HTTP load for the tile benchmark: `tilescope up`, a temporary nginx, wrk (or a Python fallback).

Everything listens on 127.0.0.1 only, on free ports; every process started here is stopped by its id.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tiles_common import TILE, evict_from_page_cache, free_port, percentile

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- tilescope up


class Portal:
    """`tilescope up` on a fresh data folder; logs in as the first admin and uploads a dataset."""

    def __init__(self, data_dir: Path, web_workers: int = 2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILESCOPE_")}
        env.update(TILESCOPE_DATA_DIR=str(data_dir), TILESCOPE_PORT=str(self.port),
                   TILESCOPE_WEB_WORKERS=str(web_workers), PYTHONUNBUFFERED="1")
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, "-m", "portal.cli", "up"], env=env, cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, preexec_fn=_default_sigint)
        threading.Thread(target=self._read, daemon=True).start()
        self.session = requests.Session()
        self.password = self._wait_for(r"password: (\S+)").group(1)
        self._wait_for(r"Tilescope is running at")

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def _wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, "".join(self.lines))
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"no {pattern!r} from `tilescope up`:\n{''.join(self.lines)[-3000:]}")

    def _csrf(self, path: str = "/") -> str:
        page = self.session.get(self.url + path, timeout=30).text
        return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def login(self) -> None:
        token = self._csrf("/login")
        response = self.session.post(f"{self.url}/login", data={"email": "admin@localhost", "password": self.password,
                                                               "csrf_token": token}, timeout=30)
        response.raise_for_status()
        if "/login" in response.url:
            raise RuntimeError("login to the portal failed")

    def upload(self, path: Path, timeout: float = 600) -> dict:
        """Create a project, upload ``path``, wait for its pyramid; return the dataset's /info JSON."""
        headers = {"X-CSRFToken": self._csrf()}
        project = self.session.post(f"{self.url}/api/v1/projects", json={"name": "tile benchmark"},
                                    headers=headers, timeout=30)
        project.raise_for_status()
        with path.open("rb") as file:
            upload = self.session.post(f"{self.url}/api/v1/projects/{project.json()['id']}/datasets",
                                       files={"file": (path.name, file, "image/tiff")}, headers=headers, timeout=600)
        upload.raise_for_status()
        dataset_id = upload.json()["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.session.get(f"{self.url}/api/v1/datasets/{dataset_id}", timeout=30).json()
            if status["status"] == "ready":
                break
            if status["status"] == "failed":
                raise RuntimeError(f"conversion failed: {status.get('status_reason')}")
            time.sleep(0.5)
        else:
            raise RuntimeError(f"dataset {dataset_id} not ready after {timeout:.0f} s")
        info = self.session.get(f"{self.url}/api/v1/datasets/{dataset_id}/info", timeout=30).json()
        return info

    def tile_path(self, info: dict, level: int, row: int, col: int) -> str:
        """The viewer's URL of a tile (as viewer.js builds it: version and token in the query)."""
        return f"/api/v1/datasets/{info['id']}/tiles/{level}/{row}/{col}.jpg?v={info['version']}&t={info['token']}"

    def pyramid_dirs(self) -> list[Path]:
        return sorted({p.parent for p in self.data_dir.rglob("zarr.json") if (p.parent / "thumbnail.png").exists()})

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process.stdout.close()


def _default_sigint() -> None:
    """In the child: a shell's background job ignores SIGINT, and `tilescope up` stops on SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ---------------------------------------------------------------- nginx

NGINX_CONF = """\
{user}worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  types {{ text/html html; text/css css; application/javascript js mjs; image/jpeg jpg jpeg; image/png png;
           image/svg+xml svg; application/xml xml dzi; application/json json map; }}
  default_type application/octet-stream;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy_temp;
  fastcgi_temp_path {tmp}/fastcgi_temp;
  uwsgi_temp_path {tmp}/uwsgi_temp;
  scgi_temp_path {tmp}/scgi_temp;

  # 1. Static tiles (libvips dzsave) and the plain OpenSeadragon page, from disk.
  server {{
    listen 127.0.0.1:{static_port};
    root {static_root};
  }}

  # 2. A caching proxy in front of Tilescope (see docs/benchmarks_tiles.md).
  upstream tilescope {{ server 127.0.0.1:{app_port}; keepalive 64; }}
  proxy_cache_path {tmp}/cache_tiles levels=1:2 keys_zone=tiles:64m max_size=4g inactive=7d use_temp_path=off;
  proxy_cache_path {tmp}/cache_auth levels=1:2 keys_zone=tile_auth:8m max_size=64m inactive=5m use_temp_path=off;

  server {{
    listen 127.0.0.1:{proxy_port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;

{tile_locations}
    location / {{ proxy_pass http://tilescope; }}
  }}

  # 3. The same proxy, cache shared by all viewers (key without the token, access checked by a cached sub-request).
  map $args $tile_args_without_token {{
    "~^(?<tile_before>.*?)(^|&)t=[^&]*(?<tile_after>.*)$" "$tile_before$tile_after";
    default $args;
  }}
  server {{
    listen 127.0.0.1:{shared_port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;

{shared_locations}
    location / {{ proxy_pass http://tilescope; }}
  }}
}}
"""

#: Per-token cache: key = the whole URI, token included, so a hit needs the very same signed token.
TOKEN_KEYED = """\
    location ~ ^/api/v1/datasets/[^/]+/tiles/ {
      proxy_pass http://tilescope;
      proxy_cache tiles;
      proxy_cache_key $scheme$http_host$request_uri;
      proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
      proxy_cache_valid 200 7d;
      proxy_cache_revalidate on;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status always;
    }
"""

#: Shared cache: key = the URI without its token t= (dataset, level, row, col, the pyramid version v,
#: plane, slice and display settings); every
#: request's token (or session) is checked by a sub-request to Tilescope whose answer is cached a minute.
SHARED = """\
    location ~ ^/api/v1/datasets/(?<tile_dataset>[^/]+)/tiles/ {
      set $tile_token $arg_t;
      set $tile_cookie $http_cookie;
      auth_request /_tile_access;
      proxy_pass http://tilescope;
      proxy_cache tiles;
      proxy_cache_key $uri?$tile_args_without_token;
      proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
      proxy_hide_header Set-Cookie;
      proxy_cache_valid 200 7d;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status always;
    }
    location = /_tile_access {
      internal;
      proxy_pass http://tilescope/api/v1/datasets/$tile_dataset/thumbnail.png?t=$tile_token;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Cookie $tile_cookie;
      proxy_cache tile_auth;
      proxy_cache_key $tile_dataset|$tile_token|$tile_cookie;
      proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
      proxy_cache_valid 200 60s;
      proxy_cache_valid any 0;
    }
"""


class Nginx:
    """A temporary nginx (its own config, pid and cache folders under ``tmp``), stopped by its pid."""

    def __init__(self, tmp: Path, static_root: Path, app_port: int, workers: int = 2):
        self.tmp = tmp
        self.static_port, self.proxy_port, self.shared_port = free_port(), free_port(), free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        conf = NGINX_CONF.format(
            user="user root;\n" if os.geteuid() == 0 else "", workers=workers, tmp=tmp, static_root=static_root,
            static_port=self.static_port, proxy_port=self.proxy_port, shared_port=self.shared_port,
            app_port=app_port, tile_locations=TOKEN_KEYED, shared_locations=SHARED)
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(conf)
        check = subprocess.run(["nginx", "-t", "-q", "-e", str(tmp / "error.log"), "-p", str(tmp), "-c", str(self.conf)],
                               capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"nginx rejects {self.conf}:\n{check.stderr}")
        self.process = subprocess.Popen(["nginx", "-e", str(tmp / "error.log"), "-p", str(tmp), "-c", str(self.conf),
                                         "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{self.static_port}/", timeout=1)
                return
            except requests.ConnectionError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"nginx did not start: {self.process.stderr.read() if self.process.stderr else ''}")

    def url(self, which: str = "static") -> str:
        return f"http://127.0.0.1:{getattr(self, which + '_port')}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------- load


WRK_SCRIPT = """\
-- Random level-0 tiles: %s is replaced by the row and the column (in that order or swapped).
local rows, cols = {rows}, {cols}
local pattern, col_first = "{pattern}", {col_first}
local counter = 0
function setup(thread) counter = counter + 1; thread:set("seed", {seed} + counter) end
function init(args) math.randomseed(seed) end
function request()
  local r, c = math.random(0, rows - 1), math.random(0, cols - 1)
  if col_first then r, c = c, r end
  return wrk.format("GET", string.format(pattern, r, c))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def load_test(base: str, pattern: str, rows: int, cols: int, col_first: bool, workdir: Path,
              connections: int = 32, seconds: int = 10, threads: int = 1, seed: int = 1) -> dict:
    """Random-tile load on ``base`` + ``pattern`` (two %d: row, col -- or col, row with col_first)."""
    if wrk_available():
        return _wrk(base, pattern, rows, cols, col_first, workdir, connections, seconds, threads, seed)
    return _python_load(base, pattern, rows, cols, col_first, connections, seconds, seed)


def _wrk(base, pattern, rows, cols, col_first, workdir, connections, seconds, threads, seed) -> dict:
    script = workdir / f"wrk_{abs(hash((base, pattern))) % 10**8}.lua"
    script.write_text(WRK_SCRIPT.format(rows=rows, cols=cols, pattern=pattern.replace("%d", "%s"),
                                        col_first="true" if col_first else "false", seed=seed))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
               "-s", str(script), base]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:(.*)", out)
    total = re.search(r"(\d+) requests in", out)
    return {"tool": "wrk", "tiles_per_s": rate, "p50_ms": _ms(latency["50"]), "p99_ms": _ms(latency["99"]),
            "requests": int(total.group(1)) if total else None, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1).strip() if socket_errors else "", "raw": out}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def _python_load(base, pattern, rows, cols, col_first, connections, seconds, seed) -> dict:
    """Fallback without wrk: ``connections`` threads, one keep-alive connection each, for ``seconds``."""
    import random

    host, port = base.removeprefix("http://").split(":")
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        mine, bad = [], 0
        while time.monotonic() < deadline and len(mine) < 1_000_000:
            r, c = rng.randrange(rows), rng.randrange(cols)
            path = pattern % ((c, r) if col_first else (r, c))
            started = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                bad += response.status != 200
            except (OSError, http.client.HTTPException):
                bad += 1
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=10)
            mine.append(time.perf_counter() - started)
        connection.close()
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    started = time.monotonic()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(worker, range(connections)))
    elapsed = time.monotonic() - started
    return {"tool": "python threads (wrk not installed)", "tiles_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.5) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3,
            "requests": len(latencies), "non_2xx": failures[0], "socket_errors": ""}


def sequential_get(base: str, paths: list[str]) -> dict:
    """One keep-alive connection, each path once, in order: latency p50/p95 (the 'cold p50' measurement)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    times, bad, size = [], 0, 0
    for path in paths:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        times.append(time.perf_counter() - started)
        bad += response.status != 200
        size += len(body)
    connection.close()
    return {"p50_ms": percentile(times, 0.5) * 1e3, "p95_ms": percentile(times, 0.95) * 1e3, "n": len(paths),
            "non_200": bad, "bytes_per_tile": size / max(1, len(paths))}


def prime(base: str, paths: list[str], workers: int = 4) -> dict:
    """GET every path once (filling a proxy cache); return the counts of each X-Cache-Status."""
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    chunks = [paths[i::workers] for i in range(workers)]

    def run(chunk: list[str]) -> None:
        session = requests.Session()
        for path in chunk:
            response = session.get(base + path, timeout=60)
            key = f"{response.status_code} {response.headers.get('X-Cache-Status', '-')}"
            with lock:
                statuses[key] = statuses.get(key, 0) + 1

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, chunks))
    return statuses


def evict_tiles(static_root: Path, dz_level: int, tiles: list[tuple[int, int]]) -> None:
    for row, col in tiles:
        evict_from_page_cache(static_root / "dz_files" / str(dz_level) / f"{col}_{row}.jpg")


__all__ = ["Nginx", "Portal", "TILE", "load_test", "prime", "sequential_get", "wrk_available"]
