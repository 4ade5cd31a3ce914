"""tus uploads into a storage folder vs into S3 (part objects), beside the raw cost of each: a file copy, one S3 PUT.

    .venv/bin/python benchmarks/uploads.py                  # 256 MiB, 8 MiB chunks, 3 alternating rounds
    .venv/bin/python benchmarks/uploads.py --mib 64 --rounds 1

Each round uploads the same random file with the portal's own tus client (`tilescope upload`'s code, tuspy) to
a portal served in this process (werkzeug, threaded) with SQLite and an embedded Redis: once with storage in a
local folder, once with storage in a bucket of moto's S3 server on loopback (pure Python: a pessimistic stand-in
for a real object store). The upload ends when the last PATCH is answered, i.e. after the bytes are stored and
the dataset is registered (its conversion is only queued). Peers, same bytes, same machine: `shutil.copyfile`
+ fsync into the data folder, and boto3 `upload_file` of the whole file to the same S3 server.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from portal.accounts import create_user  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.cli_upload import UploadItem, log_in, upload_items  # noqa: E402
from portal.db import session_scope  # noqa: E402
from portal.embedded_redis import EmbeddedRedis  # noqa: E402
from portal.migrations import upgrade  # noqa: E402
from portal.models import Membership, Project, Role  # noqa: E402
from portal.settings import Settings  # noqa: E402
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, start_s3_server  # noqa: E402

PASSWORD = "benchmark-password"


def serve(app):
    """The app on a free loopback port from a threaded WSGI server: (url, stop)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server.shutdown


def portal(settings: Settings) -> tuple[str, int, callable]:
    """A served portal with a user and a project: (url, project id, stop)."""
    upgrade(settings.sqlalchemy_url)
    with session_scope(settings.sqlalchemy_url) as session:
        user = create_user(session, "bench@example.org", PASSWORD)
        project = Project(name="Uploads", created_by_id=user.id)
        project.memberships.append(Membership(user_id=user.id, role=Role.OWNER.value))
        session.add(project)
        session.flush()
        project_id = project.id
    url, stop = serve(create_app(settings))
    return url, project_id, stop


def tus_upload(url: str, project_id: int, source: Path, chunk: int, state: Path) -> float:
    session, csrf = log_in(url, "bench@example.org", PASSWORD, project_id)
    item = UploadItem(source, {"filename": source.name})
    state.unlink(missing_ok=True)
    started = time.perf_counter()
    [done] = upload_items(session, csrf, url, project_id, [item], state_file=state, chunk_size=chunk, progress=False)
    seconds = time.perf_counter() - started
    if not done.get("dataset_id"):
        raise SystemExit(f"the upload did not become a dataset: {done}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="file size in MiB")
    parser.add_argument("--chunk-mib", type=int, default=8, help="tus chunk (PATCH) size in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="tilescope-bench-uploads-"))
    s3, redis = start_s3_server(), EmbeddedRedis(work / "redis", persistent=False).__enter__()
    stops = []
    try:
        source = work / "upload.tif"
        with open(source, "wb") as out:  # random bytes behind a TIFF header: accepted as an upload, never converted
            out.write(b"II*\x00\x08\x00\x00\x00")
            for _ in range(options.mib):
                out.write(os.urandom(1 << 20))
        base = Settings(data_dir=work / "local", database_url=f"sqlite:///{work / 'local.db'}", redis_url=redis.url,
                        secret_key="bench", log_level="WARNING")
        bucket = s3.new_bucket()
        on_s3 = replace(base, data_dir=work / "s3", database_url=f"sqlite:///{work / 's3.db'}",
                        storage_url=f"s3://{bucket}/tilescope", s3_endpoint_url=s3.endpoint,
                        s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY, s3_region=REGION)
        targets = {}
        for name, settings in (("tus → folder", base), ("tus → S3 parts", on_s3)):
            url, project_id, stop = portal(settings)
            stops.append(stop)
            targets[name] = (url, project_id)

        import boto3

        client = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, region_name=REGION)
        times: dict[str, list[float]] = {name: [] for name in (*targets, "copy to folder (peer)", "S3 PUT (peer)")}
        for round_number in range(options.rounds):
            order = list(targets.items())
            if round_number % 2:
                order.reverse()
            for name, (url, project_id) in order:
                times[name].append(tus_upload(url, project_id, source, options.chunk_mib << 20, work / "state.json"))
            started = time.perf_counter()
            copy = shutil.copyfile(source, work / f"copy-{round_number}")
            with open(copy, "rb+") as written:  # durable, as the tus path makes every chunk (fsync)
                os.fsync(written.fileno())
            times["copy to folder (peer)"].append(time.perf_counter() - started)
            started = time.perf_counter()
            client.upload_file(str(source), bucket, f"peer/{round_number}")
            times["S3 PUT (peer)"].append(time.perf_counter() - started)
            print(f"round {round_number + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)

        print(f"\n{options.mib} MiB, {options.chunk_mib} MiB chunks, {options.rounds} rounds, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n")
        print("| path | median s | MiB/s | vs its peer |\n|---|---:|---:|---:|")
        peers = {"tus → folder": "copy to folder (peer)", "tus → S3 parts": "S3 PUT (peer)"}
        for name, values in times.items():
            median = statistics.median(values)
            ratio = f"{median / statistics.median(times[peers[name]]):.2f}×" if name in peers else ""
            print(f"| {name} | {median:.2f} | {options.mib / median:.0f} | {ratio} |")
    finally:
        for stop in stops:
            stop()
        redis.__exit__(None, None, None)
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
