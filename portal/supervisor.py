"""`tilescope up`: embedded Redis if needed, the web server and one worker, their logs interleaved; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from portal.db import session_scope
from portal.embedded_redis import EmbeddedRedis
from portal.job_recovery import fail_interrupted_jobs
from portal.processes import detach_but_die_with_parent
from portal.settings import Settings

STOP_GRACE_SECONDS = 10.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    reader: threading.Thread = field(init=False)

    def __post_init__(self):
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        for line in iter(self.process.stdout.readline, b""):
            sys.stdout.write(f"[{self.name:6}] {line.decode(errors='replace')}")
            sys.stdout.flush()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM; a second SIGTERM after `grace` (an RQ worker then stops its running job); SIGKILL last."""
        for attempt, signum in enumerate((signal.SIGTERM, signal.SIGTERM, signal.SIGKILL)):
            if self.process.poll() is not None:
                break
            if attempt:
                print(f"[{self.name:6}] still running after {grace:.0f} s; sending {signal.Signals(signum).name}", flush=True)
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        self.reader.join(timeout=2)


def spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, preexec_fn=detach_but_die_with_parent)
    return Child(name, process)


def run_everything(settings: Settings) -> int:
    """Run until Ctrl-C (or SIGTERM), or until a child dies; return an exit code."""
    env = dict(os.environ, TILESCOPE_DATA_DIR=str(settings.data_path), PYTHONUNBUFFERED="1")
    redis = None
    if not settings.redis_url:
        redis = EmbeddedRedis(settings.data_path)
        redis.start()
        env["TILESCOPE_REDIS_URL"] = redis.url
        print(f"[redis ] embedded redis-server on {redis.url} (data in {redis.dir})", flush=True)
    web_args = [sys.executable, "-m", "gunicorn", "--bind", f"{settings.host}:{settings.port}",
                "--workers", str(settings.web_workers), "--threads", "8", "--timeout", "3600", "--no-control-socket",
                "--access-logfile", "-", "--access-logformat", '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
                "portal.app:create_app()"]
    worker_args = [sys.executable, "-m", "portal.cli", "worker"]
    children = [spawn("web", web_args, env), spawn("worker", worker_args, env)]

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    exit_code = 0
    try:
        while not stopping.is_set():
            dead = [c for c in children if c.process.poll() is not None]
            if dead:
                print(f"[{dead[0].name:6}] exited with code {dead[0].process.returncode}; stopping everything", flush=True)
                exit_code = 1
                break
            stopping.wait(0.5)
    finally:
        print("stopping web, worker and redis …", flush=True)
        for child in children:
            child.stop()
        with session_scope(settings.sqlalchemy_url) as session:
            for job_id in fail_interrupted_jobs(session):
                print(f"job {job_id} was interrupted and is marked failed", flush=True)
        if redis is not None:
            redis.stop()
        print("all stopped.", flush=True)
    return exit_code


def wait_for_http(url: str, timeout: float = 30.0) -> bool:
    """Poll a URL until it answers (used to print the login hint once the web server is up)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False
