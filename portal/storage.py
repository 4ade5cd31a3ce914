"""The storage layout on a local folder: content-addressed originals, pyramids, results, uploads in progress."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from portal.settings import Settings

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


class Storage:
    """Paths and atomic moves inside the data folder; nothing published is ever modified."""

    def __init__(self, settings: Settings):
        self.root = settings.data_path

    def area(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_upload(self, max_bytes: int | None = None) -> HashingWriter:
        return HashingWriter(self.area("uploads") / uuid.uuid4().hex, max_bytes)

    def original_path(self, sha256: str) -> Path:
        return self.area("originals") / sha256[:2] / sha256

    def publish_original(self, upload: Path, sha256: str) -> Path:
        """Move a finished upload to originals/ab/<sha256>, read-only; an identical original is kept, not replaced."""
        target = self.original_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            upload.unlink()
        else:
            os.chmod(upload, 0o444)
            os.replace(upload, target)
        return target

    def pyramid_path(self, dataset_id: str) -> Path:
        return self.area("pyramids") / f"{dataset_id}.ome.zarr"

    def result_path(self, job_id: str) -> Path:
        """Folder of what analysis job `job_id` produced: labels.ome.zarr, measurements.csv, provenance.json."""
        return self.area("results") / job_id

    def relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.root))

    def absolute(self, relative: str) -> Path:
        """Resolve a stored relative path, refusing anything that escapes the data folder."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"path {relative!r} leaves the data folder")
        return path
