"""The storage layout: originals, pyramids and results in the store at TILESCOPE_STORAGE_URL (a folder or S3); scratch and caches in the local data folder."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

from portal.settings import Settings
from tiler.storage import Location, Store, open_store

COPY_BLOCK = 4 * 1024 * 1024


class HashingWriter:
    """A write-only file that hashes (SHA-256) and counts what passes through it."""

    def __init__(self, path: Path, max_bytes: int | None = None):
        self.path = path
        self.max_bytes = max_bytes
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._file = open(path, "xb")

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise UploadTooLarge(f"upload exceeds the limit of {self.max_bytes} bytes (TILESCOPE_MAX_UPLOAD_BYTES)")
        self.sha256.update(data)
        return self._file.write(data)

    # Werkzeug's form parser seeks back after writing; the stream is only read by us, from the path.
    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size) if self._file.readable() else b""

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    @property
    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


class UploadTooLarge(Exception):
    pass


def s3_options(settings: Settings) -> dict:
    """s3fs options from the TILESCOPE_S3_* settings (empty ones left to s3fs's defaults)."""
    options: dict = {}
    if settings.s3_endpoint_url:
        options["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_access_key_id:
        options["key"], options["secret"] = settings.s3_access_key_id, settings.s3_secret_access_key
    if settings.s3_region:
        options["client_kwargs"] = {"region_name": settings.s3_region}
    return options


def open_settings_store(settings: Settings) -> Store:
    """The store of originals, pyramids and results: TILESCOPE_STORAGE_URL, else the data folder."""
    return open_store(settings.storage_url or settings.data_path, s3_options(settings))


class Storage:
    """Keys and atomic publishing in the durable store; working areas (scratch, cache, local uploads) in the data folder.

    The database records keys (``pyramids/<id>.ome.zarr``, ``results/<job>``, ``originals/ab/<sha256>``);
    ``locate`` turns one back into a Location.  Nothing published is ever modified.
    """

    def __init__(self, settings: Settings, store: Store | None = None):
        self.root = settings.data_path
        self.store = store or open_settings_store(settings)
        self.cache_bytes = settings.local_cache_bytes
        self._trimmed_at = 0.0

    @property
    def is_local(self) -> bool:
        return self.store.is_local

    def area(self, name: str) -> Path:
        """A working folder in the local data folder (scratch, cache; uploads in progress when storage is local)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_upload(self, max_bytes: int | None = None) -> HashingWriter:
        return HashingWriter(self.area("uploads") / uuid.uuid4().hex, max_bytes)

    def original(self, sha256: str) -> Location:
        return self.store.location(f"originals/{sha256[:2]}/{sha256}")

    def publish_original(self, upload: Path, sha256: str) -> Location:
        """Store a finished upload as originals/ab/<sha256>, read-only; an identical original is kept, not replaced."""
        target = self.original(sha256)
        local = target.local_path
        if local is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
            if local.exists():
                upload.unlink()
                return target
            os.chmod(upload, 0o444)
            try:
                os.replace(upload, local)
                return target
            except OSError as error:
                if error.errno != errno.EXDEV:  # another filesystem: copied below
                    raise
        if not (target.is_file() and target.size() == upload.stat().st_size):
            target.put_file(upload)
        upload.unlink()
        return target

    def pyramid(self, dataset_id: str) -> Location:
        return self.store.location(f"pyramids/{dataset_id}.ome.zarr")

    def result(self, job_id: str) -> Location:
        """Folder of what analysis job `job_id` produced: labels.ome.zarr, measurements.csv, provenance.json."""
        return self.store.location(f"results/{job_id}")

    def locate(self, key: str) -> Location:
        """The Location of a key recorded in the database; ValueError for anything that escapes the store."""
        return self.store.location(key)

    def scratch(self, name: str) -> Path:
        """A fresh, empty local folder for building outputs before they are published."""
        path = self.area("scratch") / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def local_copy(self, location: Location) -> Path:
        """A local path to the published (immutable) file: itself on local storage, else a cached download (its
        modification time marks its last use, at most hourly, for trim_cache)."""
        local = location.local_path
        if local is not None:
            return local
        cached = self.area("cache") / hashlib.sha256(location.url.encode()).hexdigest()[:32] / location.name
        try:
            if time.time() - cached.stat().st_mtime > CACHE_TOUCH_SECONDS:
                os.utime(cached)
        except FileNotFoundError:
            for attempt in (1, 2):  # a trim in another process may remove the folder just made
                cached.parent.mkdir(parents=True, exist_ok=True)
                try:
                    location.copy_to(cached)
                    break
                except FileNotFoundError:
                    if attempt == 2 or not location.is_file():
                        raise
            if time.monotonic() - self._trimmed_at > CACHE_TRIM_SECONDS:  # web hosts without a worker trim too
                self._trimmed_at = time.monotonic()
                trim_cache(self, self.cache_bytes)
        return cached


#: A cached file's modification time is refreshed on use at most this often (a write per hour, not per request).
CACHE_TOUCH_SECONDS = 3600
#: A download into the cache trims it at most this often per process (workers also trim it hourly).
CACHE_TRIM_SECONDS = 600


def trim_cache(storage: Storage, max_bytes: int, *, now: float | None = None) -> int:
    """Remove the least recently used files of the local cache until it holds at most MAX_BYTES; how many went.
    Files used within two touch intervals are in use and stay (the budget is then exceeded for a while); a removed
    file still open or memory-mapped by a web process stays readable there until it is closed."""
    in_use_since = (now or time.time()) - 2 * CACHE_TOUCH_SECONDS
    root = storage.area("cache")
    files = []
    for path in root.rglob("*"):
        try:
            if path.is_file():
                status = path.stat()
                files.append((status.st_mtime, status.st_size, path))
        except FileNotFoundError:
            continue
    total, removed = sum(size for _, size, _ in files), 0
    for used, size, path in sorted(files):
        if total <= max_bytes or used >= in_use_since:
            break
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime >= in_use_since:
                continue  # used since it was listed
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the file's own folder, once empty
        total, removed = total - size, removed + 1
    return removed
