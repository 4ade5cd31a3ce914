"""The tus 1.0 resumable-upload protocol, Flask-free: create, append (checksummed, durable), terminate, expire."""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from portal import audit, upload_store
from portal.models import Dataset, Project, Upload, User, utcnow
from portal.settings import Settings
from portal.storage import Storage
from portal.upload_store import upload_path

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
#: Seconds a DELETE waits for a PATCH of the same upload still in flight.
TERMINATE_WAIT_SECONDS = 10
#: Incomplete uploads untouched for longer than this are deleted.
UPLOAD_EXPIRY = timedelta(days=1)
#: Finished uploads without a dataset (parts of a folder still uploading; bytes kept when storage failed) go after this.
FINISHED_UPLOAD_EXPIRY = timedelta(days=7)
#: Bytes read from a request body at a time: a PATCH body is never held in memory whole.
CHUNK_BYTES = 1024 * 1024
#: Most parts one multi-file group (a folder of slices, a DICOM series) may have.
MAX_GROUP_SIZE = 100_000
MAX_METADATA_VALUE = 1000
CHECKSUM_MISMATCH = "Upload-Checksum does not match the data received; the chunk was discarded"


class TusError(Exception):
    """A refused tus request: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class AppendResult:
    offset: int
    complete: bool
    disconnected: bool = False


def parse_metadata(header: str) -> dict[str, str]:
    """Decode a tus Upload-Metadata header: comma-separated `key base64value` pairs (the value may be absent)."""
    metadata: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in (header or "").split(","))):
        key, _, encoded = pair.partition(" ")
        try:
            value = base64.b64decode(encoded.strip(), validate=True).decode("utf-8") if encoded.strip() else ""
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(400, f"Upload-Metadata value of {key!r} is not base64-encoded UTF-8") from None
        if len(value) > MAX_METADATA_VALUE or "\x00" in value:
            raise TusError(400, f"Upload-Metadata value of {key!r} is too long or holds a NUL character")
        metadata[key] = value
    return metadata


def safe_relative_path(value: str, what: str = "filename") -> str:
    """A "/"-separated relative path with no `..`, no absolute start, no drive letter; else TusError(400)."""
    cleaned = value.replace("\\", "/")
    path = PurePosixPath(cleaned)
    if (not cleaned or cleaned.startswith("/") or ":" in path.parts[0] or any(part == ".." for part in path.parts)
            or any(ord(ch) < 32 for ch in cleaned)):
        raise TusError(400, f"{what} {value!r} must be a relative path without '..'")
    return "/".join(part for part in path.parts if part != ".")


def check_upload_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Validate filename, relativePath and group/groupSize; returns the metadata to store."""
    filename = metadata.get("filename", "").strip()
    if not filename:
        raise TusError(400, "Upload-Metadata must carry a filename")
    metadata["filename"] = safe_relative_path(filename)
    if metadata.get("relativePath"):
        metadata["relativePath"] = safe_relative_path(metadata["relativePath"], "relativePath")
    if metadata.get("group"):
        try:
            size = int(metadata.get("groupSize", ""))
        except ValueError:
            raise TusError(400, "a group upload needs groupSize, a whole number") from None
        if not 1 <= size <= MAX_GROUP_SIZE:
            raise TusError(400, f"groupSize must be between 1 and {MAX_GROUP_SIZE}")
        metadata["groupSize"] = str(size)
    return metadata


def expires_at(upload: Upload) -> datetime:
    return (upload.updated_at or upload.created_at) + UPLOAD_EXPIRY


def project_usage(session: Session, project_id: int) -> int:
    """Bytes a project holds against its quota: its distinct originals plus uploads not yet turned into datasets."""
    originals = select(Dataset.original_sha256, func.max(Dataset.original_size).label("size")).where(
        Dataset.project_id == project_id).group_by(Dataset.original_sha256).subquery()
    stored = session.scalar(select(func.coalesce(func.sum(originals.c.size), 0)))
    waiting = session.scalars(select(Upload).where(Upload.project_id == project_id, Upload.dataset_id.is_(None)))
    pending = sum(upload.length or 0 for upload in waiting if upload.completed_at is None or (
        (upload.upload_metadata or {}).get("group") and not (upload.upload_metadata or {}).get("error")))
    return int(stored) + pending


