"""Uploads in progress as files (local storage: `<data>/uploads/<id>`) or as part objects (object storage:
`uploads/<id>/<offset>` in the store, so web replicas share no folder), and the local file of a finished one."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from redis.exceptions import LockError, RedisError

from portal.jobs import QueueUnavailable, redis_connection
from portal.models import Upload
from portal.settings import Settings
from portal.storage import Storage
from tiler.storage import Location, iter_chunks

#: A part object is named by the offset of its first byte, zero-padded so that names sort by offset.
PART_NAME = re.compile(r"\d{20}")
#: Seconds a Redis lock lives unless renewed (its holder renews it every quarter of this while it works): a web
#: replica that died with the lock blocks the upload no longer than this.
LOCK_SECONDS = 60


class LockBusy(Exception):
    """Another request (on this or another web replica) holds the lock."""


class LockLost(QueueUnavailable):
    """The lock was lost while held (Redis restarted or unreachable); the work done under it must not be committed."""


class LockUnavailable(QueueUnavailable):
    """Redis cannot be reached (or is not configured), so no lock can be taken."""


def uses_parts(storage: Storage) -> bool:
    """Whether uploads in progress live in the object store as part objects (else as files in the data folder)."""
    return not storage.is_local


def upload_path(storage: Storage, upload_id: str) -> Path:
    """The file of an upload in progress on local storage."""
    return storage.area("uploads") / upload_id


def parts_folder(storage: Storage, upload_id: str) -> Location:
    return storage.locate(f"uploads/{upload_id}")


def part_location(storage: Storage, upload_id: str, offset: int) -> Location:
    return parts_folder(storage, upload_id) / f"{offset:020d}"


def create_data(storage: Storage, upload_id: str) -> None:
    """An empty file, or an empty part at offset 0 (which tells a new upload from one whose data is gone)."""
    if not uses_parts(storage):
        upload_path(storage, upload_id).touch(exist_ok=False)
        return
    with scratch_folder(storage, "upload-create") as folder:
        empty = folder / "empty"
        empty.touch()
        part_location(storage, upload_id, 0).put_file(empty)


def delete_data(storage: Storage, upload_id: str) -> None:
    """Remove the upload's file or part objects (nothing if they are gone already)."""
    if uses_parts(storage):
        parts_folder(storage, upload_id).delete()
    else:
        upload_path(storage, upload_id).unlink(missing_ok=True)


def discard_parts(storage: Storage, upload_id: str) -> None:
    """Once a finished upload went to register_file: its parts go (a local file was moved or deleted by it)."""
    if uses_parts(storage):
        parts_folder(storage, upload_id).delete()


def put_part(storage: Storage, upload_id: str, offset: int, path: Path) -> None:
    """Store the bytes of `path` as the part starting at `offset` (replacing one a failed attempt left there)."""
    part_location(storage, upload_id, offset).put_file(path)


def committed_parts(storage: Storage, upload: Upload) -> list[Location]:
    """The part objects holding bytes 0 to upload.offset, in order; parts past it (a failed attempt's) are left out.

    FileNotFoundError when the data is gone (expired, terminated, or not consistent with the committed offset).
    """
    sizes = {int(name): size for name, size in parts_folder(storage, upload.id).files() if PART_NAME.fullmatch(name)}
    if 0 not in sizes:
        raise FileNotFoundError(f"upload {upload.id} has no data")
    parts, position = [], 0
    while position < upload.offset:
        size = sizes.get(position)
        if not size:
            raise FileNotFoundError(f"upload {upload.id} misses the part at offset {position}")
        parts.append(part_location(storage, upload.id, position))
        position += size
    if position != upload.offset:
        raise FileNotFoundError(f"upload {upload.id}'s parts hold {position} bytes, not {upload.offset}")
    return parts


def parts_sha256(storage: Storage, upload: Upload) -> str:
    """SHA-256 of the committed parts, streamed in order."""
    digest = hashlib.sha256()
    for part in committed_parts(storage, upload):
        with part.open() as source:
            for block in iter_chunks(source):
                digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def scratch_folder(storage: Storage, name: str) -> Iterator[Path]:
    """A fresh local folder under scratch, removed afterwards."""
    folder = storage.scratch(f"{name}-{secrets.token_hex(6)}")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def finished_file(storage: Storage, upload: Upload) -> Iterator[Path]:
    """A local path holding the finished upload's bytes.

    Local storage: the upload's own file (the caller moves or deletes it). Object storage: the parts assembled
    (streamed) into scratch, removed afterwards, and hashed on the way when `upload.sha256` is not known yet; the
    parts stay until `discard_parts` or `delete_data`.
    """
    if not uses_parts(storage):
        yield upload_path(storage, upload.id)
        return
    with scratch_folder(storage, f"upload-{upload.id}") as folder:
        path, digest = folder / (Path(upload.filename).name or "upload"), hashlib.sha256()
        with open(path, "xb") as out:
            for part in committed_parts(storage, upload):
                with part.open() as source:
                    for block in iter_chunks(source):
                        out.write(block)
                        digest.update(block)
        if not upload.sha256:
            upload.sha256 = digest.hexdigest()
        yield path


@contextlib.contextmanager
def redis_lock(settings: Settings, name: str, *, wait: float = 0) -> Iterator[Callable[..., None]]:
    """Hold the Redis lock `tilescope:<name>` (LockBusy if it is not free within `wait` seconds), like an fcntl lock
    across web replicas: a thread renews it while held; a holder that died frees it within LOCK_SECONDS.

    Yields `check(force=False)`: raises LockLost if the lock was lost (Redis restarted, or renewals failed);
    `force` renews it now. Call it before committing what was done under the lock.
    """
    try:
        connection = redis_connection(settings)
    except QueueUnavailable as exc:
        raise LockUnavailable(f"uploads to object storage need Redis for their locks: {exc}") from exc
    try:
        lock = connection.lock(f"tilescope:{name}", timeout=LOCK_SECONDS, thread_local=False)
        acquired = lock.acquire(blocking=wait > 0, blocking_timeout=wait or None)
    except RedisError as exc:
        connection.close()
        raise LockUnavailable(f"uploads to object storage need Redis for their locks: {exc}") from exc
    if not acquired:
        connection.close()
        raise LockBusy(name)
    stop, lost = threading.Event(), threading.Event()

    def keep() -> None:
        while not stop.wait(LOCK_SECONDS / 4):
            try:
                lock.reacquire()
            except (LockError, RedisError):
                lost.set()
                return

    def check(force: bool = False) -> None:
        if force and not lost.is_set():
            try:
                lock.reacquire()
            except (LockError, RedisError):
                lost.set()
        if lost.is_set():
            raise LockLost(name)

    keeper = threading.Thread(target=keep, name=f"lock-{name}", daemon=True)
    keeper.start()
    try:
        yield check
    finally:
        stop.set()
        keeper.join()
        with contextlib.suppress(LockError, RedisError):  # lost meanwhile, or Redis gone: it expires by itself
            lock.release()
        connection.close()
