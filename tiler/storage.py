"""Where files live, addressed by URL: a local folder or an S3-compatible bucket (``s3://bucket/prefix``)."""

from __future__ import annotations

import os
import posixpath
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit


__all__ = ["Location", "LocalStore", "Store", "as_location", "iter_chunks", "open_store"]

#: Bytes copied at a time between files and stores.
COPY_BYTES = 8 << 20

class Store:
    """A root under which files are named by '/'-separated keys; see LocalStore and ObjectStore."""

    url: str
    is_local = False

    def location(self, key: str = "") -> Location:
        return Location(self, _clean_key(key))

    # The operations below take a clean key (no leading '/', no '.' or '..' parts).
    def size(self, key: str) -> int: raise NotImplementedError
    def stamp(self, key: str) -> tuple: raise NotImplementedError
    def read_range(self, key: str, offset: int, length: int) -> bytes: raise NotImplementedError
    def open_read(self, key: str) -> IO[bytes]: raise NotImplementedError
    def is_file(self, key: str) -> bool: raise NotImplementedError
    def is_dir(self, key: str) -> bool: raise NotImplementedError

    def exists(self, key: str) -> bool:
        return self.is_file(key) or self.is_dir(key)

    def list_files(self, key: str) -> list[tuple[str, int]]: raise NotImplementedError
    def put_file(self, local: Path, key: str) -> None: raise NotImplementedError
    def put_tree(self, local: Path, key: str) -> None: raise NotImplementedError
    def delete(self, key: str) -> None: raise NotImplementedError
    def zarr_store(self, key: str) -> Any: raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class LocalStore(Store):
    """A folder on a local or mounted (NFS, CephFS) filesystem; publishing is a rename."""

    is_local = True

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def stamp(self, key: str) -> tuple:
        info = self.path(key).stat()
        return info.st_ino, info.st_mtime_ns

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        fd = os.open(self.path(key), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def open_read(self, key: str) -> IO[bytes]:
        return open(self.path(key), "rb")

    def is_file(self, key: str) -> bool:
        return self.path(key).is_file()

    def is_dir(self, key: str) -> bool:
        return self.path(key).is_dir()

    def list_files(self, key: str) -> list[tuple[str, int]]:
        root = self.path(key)
        return sorted((p.relative_to(root).as_posix(), p.stat().st_size)
                      for p in root.rglob("*") if p.is_file())

    def put_file(self, local: Path, key: str) -> None:
        """Copy ``local`` to ``key`` through a hidden temporary name, fsync'd, then renamed."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.partial-{secrets.token_hex(6)}")
        try:
            with open(local, "rb") as source, open(temp, "xb") as out:
                shutil.copyfileobj(source, out, COPY_BYTES)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def put_tree(self, local: Path, key: str) -> None:
        """Move the folder ``local`` to ``key`` with one rename (copy + rename across filesystems)."""
        target = self.path(key)
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(local, target)
        except OSError as error:
            if error.errno != 18:  # EXDEV: another filesystem; copy beside the target, then rename
                raise
            temp = target.with_name(f".{target.name}.partial-{secrets.token_hex(6)}")
            try:
                shutil.copytree(local, temp)
                os.rename(temp, target)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
            shutil.rmtree(local, ignore_errors=True)

    def delete(self, key: str) -> None:
        if not key:
            raise ValueError("refusing to delete the whole store")
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def zarr_store(self, key: str) -> Any:
        import zarr.storage
        return zarr.storage.LocalStore(self.path(key), read_only=True)


class Location:
    """A file or folder in a store: ``store`` plus a '/'-separated ``key``; hashable by URL."""

    __slots__ = ("store", "key")

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key = store, key

    def __truediv__(self, name: str) -> Location:
        return Location(self.store, _clean_key(f"{self.key}/{name}" if self.key else name))

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def url(self) -> str:
        return f"{self.store.url}/{self.key}" if self.key else self.store.url

    @property
    def local_path(self) -> Path | None:
        """The file's path when the store is a local folder, else None."""
        return self.store.path(self.key) if isinstance(self.store, LocalStore) else None

    def size(self) -> int:
        return self.store.size(self.key)

    def stamp(self) -> tuple:
        """What changes when the file is replaced (inode and mtime; ETag in object stores)."""
        return self.store.stamp(self.key)

    def read_range(self, offset: int, length: int) -> bytes:
        return self.store.read_range(self.key, offset, length)

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    def open(self) -> IO[bytes]:
        """The file for reading, streamed (FileNotFoundError if absent)."""
        return self.store.open_read(self.key)

    def exists(self) -> bool:
        return self.store.exists(self.key)

    def is_file(self) -> bool:
        return self.store.is_file(self.key)

    def is_dir(self) -> bool:
        return self.store.is_dir(self.key)

    def files(self) -> list[tuple[str, int]]:
        """(relative key, size) of every file under this folder, sorted by key."""
        return self.store.list_files(self.key)

    def put_file(self, local: str | os.PathLike) -> None:
        """Store a copy of the local file here, replacing it whole (never partly written)."""
        self.store.put_file(Path(local), self.key)

    def publish_tree(self, local: str | os.PathLike) -> None:
        """Move the finished local folder here (FileExistsError if something is already here)."""
        self.store.put_tree(Path(local), self.key)

    def delete(self) -> None:
        """Remove this file or folder (nothing if absent)."""
        self.store.delete(self.key)

    def zarr_store(self) -> Any:
        """A read-only zarr v3 store rooted here."""
        return self.store.zarr_store(self.key)

    def copy_to(self, local: str | os.PathLike) -> Path:
        """Stream this file to the local path ``local`` (through a temporary name); returns it."""
        local = Path(local)
        temp = local.with_name(f".{local.name}.partial-{secrets.token_hex(6)}")
        try:
            with self.open() as source, open(temp, "xb") as out:
                shutil.copyfileobj(source, out, COPY_BYTES)
            os.replace(temp, local)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return local

    def __fspath__(self) -> str:
        path = self.local_path
        if path is None:
            raise TypeError(f"{self.url} is not on a local filesystem")
        return str(path)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def open_store(url: str | os.PathLike, options: dict | None = None) -> Store:
    """The store at ``url``: ``s3://bucket/prefix``, ``file:///path`` or a plain local path."""
    text = os.fspath(url)
    scheme = urlsplit(text).scheme
    if scheme == "s3":
        from tiler.object_store import ObjectStore  # s3fs and botocore load only for S3 installations

        return ObjectStore(text, options)
    if scheme == "file":
        return LocalStore(urlsplit(text).path)
    if scheme and len(scheme) > 1:
        raise ValueError(f"unsupported storage URL {text!r}: use a folder, file:///path or s3://bucket/prefix")
    return LocalStore(text)


def as_location(where: Location | str | os.PathLike) -> Location:
    """``where`` if it is a Location, else the local file or folder at that path."""
    if isinstance(where, Location):
        return where
    path = Path(where).resolve()
    return LocalStore(path.parent).location(path.name)


def _clean_key(key: str) -> str:
    """``key`` normalised, or ValueError if it is absolute or climbs out with '..'."""
    if key.startswith("/") or "\\" in key:
        raise ValueError(f"storage key {key!r} must be relative, with '/' separators")
    parts = [part for part in key.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"storage key {key!r} leaves its store")
    return "/".join(parts)


def iter_chunks(handle: IO[bytes], size: int = COPY_BYTES) -> Iterator[bytes]:
    """The bytes of an open file, ``size`` at a time."""
    while chunk := handle.read(size):
        yield chunk
