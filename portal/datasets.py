"""Turning a finished upload into a Dataset: sniff, publish the original, record, queue the conversion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from portal import audit
from portal.jobs import QueueUnavailable, enqueue
from portal.models import Dataset, DatasetStatus, Project, User
from portal.settings import Settings
from portal.storage import HashingWriter, Storage
from tiler.errors import UnsupportedFormat
from tiler.readers import sniff_format


class EmptyUpload(ValueError):
    pass


def register_upload(session: Session, settings: Settings, storage: Storage, project: Project, user: User,
                    upload: HashingWriter, filename: str, name: str = "") -> Dataset:
    """Publish a finished multipart upload as an immutable original, create its Dataset and queue its conversion."""
    upload.close()
    return register_file(session, settings, storage, project, user, upload.path, upload.hexdigest, upload.size,
                         filename, name)


def register_file(session: Session, settings: Settings, storage: Storage, project: Project, user: User, path: Path,
                  sha256: str, size: int, filename: str, name: str = "", *, remote_addr: str = "",
                  on_created: Callable[[Dataset], None] | None = None) -> Dataset:
    """Sniff the finished file at `path`, publish it as original `sha256` (stored once), record and queue its Dataset.

    The file is moved away (or deleted when refused or already stored) in every case. `on_created(dataset)` runs in
    the transaction that creates the dataset, before its conversion is queued (which may fail).
    """
    if size == 0:
        path.unlink(missing_ok=True)
        raise EmptyUpload(f"{filename or 'the upload'} is empty")
    image_format = sniff_format(path)
    if image_format is None:
        with open(path, "rb") as head:
            start = head.read(8)
        path.unlink(missing_ok=True)
        raise UnsupportedFormat(f"{filename} is not a supported image: expected TIFF/BigTIFF/OME-TIFF, PNG, JPEG, "
                                f"DICOM, or a .zip of slices or of a DICOM series (it starts with {start!r})")
    storage.publish_original(path, sha256)
    clean_name = Path(filename).name or "upload"
    dataset = Dataset(
        project_id=project.id, name=(name.strip() or clean_name)[:300], original_filename=clean_name[:500],
        original_sha256=sha256, original_size=size, format=image_format, created_by_id=user.id,
    )
    session.add(dataset)
    session.flush()
    audit.record(session, "dataset.create", user=user, target_type="dataset", target_id=dataset.id,
                 project_id=project.id, new={"name": dataset.name, "original_filename": dataset.original_filename,
                                             "original_sha256": sha256, "original_size": size, "format": image_format},
                 remote_addr=remote_addr)
    if on_created is not None:
        on_created(dataset)
    session.commit()
    try:
        enqueue(session, settings, "convert", dataset_id=dataset.id, user_id=user.id)
    except QueueUnavailable as exc:
        dataset.status, dataset.status_reason = DatasetStatus.FAILED.value, str(exc)
        session.commit()
        raise
    return dataset


def dataset_summary(dataset: Dataset) -> dict:
    """The JSON shape of a dataset in the API."""
    job = dataset.latest_job
    return {
        "id": dataset.id,
        "project_id": dataset.project_id,
        "name": dataset.name,
        "status": dataset.status,
        "status_reason": dataset.status_reason,
        "original_filename": dataset.original_filename,
        "original_sha256": dataset.original_sha256,
        "original_size": dataset.original_size,
        "format": dataset.format,
        "width": dataset.width,
        "height": dataset.height,
        "depth": dataset.depth,
        "channels": dataset.channels,
        "dtype": dataset.dtype,
        "pixel_size": dataset.pixel_size,
        "z_spacing": dataset.z_spacing,
        "unit": dataset.unit,
        "levels": (dataset.pyramid_info or {}).get("levels"),
        "source_metadata": dataset.source_metadata or {},
        "created_at": dataset.created_at.isoformat(),
        "job": None if job is None else {
            "id": job.id, "status": job.status, "progress": job.progress, "message": job.message, "error": job.error,
        },
    }
