"""The convert job: original image → OME-Zarr pyramid published atomically → dataset ready (or failed, with a reason)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from portal.db import session_scope
from portal.jobs import queue_notification  # noqa: F401  (moved to portal.jobs; kept importable from here)
from portal.models import Dataset, DatasetStatus, Job, JobStatus
from portal.settings import Settings
from portal.storage import Storage
from tiler.errors import TilerError
from tiler.convert import build_pyramid
from tiler.pyramid import PyramidSummary
from tiler.readers import open_image
from tiler.storage import Location
from workers.progress import JobCancelled, JobRecorder

log = logging.getLogger(__name__)


def convert_dataset(job_id: str, settings: Settings | None = None) -> str:
    """Convert the dataset of job `job_id`; returns the final dataset status. Errors end in the database, not in Redis."""
    settings = settings or Settings.from_env()
    url = settings.sqlalchemy_url
    storage = Storage(settings)
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        if job is None:
            log.error("convert job %s has no row; nothing to do", job_id)
            return "missing"
        has_dataset = job.dataset_id is not None
    recorder = JobRecorder(url, job_id, settings=settings)
    recorder.start("reading the original")  # raises JobStopped when the job is cancelled or no longer queued
    if not has_dataset:
        recorder.fail("this conversion job names no dataset")
        return "missing"
    with session_scope(url) as session:
        dataset = session.get(Job, job_id).dataset
        if dataset.status == DatasetStatus.READY.value:  # published pyramids are immutable; never rebuild in place
            log.warning("dataset %s is already converted; job %s does nothing", dataset.id, job_id)
            recorder.finish("the dataset was already converted; nothing to do", notify=False)
            return DatasetStatus.READY.value
        dataset.status, dataset.status_reason = DatasetStatus.CONVERTING.value, ""
        dataset_id, name = dataset.id, dataset.name
        if dataset.storage_mode == "in-place":  # a legacy import referenced where it lies, never copied
            original: Path | Location = Path(dataset.original_location)
        else:
            original = storage.original(dataset.original_sha256)
    dest = storage.pyramid(dataset_id)
    work = storage.scratch(f"convert-{job_id}")
    try:
        if isinstance(original, Location):
            original = _local_original(original, work, recorder)
        built = work / dest.name
        with open_image(original, max_pixels=settings.max_image_pixels) as source:
            summary = build_pyramid(source, built, tile_size=settings.tile_size, progress=recorder, name=name,
                                    memory_budget=settings.volume_memory_budget,
                                    scheduler=settings.dask_scheduler or None)
        recorder.progress(1.0, "publishing the pyramid")
        dest.delete()  # left by an attempt interrupted while publishing, before the dataset was ready: never served
        dest.publish_tree(built)
        _mark_ready(url, storage, dataset_id, summary)
    except TilerError as exc:
        status = _fail(recorder, str(exc))
    except Exception as exc:  # the worker must keep running and the user must learn what happened
        log.exception("conversion of dataset %s failed", dataset_id)
        status = _fail(recorder, f"conversion failed unexpectedly: {type(exc).__name__}: {exc}")
    except JobCancelled:
        recorder.fail("cancelled")
        status = JobStatus.CANCELLED.value
    else:
        recorder.finish(f"{len(summary.shape) - 1}D pyramid with {len(summary.levels)} levels")  # mails the outcome
        status = DatasetStatus.READY.value
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return status


def _local_original(original: Location, work: Path, recorder: JobRecorder) -> Path:
    """The original as a local file: itself on local storage, else streamed from the object store into `work`."""
    if original.local_path is not None:
        return original.local_path
    recorder.progress(0.0, "fetching the original from storage")
    return original.copy_to(work / "original")


def _mark_ready(url: str, storage: Storage, dataset_id: str, summary: PyramidSummary) -> None:
    with session_scope(url) as session:
        dataset = session.get(Dataset, dataset_id)
        channels, *depth, height, width = summary.shape  # (c, y, x) or (c, z, y, x)
        dataset.status, dataset.status_reason = DatasetStatus.READY.value, ""
        dataset.width, dataset.height, dataset.channels, dataset.dtype = width, height, channels, summary.dtype
        dataset.depth = depth[0] if depth else None
        voxel_size = getattr(summary, "voxel_size", None)
        dataset.z_spacing = voxel_size[0] if voxel_size else None
        dataset.source_metadata = dict(getattr(summary, "metadata", None) or {})
        dataset.pixel_size = summary.pixel_size[1] if summary.pixel_size else None
        dataset.unit = summary.unit or ""
        dataset.pyramid_path = storage.pyramid(dataset_id).key
        dataset.pyramid_bytes = summary.nbytes
        dataset.pyramid_info = {
            "levels": [list(level) for level in summary.levels],
            "channel_names": list(summary.channel_names),
            "windows": [list(window) for window in summary.windows],
        }


def _fail(recorder: JobRecorder, reason: str) -> str:
    """Fail the job; its dataset fails with the same reason in the same transaction (see portal.jobs.settle_dataset)."""
    recorder.fail(reason)
    return DatasetStatus.FAILED.value
