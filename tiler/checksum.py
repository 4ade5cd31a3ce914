"""SHA-256 checksums of one file or of a whole folder tree (names and contents), streamed, local or stored."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tiler.storage import Location

__all__ = ["CHUNK_BYTES", "file_sha256", "tree_checksum"]

#: Bytes read at a time while hashing.
CHUNK_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike | Location) -> str:
    """Hex SHA-256 of the bytes of the file at ``path``, read CHUNK_BYTES at a time."""
    digest = hashlib.sha256()
    with (path.open() if isinstance(path, Location) else open(path, "rb")) as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def tree_checksum(path: str | os.PathLike | Location) -> str:
    """Hex SHA-256 over every file under ``path``: for each file, sorted by its relative POSIX
    path, the path and the file's own SHA-256, one ``path\\0sha256\\n`` line each.

    A single file hashes as one entry named by its file name.  Two trees have the same checksum
    exactly when they hold the same files (names and bytes); folders themselves, timestamps and
    permissions do not count.  FileNotFoundError if ``path`` does not exist.
    """
    if isinstance(path, Location) and path.local_path is None:
        if path.is_file():
            entries = [(path.name, path)]
        elif path.is_dir():
            entries = [(name, path / name) for name, _ in path.files()]
        else:
            raise FileNotFoundError(f"nothing to checksum at {path}")
        return _digest(entries)
    root = Path(path)
    if root.is_file():
        entries = [(root.name, root)]
    elif root.is_dir():
        entries = sorted((entry.relative_to(root).as_posix(), entry)
                         for entry in root.rglob("*") if entry.is_file())
    else:
        raise FileNotFoundError(f"nothing to checksum at {root}")
    return _digest(entries)


def _digest(entries: list) -> str:
    digest = hashlib.sha256()
    for name, entry in entries:
        digest.update(f"{name}\0{file_sha256(entry)}\n".encode())
    return digest.hexdigest()
