"""Finished tus uploads become datasets: a single file as it is, a group of files (a folder of slices, a DICOM
series) as one zip of them once every part is complete (one assembler per group: fcntl- or Redis-locked)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.datasets import EmptyUpload, register_file
from portal.models import Dataset, Project, Upload, User
from portal.settings import Settings
from portal.storage import Storage
from portal.tus import file_sha256, safe_relative_path
from tiler.errors import UnsupportedFormat
from portal.upload_store import (LOCK_SECONDS, LockBusy, delete_data, discard_parts, finished_file, redis_lock,
                                 scratch_folder, uses_parts)


def complete_upload(session: Session, settings: Settings, storage: Storage, upload: Upload, user: User,
                    remote_addr: str = "") -> Dataset | None:
    """Turn a complete upload into its dataset; for a group part, only once the last part is in (else None).

    Raises what register_file raises (UnsupportedFormat, EmptyUpload, QueueUnavailable); the refusal is kept in the
    upload's metadata as `error` so that a GET on the upload tells the client why.
    """
    metadata = upload.upload_metadata or {}
    project = session.get(Project, upload.project_id)
    try:
        if metadata.get("group"):
            return _complete_group(session, settings, storage, project, upload, user, remote_addr)
        name = metadata.get("name", "")
        with finished_file(storage, upload) as path:
            session.commit()  # the hash finished_file may have set: from here the original's bytes are spoken for
            try:
                return register_file(session, settings, storage, project, user, path, upload.sha256, upload.length,
                                     upload.filename, name, remote_addr=remote_addr,
                                     on_created=lambda dataset: setattr(upload, "dataset_id", dataset.id))
            except (EmptyUpload, UnsupportedFormat):
                discard_parts(storage, upload.id)  # refused: nothing worth keeping
                raise
            finally:
                if upload.dataset_id:  # the bytes are the dataset's original now; else (storage down) they stay
                    discard_parts(storage, upload.id)
    except Exception as exc:
        session.rollback()
        _record_error(session, upload.id, str(exc))
        raise


def _record_error(session: Session, upload_id: str, message: str) -> None:
    upload = session.get(Upload, upload_id)
    if upload is not None:
        upload.upload_metadata = dict(upload.upload_metadata or {}, error=message[:1000])
        session.commit()


def group_parts(session: Session, upload: Upload) -> list[Upload]:
    """Every upload of the same user, project and group id, oldest first."""
    group = upload.upload_metadata.get("group")
    candidates = session.scalars(select(Upload).where(Upload.project_id == upload.project_id,
                                                      Upload.user_id == upload.user_id)
                                 .order_by(Upload.created_at))
    return [part for part in candidates if (part.upload_metadata or {}).get("group") == group]


def _complete_group(session: Session, settings: Settings, storage: Storage, project: Project, upload: Upload,
                    user: User, remote_addr: str) -> Dataset | None:
    """One assembler per group (the others then see its dataset): a Redis lock when uploads live in an object store
    (LockBusy: another web replica still assembles; a GET on the upload tells its dataset later), else an fcntl lock
    beside the uploads."""
    metadata = upload.upload_metadata
    key = hashlib.sha256(f"{upload.project_id}:{upload.user_id}:{metadata['group']}".encode()).hexdigest()[:32]
    if uses_parts(storage):
        try:
            with redis_lock(settings, f"upload-group:{key}", wait=LOCK_SECONDS) as check_lock:
                return _assemble_group(session, settings, storage, project, upload, user, remote_addr, key,
                                       check_lock)
        except LockBusy:
            return None
    with open(storage.area("uploads") / f"group-{key}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        dataset = _assemble_group(session, settings, storage, project, upload, user, remote_addr, key)
    if dataset is not None:
        Path(lock.name).unlink(missing_ok=True)
    return dataset


@contextlib.contextmanager
def _group_archive(storage: Storage, key: str) -> Iterator[Path]:
    """Where the group's zip is built: in scratch on object storage, beside the uploads otherwise."""
    if uses_parts(storage):
        with scratch_folder(storage, f"group-{key}") as folder:
            yield folder / "group.zip"
    else:
        yield storage.area("uploads") / f"group-{key}.zip"


def _assemble_group(session: Session, settings: Settings, storage: Storage, project: Project, upload: Upload,
                    user: User, remote_addr: str, key: str,
                    check_lock: Callable[..., None] = lambda force=False: None) -> Dataset | None:
    """Under the group's lock: its dataset if made already; else, once every part is in, the zip of them
    registered as a dataset; else None."""
    metadata = upload.upload_metadata
    session.expire_all()
    parts = group_parts(session, upload)
    done = next((part.dataset_id for part in parts if part.dataset_id), None)
    if done:
        return session.get(Dataset, done)
    by_path = {}  # a part sent twice (a new upload after a lost one) counts once
    for part in parts:
        if part.completed_at is not None:
            by_path.setdefault(part.upload_metadata.get("relativePath") or part.filename, part)
    if len(by_path) < int(metadata["groupSize"]):
        return None
    complete = list(by_path.values())
    with _group_archive(storage, key) as archive:
        try:
            assemble_zip(storage, complete, archive)
            name = metadata.get("name") or _group_name(complete)
            check_lock(force=True)  # nobody else assembles this group meanwhile
            return register_file(session, settings, storage, project, user, archive, file_sha256(archive),
                                 archive.stat().st_size, f"{name}.zip", name, remote_addr=remote_addr,
                                 on_created=lambda created: _link_parts(complete, created))
        finally:
            archive.unlink(missing_ok=True)
            for part in complete:
                if part.dataset_id:  # committed: the bytes live on in the dataset's original (the zip)
                    delete_data(storage, part.id)


def _link_parts(parts: list[Upload], dataset: Dataset) -> None:
    for part in parts:
        part.dataset_id = dataset.id


def _group_name(parts: list[Upload]) -> str:
    """The dropped folder's name (first component of the relative paths), else the first file's name."""
    first = (parts[0].upload_metadata.get("relativePath") or parts[0].filename).split("/")
    return first[0] if len(first) > 1 else Path(first[0]).stem


def assemble_zip(storage: Storage, parts: list[Upload], archive: Path) -> None:
    """Store (uncompressed) every part under its safe relative path; a repeated path gets a numbered name."""
    seen: set[str] = set()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zipped:
        for part in parts:
            name = safe_relative_path(part.upload_metadata.get("relativePath") or part.filename, "relativePath")
            stem, suffix = os.path.splitext(name)
            counter = 1
            while name in seen:
                name, counter = f"{stem}-{counter}{suffix}", counter + 1
            seen.add(name)
            with finished_file(storage, part) as path:
                zipped.write(path, arcname=name)
    with open(archive, "rb") as file:
        os.fsync(file.fileno())
