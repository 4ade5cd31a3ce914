"""An S3-compatible bucket (and key prefix) as a Store, through s3fs; unreachable stores raise StorageUnavailable."""

from __future__ import annotations

import functools
import posixpath
import shutil
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from tiler.errors import StorageUnavailable
from tiler.storage import COPY_BYTES, Store

__all__ = ["CLIENT_CONFIG", "ObjectStore"]

#: botocore settings of an object store unless its options say otherwise: fail within seconds, not minutes,
#: when the endpoint is down (a tile request must not hang a web thread).
CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3, "mode": "standard"}}


def _reachable(method):
    """Turn the errors of an unreachable or refusing store into StorageUnavailable (missing files stay
    FileNotFoundError)."""

    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, ValueError,
                StorageUnavailable):
            raise
        except Exception as error:
            if _unreachable(error):
                raise StorageUnavailable(f"storage {self.url} cannot be used: {error}") from error
            raise
    return checked


def _unreachable(error: Exception) -> bool:
    """Whether ``error`` means the store is down, too slow, or refuses the credentials."""
    if isinstance(error, PermissionError | ConnectionError | TimeoutError):
        return True
    try:
        import aiohttp
        import botocore.exceptions
    except ImportError:  # pragma: no cover - s3fs brings both
        return False
    return isinstance(error, botocore.exceptions.BotoCoreError | aiohttp.ClientError)


class ObjectStore(Store):
    """A bucket (and key prefix) of an S3-compatible object store, through s3fs.

    ``options`` are s3fs's: ``endpoint_url``, ``key``, ``secret``, ``client_kwargs`` (region).
    A published tree is uploaded file by file; callers make it visible by recording its key
    in the database afterwards (objects are written whole, so no reader sees a partial file).
    Picklable: the s3fs client is made again in each process.
    """

    def __init__(self, url: str, options: dict | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3://bucket[/prefix] URL: {url!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.options = dict(options or {})
        self._fs = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fs": None}

    @property
    def fs(self):
        if self._fs is None:
            import s3fs
            options = dict(self.options)
            options["config_kwargs"] = {**CLIENT_CONFIG, **options.get("config_kwargs", {})}
            self._fs = s3fs.S3FileSystem(**options)
        return self._fs

    def _path(self, key: str) -> str:
        return "/".join(part for part in (self.bucket, self.prefix, key) if part)

    @_reachable
    def size(self, key: str) -> int:
        return int(self.fs.size(self._path(key)))

    @_reachable
    def stamp(self, key: str) -> tuple:
        info = self.fs.info(self._path(key))
        return str(info.get("ETag") or ""), str(info.get("LastModified") or "")

    @_reachable
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return self.fs.cat_file(self._path(key), start=offset, end=offset + length)

    @_reachable
    def open_read(self, key: str) -> IO[bytes]:
        return self.fs.open(self._path(key), "rb", block_size=COPY_BYTES, cache_type="readahead")

    @_reachable
    def _info(self, key: str) -> dict | None:
        """The object's or prefix's metadata, None if nothing is there (s3fs's isfile/isdir would
        also answer False when the store is down)."""
        path = self._path(key)
        self.fs.invalidate_cache(path)
        try:
            return self.fs.info(path)
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        """One request: an object or a prefix with objects under it."""
        return self._info(key) is not None

    def is_file(self, key: str) -> bool:
        info = self._info(key) if key else None
        return info is not None and info.get("type") != "directory"

    def is_dir(self, key: str) -> bool:
        info = self._info(key)
        return info is not None and info.get("type") == "directory"

    @_reachable
    def list_files(self, key: str) -> list[tuple[str, int]]:
        root = self._path(key)
        self.fs.invalidate_cache(root)
        found = self.fs.find(root, detail=True)
        return sorted((posixpath.relpath(path, root), int(info.get("size") or 0))
                      for path, info in found.items() if info.get("type") != "directory")

    @_reachable
    def put_file(self, local: Path, key: str) -> None:
        self.fs.put_file(str(local), self._path(key))

    @_reachable
    def put_tree(self, local: Path, key: str) -> None:
        """Upload every file under ``local`` to ``key``/; FileExistsError if anything is there."""
        if self.is_dir(key):
            raise FileExistsError(f"{self.url}/{key} already exists")
        files = sorted(p for p in Path(local).rglob("*") if p.is_file())
        target = self._path(key)
        try:
            self.fs.put([str(p) for p in files],
                        [f"{target}/{p.relative_to(local).as_posix()}" for p in files])
        except BaseException:
            self.delete(key)
            raise
        shutil.rmtree(local, ignore_errors=True)

    @_reachable
    def delete(self, key: str) -> None:
        if not key:
            raise ValueError("refusing to delete the whole store")
        path = self._path(key)
        try:
            if self.fs.isdir(path):
                self.fs.rm(path, recursive=True)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        self.fs.invalidate_cache(path)

    def zarr_store(self, key: str) -> Any:
        import zarr.storage
        return zarr.storage.FsspecStore.from_url(f"s3://{self._path(key)}",
                                                 storage_options=self.options, read_only=True)
