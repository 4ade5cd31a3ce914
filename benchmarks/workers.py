"""Conversion throughput through the portal job path: 1 worker vs more, sharing Redis, database and storage."""

# .venv/bin/python benchmarks/workers.py                          # 8 × 4096² uint8, 1 vs 2 workers
# .venv/bin/python benchmarks/workers.py --images 4 --size 2048   # quick
# .venv/bin/python benchmarks/workers.py --workers 1 2 3 --repeat 3  # medians of 3 interleaved runs
# .venv/bin/python benchmarks/workers.py --preload                # import workers.convert before RQ forks
#
# Every run gets a fresh data folder, a fresh SQLite database (migrated), and a redis-server of its own on a
# free port. The `tilescope worker --queue convert` processes are started and registered first; the clock then
# runs from registering the first dataset (sniff, publish original, queue its conversion — what an upload does
# after its bytes arrived) until every conversion job has ended. Inputs are generated once into --workdir.

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from redis import Redis
from rq import Queue, Worker
from sqlalchemy import select

from portal.accounts import create_user
from portal.datasets import register_file
from portal.db import dispose_engines, session_scope
from portal.embedded_redis import EmbeddedRedis
from portal.jobs import CONVERT_QUEUE
from portal.migrations import upgrade
from portal.models import Job, Membership, Project, Role, User
from portal.settings import Settings
from portal.storage import Storage
from tiler.synthetic import write_synthetic_tiff

RUN_TIMEOUT_SECONDS = 1800


def main() -> None:
    options = parse_args()
    workdir = Path(options.workdir)
    inputs = make_inputs(workdir / "inputs", options.images, options.size)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{options.images} × {options.size}² uint8 synthetic TIFFs (zlib, 256 px tiles) → OME-Zarr via convert jobs")
    walls: dict[int, list[float]] = {count: [] for count in options.workers}
    for attempt in range(options.repeat):
        for count in options.workers:  # interleaved, so a busy minute hurts every worker count alike
            result = run(workdir / f"run_{count}", inputs, count, options.preload)
            walls[count].append(result["wall"])
            print(f"run {attempt + 1}: {count} worker{'s' if count > 1 else ' '}: wall {result['wall']:6.1f} s  "
                  f"{result['per_minute']:6.1f} jobs/min  job wall sum {result['job_wall']:6.1f} s  "
                  f"job CPU sum {result['job_cpu']:6.1f} s  load after {result['load']:.2f}")
            if not options.keep:
                shutil.rmtree(workdir / f"run_{count}", ignore_errors=True)
    base = statistics.median(walls[options.workers[0]])
    for count in options.workers:
        wall = statistics.median(walls[count])
        print(f"median of {options.repeat}: {count} worker{'s' if count > 1 else ' '}: wall {wall:6.1f} s  "
              f"{len(inputs) * 60 / wall:6.1f} jobs/min  speed-up vs {options.workers[0]}: {base / wall:.2f}×")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=4096, help="side of each square image in pixels")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "tilescope-bench-workers"))
    parser.add_argument("--repeat", type=int, default=1, help="runs per worker count; medians are reported")
    parser.add_argument("--keep", action="store_true", help="keep each run's data folder")
    parser.add_argument("--preload", action="store_true",
                        help="start workers that import workers.convert once, so no work-horse imports it after fork")
    return parser.parse_args()


def make_inputs(folder: Path, images: int, size: int) -> list[Path]:
    """Distinct synthetic images (one seed each, so no original is deduplicated), generated once."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(images):
        path = folder / f"synthetic_{size}_{index}.tif"
        if not path.exists():
            write_synthetic_tiff(path, (size, size), "uint8", tile=256, seed=index)
        paths.append(path)
    return paths


def run(data_dir: Path, inputs: list[Path], worker_count: int, preload: bool = False) -> dict:
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    with EmbeddedRedis(data_dir, persistent=False) as redis_server:
        settings = Settings(data_dir=data_dir, redis_url=redis_server.url, secret_key="bench", log_level="WARNING")
        upgrade(settings.sqlalchemy_url)
        storage = Storage(settings)
        uploads = [stage_upload(storage, source) for source in inputs]
        workers = [subprocess.Popen(worker_command(preload), env=worker_env(settings), cwd=REPO,
                                    stdout=subprocess.DEVNULL) for _ in range(worker_count)]
        try:
            wait_for_workers(settings, worker_count)
            started = time.monotonic()
            with session_scope(settings.sqlalchemy_url) as session:
                user = create_user(session, "bench@example.org", "bench password long enough")
                project = Project(name="bench", created_by_id=user.id)
                project.memberships.append(Membership(user_id=user.id, role=Role.OWNER.value))
                session.add(project)
                session.commit()
                for path, sha256, size in uploads:
                    register_file(session, settings, storage, project, session.get(User, user.id), path, sha256,
                                  size, path.name)
            jobs = wait_for_jobs(settings, started)
            wall = time.monotonic() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            dispose_engines()
    failed = [job for job in jobs if job.status != "finished"]
    if failed:
        raise SystemExit(f"{len(failed)} conversions did not finish: {[(j.id, j.status, j.error) for j in failed]}")
    return {"wall": wall, "per_minute": len(jobs) * 60 / wall, "job_wall": sum(j.wall_seconds or 0 for j in jobs),
            "job_cpu": sum(j.cpu_seconds or 0 for j in jobs), "load": os.getloadavg()[0]}


def stage_upload(storage: Storage, source: Path) -> tuple[Path, str, int]:
    """Copy an input into uploads/ as a finished upload would lie there: (path, sha256, size)."""
    target = storage.area("uploads") / source.name
    shutil.copyfile(source, target)
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return target, digest.hexdigest(), target.stat().st_size


def worker_command(preload: bool) -> list[str]:
    """`tilescope worker --queue convert`, optionally after importing the convert job's modules in the parent."""
    if not preload:
        return [sys.executable, "-m", "portal.cli", "worker", "--queue", CONVERT_QUEUE]
    code = ("import workers.convert; from portal.cli import main; "
            f"main(['worker', '--queue', {CONVERT_QUEUE!r}], prog_name='tilescope')")
    return [sys.executable, "-c", code]


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILESCOPE_")}
    env.update(TILESCOPE_DATA_DIR=str(settings.data_dir), TILESCOPE_REDIS_URL=settings.redis_url,
               TILESCOPE_SECRET_KEY=settings.secret_key, TILESCOPE_LOG_LEVEL="WARNING",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])))
    return env


def wait_for_workers(settings: Settings, count: int, timeout: float = 60) -> None:
    connection = Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + timeout
    while Worker.count(connection=connection, queue=Queue(CONVERT_QUEUE, connection=connection)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} workers did not register within {timeout} s")
        time.sleep(0.1)


def wait_for_jobs(settings: Settings, started: float) -> list[Job]:
    while True:
        with session_scope(settings.sqlalchemy_url) as session:
            jobs = session.scalars(select(Job).where(Job.kind == "convert")).all()
            session.expunge_all()
        if jobs and all(job.is_final for job in jobs):
            return jobs
        if time.monotonic() - started > RUN_TIMEOUT_SECONDS:
            raise SystemExit(f"the conversions did not end within {RUN_TIMEOUT_SECONDS} s")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