def create_upload(session: Session, storage: Storage, project: Project, user: User, length: int | None,
                  metadata: dict[str, str], *, max_bytes: int, remote_addr: str = "") -> Upload:
    """Check the length against the size limit and the project quota, then create the row and its (empty) data."""
    if length is None or length < 0:
        raise TusError(400, "Upload-Length must be a whole number of bytes (deferred lengths are not supported)")
    if length == 0:
        raise TusError(400, "the file is empty (Upload-Length 0)")
    if length > max_bytes:
        raise TusError(413, f"the upload of {length} bytes exceeds the limit of {max_bytes} bytes "
                            "(TILESCOPE_MAX_UPLOAD_BYTES)")
    metadata = check_upload_metadata(metadata)
    if project.quota_bytes is not None:
        used = project_usage(session, project.id)
        if used + length > project.quota_bytes:
            raise TusError(413, f"the upload of {length} bytes would exceed the project's quota: {used} of "
                                f"{project.quota_bytes} bytes are used")
    upload = Upload(project_id=project.id, user_id=user.id, filename=metadata["filename"][:500], length=length,
                    offset=0, upload_metadata=metadata)
    session.add(upload)
    session.flush()
    upload_store.create_data(storage, upload.id)
    audit.record(session, "upload.create", user=user, target_type="upload", target_id=upload.id,
                 project_id=project.id, new={"filename": upload.filename, "length": length,
                                             "group": metadata.get("group", "")}, remote_addr=remote_addr)
    session.commit()
    return upload


def parse_checksum(header: str | None):
    """The hash object and expected digest of an Upload-Checksum header (`sha1 <base64>`), or None."""
    if not header:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm.lower() not in CHECKSUM_ALGORITHMS:
        raise TusError(400, f"Upload-Checksum algorithm {algorithm!r} is not supported: use "
                            f"{', '.join(CHECKSUM_ALGORITHMS)}")
    try:
        expected = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise TusError(400, "Upload-Checksum digest is not base64") from None
    return CHECKSUM_ALGORITHMS[algorithm.lower()](), expected


def append_chunk(session: Session, storage: Storage, upload: Upload, body: BinaryIO, offset: int,
                 content_length: int | None, checksum_header: str | None = None,
                 disconnect_errors: tuple[type[BaseException], ...] = (), *,
                 settings: Settings | None = None) -> AppendResult:
    """Write a PATCH body at `offset`, streamed in CHUNK_BYTES pieces, durable before the new offset is committed.

    Local storage: appended to the upload's file (fcntl-locked, fsync'd). Object storage: stored as one part object
    (Redis-locked; `settings` give Redis). A checksum mismatch discards the chunk (TusError 460); a client that
    disconnects mid-body keeps what arrived (unless a checksum was sent, which can then not be verified).
    """
    if upload.completed_at is not None:
        raise TusError(409, "the upload is already complete")
    if offset != upload.offset:
        raise TusError(409, f"Upload-Offset {offset} does not match the upload's offset {upload.offset}")
    checksum = parse_checksum(checksum_header)
    remaining = upload.length - upload.offset
    if content_length is not None and content_length > remaining:
        raise TusError(413, f"the body of {content_length} bytes goes past Upload-Length ({remaining} bytes remain)")
    if upload_store.uses_parts(storage):
        return _append_part(session, storage, settings, upload, body, offset, remaining, checksum, disconnect_errors)
    path = upload_path(storage, upload.id)
    if not path.exists():
        raise TusError(404, "the upload's data is gone (expired or terminated)")
    with open(path, "r+b") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TusError(409, "another request is writing to this upload") from None
        # under the lock, the row as committed by whichever process (or web replica) wrote last
        session.refresh(upload)
        if upload.completed_at is not None or offset != upload.offset:
            raise TusError(409, f"Upload-Offset {offset} does not match the upload's offset {upload.offset}")
        file.truncate(upload.offset)  # bytes of an unacknowledged earlier PATCH are dropped
        file.seek(upload.offset)
        try:
            written, disconnected = _copy_body(body, file, remaining, checksum, disconnect_errors)
        except BaseException:
            file.truncate(upload.offset)
            raise
        if checksum and (disconnected or checksum[0].digest() != checksum[1]):
            file.truncate(upload.offset)
            if disconnected:
                return AppendResult(upload.offset, False, disconnected=True)
            raise TusError(460, CHECKSUM_MISMATCH)
        file.flush()
        os.fsync(file.fileno())
        upload.offset += written
        upload.updated_at = utcnow()
        complete = upload.offset == upload.length
        if complete:
            upload.completed_at = utcnow()
            upload.sha256 = file_sha256(path)
        session.commit()  # before the lock is released: the next writer sees this offset
    return AppendResult(upload.offset, complete, disconnected)


