"""Shared pieces of the analysis tests: a synthetic image with known objects, queueing over the API, a real worker."""

from __future__ import annotations

import subprocess
import sys

import numpy

from portal.db import session_scope
from portal.models import Job
from tests.conftest import csrf_token, worker_env

#: Disks (row, col, radius) of the synthetic image; the last one crosses the 256-px tile/chunk edge at x=256.
DISKS = [(60, 60, 15), (60, 160, 12), (160, 90, 20), (300, 400, 18), (400, 120, 10), (420, 520, 14),
         (200, 256, 22)]
RECTANGLE = (100, 130, 330, 600)  # rows 100..130, columns 330..600: the largest object


def disks_image() -> tuple[numpy.ndarray, numpy.ndarray]:
    """(image, truth labels): bright disks and a bar on a dark noisy background."""
    rows, cols = numpy.mgrid[0:480, 0:640]
    truth = numpy.zeros((480, 640), numpy.int32)
    for label, (r, c, radius) in enumerate(DISKS, start=1):
        truth[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = label
    r0, r1, c0, c1 = RECTANGLE
    truth[r0:r1, c0:c1] = len(DISKS) + 1
    noise = numpy.random.default_rng(7).integers(0, 20, truth.shape)
    image = numpy.where(truth > 0, 200, 30) + noise
    return image.astype(numpy.uint8), truth


def run_jobs(settings, **extra_env) -> subprocess.CompletedProcess:
    env = dict(worker_env(settings), TILESCOPE_ANALYSIS_PROCESSES="1", **extra_env)
    done = subprocess.run([sys.executable, "-m", "portal.cli", "worker", "--burst"], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def run_here(settings, job_id: str) -> str:
    """Run one queued analysis job in this process (the job function a worker would run), one block process."""
    from dataclasses import replace

    from workers.analyze import analyze_dataset

    return analyze_dataset(job_id, replace(settings, analysis_processes=1))


def queue_analysis(client, dataset_id, method="threshold", params=None, recipients=None):
    body = {"method": method, "params": params if params is not None else {"algorithm": "otsu"}}
    if recipients is not None:
        body["recipients"] = recipients
    return client.post(f"/api/v1/datasets/{dataset_id}/analyses", json=body,
                       headers={"X-CSRFToken": csrf_token(client, "/")})


def finished_result(settings, job_id) -> str:
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        assert job.status == "finished", (job.status, job.error, job.traceback)
        return job.result.id