def _append_part(session: Session, storage: Storage, settings: Settings | None, upload: Upload, body: BinaryIO,
                 offset: int, remaining: int, checksum, disconnect_errors) -> AppendResult:
    """append_chunk on object storage: the body goes to a scratch file, then whole into the part object at `offset`."""
    if settings is None:
        raise ValueError("append_chunk needs the settings (Redis) when uploads live in an object store")
    try:
        with upload_store.redis_lock(settings, f"upload:{upload.id}") as check_lock, \
                upload_store.scratch_folder(storage, f"upload-{upload.id}") as folder:
            session.refresh(upload)  # under the lock, the row as committed by whichever web replica wrote last
            if upload.completed_at is not None or offset != upload.offset:
                raise TusError(409, f"Upload-Offset {offset} does not match the upload's offset {upload.offset}")
            try:
                upload_store.committed_parts(storage, upload)
            except FileNotFoundError:
                raise TusError(404, "the upload's data is gone (expired or terminated)") from None
            chunk = folder / "chunk"
            with open(chunk, "xb") as file:
                written, disconnected = _copy_body(body, file, remaining, checksum, disconnect_errors)
            if checksum and (disconnected or checksum[0].digest() != checksum[1]):
                if disconnected:
                    return AppendResult(upload.offset, False, disconnected=True)
                raise TusError(460, CHECKSUM_MISMATCH)
            if written:
                check_lock()
                upload_store.put_part(storage, upload.id, upload.offset, chunk)  # replaces a failed attempt's part
                check_lock(force=True)
            upload.offset += written
            upload.updated_at = utcnow()
            complete = upload.offset == upload.length
            if complete:
                upload.completed_at = utcnow()
                if (upload.upload_metadata or {}).get("group"):
                    upload.sha256 = upload_store.parts_sha256(storage, upload)
                # else hashed while its parts are assembled for register_file (finished_file): one read, not two
            session.commit()  # before the lock is released: the next writer sees this offset
    except upload_store.LockBusy:
        raise TusError(409, "another request is writing to this upload") from None
    except upload_store.LockLost:
        session.rollback()
        raise TusError(409, "the upload's lock was lost while this request wrote (Redis restarted?); ask for the "
                            "offset (HEAD) and send the rest again") from None
    except upload_store.LockUnavailable as exc:
        session.rollback()
        raise TusError(503, str(exc)) from None
    return AppendResult(upload.offset, complete, disconnected)


def _copy_body(body: BinaryIO, out: BinaryIO, remaining: int, checksum, disconnect_errors) -> tuple[int, bool]:
    """Copy up to `remaining` bytes of `body` to `out`, CHUNK_BYTES at a time; (bytes written, client disconnected)."""
    written = 0
    try:
        while written < remaining:
            data = body.read(min(CHUNK_BYTES, remaining - written))
            if not data:
                break
            out.write(data)
            written += len(data)
            if checksum:
                checksum[0].update(data)
        if written == remaining and body.read(1):
            raise TusError(413, "the body goes past Upload-Length")
    except disconnect_errors:
        return written, True
    return written, False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def terminate(session: Session, storage: Storage, upload: Upload, user: User, remote_addr: str = "", *,
              settings: Settings | None = None) -> None:
    """Delete the upload's data and its row (tus termination), after a PATCH still writing to it has ended."""
    with _writers_done(settings, storage, upload.id):
        try:
            session.refresh(upload)  # as the last PATCH left it
        except InvalidRequestError:
            raise TusError(404, "the upload is gone (expired or deleted meanwhile)") from None
        if upload.dataset_id:
            raise TusError(409, "the upload already became a dataset; delete the dataset instead")
        upload_store.delete_data(storage, upload.id)
        _delete_row(session, upload, user, remote_addr)


@contextlib.contextmanager
def _writers_done(settings: Settings | None, storage: Storage, upload_id: str):
    """Hold the lock PATCHes of this upload take (Redis on object storage, the file's lock on local storage),
    waiting up to TERMINATE_WAIT_SECONDS for one in flight; 409 if it is still writing then."""
    if upload_store.uses_parts(storage):
        try:
            with upload_store.redis_lock(settings, f"upload:{upload_id}", wait=TERMINATE_WAIT_SECONDS):
                yield
        except upload_store.LockBusy:
            raise TusError(409, "the upload is still being written to; try again when that request ends") from None
        except upload_store.LockUnavailable as exc:
            raise TusError(503, str(exc)) from None
        return
    try:
        file = open(upload_store.upload_path(storage, upload_id), "rb")
    except FileNotFoundError:
        yield
        return
    with file:
        deadline = time.monotonic() + TERMINATE_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TusError(409, "the upload is still being written to; try again when that request ends") \
                        from None
                time.sleep(0.05)
        yield


def _delete_row(session: Session, upload: Upload, user: User, remote_addr: str) -> None:
    audit.record(session, "upload.delete", user=user, target_type="upload", target_id=upload.id,
                 project_id=upload.project_id, old={"filename": upload.filename, "offset": upload.offset,
                                                    "length": upload.length}, remote_addr=remote_addr)
    session.delete(upload)
    session.commit()


def expire_uploads(session: Session, storage: Storage, now: datetime | None = None) -> int:
    """Delete uploads not turned into datasets and untouched for UPLOAD_EXPIRY (FINISHED_UPLOAD_EXPIRY once complete:
    a folder's finished parts wait for the rest), files and rows; returns how many."""
    now = now or utcnow()
    unfinished = Upload.completed_at.is_(None) & (Upload.updated_at < now - UPLOAD_EXPIRY)
    finished = Upload.completed_at.is_not(None) & (Upload.updated_at < now - FINISHED_UPLOAD_EXPIRY)
    stale = list(session.scalars(select(Upload).where(Upload.dataset_id.is_(None), unfinished | finished)))
    for upload in stale:
        upload_store.delete_data(storage, upload.id)
        audit.record(session, "upload.expire", actor="system", target_type="upload", target_id=upload.id,
                     project_id=upload.project_id, old={"filename": upload.filename, "offset": upload.offset,
                                                        "length": upload.length})
        session.delete(upload)
    if stale:
        session.commit()
    return len(stale)


def upload_summary(upload: Upload) -> dict:
    """The JSON shape of an upload (GET on it)."""
    metadata = upload.upload_metadata or {}
    return {
        "id": upload.id, "project_id": upload.project_id, "filename": upload.filename, "length": upload.length,
        "offset": upload.offset, "complete": upload.completed_at is not None, "dataset_id": upload.dataset_id,
        "group": metadata.get("group") or None, "relative_path": metadata.get("relativePath") or None,
        "error": metadata.get("error") or None, "sha256": upload.sha256 or None,
        "expires_at": None if upload.completed_at else expires_at(upload).isoformat(),
    }
