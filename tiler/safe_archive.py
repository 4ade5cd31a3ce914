"""Folders and zip archives of slices, listed safely: no escaping paths, symlinks or zip bombs."""

from __future__ import annotations

import abc
import os
import re
import shutil
import stat
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tiler.errors import CorruptImage, ImageTooLarge, UnsupportedFormat
from tiler.readers.volume_base import MAX_SLICES, natural_sort_key

__all__ = [
    "MAX_COMPRESSION_RATIO",
    "ZIP_MAGIC",
    "FileCollection",
    "FolderFiles",
    "Member",
    "SingleFile",
    "UnsafeArchive",
    "ZipFiles",
    "check_folder_links",
    "is_zip",
    "member_byte_limit",
    "open_collection",
]

#: Local-file-header signature every zip archive starts with (an empty zip starts "PK\\x05\\x06").
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: Largest uncompressed/compressed ratio a zip member may have (deflate cannot exceed ~1032).
MAX_COMPRESSION_RATIO = 2000
#: Members smaller than this are never refused for their ratio.
RATIO_CHECK_MIN_BYTES = 1 << 20
#: Most bytes one voxel may take (4 channels of float64), used to bound zip member sizes.
MAX_BYTES_PER_VOXEL = 32
#: Bytes allowed on top of the pixels for a slice file's headers and metadata.
HEADER_ALLOWANCE = 1 << 20
#: Most files a folder or zip may list (slices plus a few side files).
MAX_MEMBERS = 2 * MAX_SLICES
#: Bytes copied at a time when a member is unpacked to a file.
COPY_BYTES = 1 << 22
#: File and folder names skipped as operating-system litter.
JUNK_NAMES = {"thumbs.db", "desktop.ini", "__macosx"}


class UnsafeArchive(CorruptImage):
    """A zip or folder whose entries point outside it (``../``, absolute paths, symlinks)."""


def member_byte_limit(max_pixels: int) -> int:
    """Largest uncompressed size a slice file may declare, from the pixel limit of one plane."""
    return int(max_pixels) * MAX_BYTES_PER_VOXEL + HEADER_ALLOWANCE


def is_zip(header: bytes) -> bool:
    """True when ``header`` (a file's first bytes) starts like a zip archive."""
    return header[:4] in ZIP_MAGIC


@dataclass(frozen=True)
class Member:
    """One regular file in a folder or zip: its relative name ("/"-separated) and size."""

    name: str
    size: int


def _is_junk(name: str) -> bool:
    """Hidden files (".DS_Store", "._x") and OS litter, anywhere in the path."""
    return any((part.startswith(".") and part != ".") or part.lower() in JUNK_NAMES
               for part in name.split("/"))


class FileCollection(abc.ABC):
    """The regular files of a folder or zip archive in natural name order, read on demand."""

    #: "folder" or "zip archive", for messages.
    kind: str = ""
    members: list[Member]

    @abc.abstractmethod
    def read_bytes(self, member: Member, limit: int | None = None) -> bytes:
        """The first ``limit`` bytes of ``member`` (all of it when None)."""

    def local_path(self, member: Member) -> str | None:
        """A file-system path for ``member`` when it has one (folders), else None."""
        return None

    def copy_member(self, member: Member, target: BinaryIO) -> None:
        """Write all of ``member`` to the open file ``target``."""
        target.write(self.read_bytes(member))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the archive."""

    def __enter__(self) -> FileCollection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class FolderFiles(FileCollection):
    """Files under a folder (recursively); symlinks that lead outside the folder are refused."""

    kind = "folder"

    def __init__(self, path: str | os.PathLike) -> None:
        self.root = Path(path).resolve()
        members = []
        for folder, dirnames, filenames in os.walk(self.root, followlinks=False):
            for name in sorted(dirnames) + sorted(filenames):
                entry = Path(folder) / name
                relative = entry.relative_to(self.root).as_posix()
                if entry.is_symlink():
                    self._check_link(entry, relative)
                    if name in dirnames:
                        continue  # a link to a folder inside: its files are listed anyway
                if name in dirnames or _is_junk(relative):
                    continue
                try:
                    info = entry.stat()
                except OSError:  # a dangling link
                    continue
                if stat.S_ISREG(info.st_mode):
                    members.append(Member(relative, info.st_size))
                if len(members) > MAX_MEMBERS:
                    raise ImageTooLarge(f"the folder holds more than {MAX_MEMBERS} files")
        self.members = sorted(members, key=lambda m: natural_sort_key(m.name))

    def _check_link(self, entry: Path, relative: str) -> None:
        target = Path(os.path.realpath(entry))
        if target != self.root and self.root not in target.parents:
            raise UnsafeArchive(
                f"the folder holds a symbolic link {relative!r} that points outside it; "
                "copy the files themselves instead"
            )

    def local_path(self, member: Member) -> str | None:
        return str(self.root / member.name)

    def read_bytes(self, member: Member, limit: int | None = None) -> bytes:
        with open(self.root / member.name, "rb") as handle:
            return handle.read(-1 if limit is None else limit)


class ZipFiles(FileCollection):
    """Members of a zip archive, checked before anything is decompressed and read lazily.

    Refused: entries with ``..`` or absolute paths, symbolic links, duplicate names,
    overlapping entries (a classic zip-bomb trick), encrypted members, and members declaring
    more than ``max_member_bytes`` or a compression ratio above MAX_COMPRESSION_RATIO.
    Members are decompressed one at a time, in memory, never extracted to disk.
    """

    kind = "zip archive"

    def __init__(self, path: str | os.PathLike, *, max_member_bytes: int) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        try:
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise CorruptImage(f"cannot read the zip archive: {error}") from error
        try:
            self._infos = self._check_entries(self._zip, max_member_bytes)
        except BaseException:
            self.close()
            raise
        self.members = sorted((Member(info.filename, info.file_size)
                               for info in self._infos.values()),
                              key=lambda m: natural_sort_key(m.name))

    @staticmethod
    def _check_entries(archive: zipfile.ZipFile, max_member_bytes: int
                       ) -> dict[str, zipfile.ZipInfo]:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ImageTooLarge(f"the zip archive lists more than {MAX_MEMBERS} entries")
        kept: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            parts = re.split(r"[\\/]", name)
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
                raise UnsafeArchive(f"the zip entry {name!r} has an absolute path")
            if ".." in parts:
                raise UnsafeArchive(f"the zip entry {name!r} points outside the archive (..)")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchive(f"the zip entry {name!r} is a symbolic link")
            if info.is_dir() or _is_junk(name.rstrip("/")):
                continue
            if name in kept:
                raise UnsafeArchive(f"the zip entry {name!r} appears more than once")
            if info.flag_bits & 0x1:
                raise UnsupportedFormat(f"the zip entry {name!r} is encrypted")
            if info.file_size > max_member_bytes:
                raise ImageTooLarge(
                    f"the zip entry {name!r} unpacks to {info.file_size} bytes, more than the "
                    f"{max_member_bytes} bytes a slice may take (TILESCOPE_MAX_IMAGE_PIXELS)"
                )
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
                raise ImageTooLarge(
                    f"the zip entry {name!r} is compressed {ratio:.0f}:1 (limit "
                    f"{MAX_COMPRESSION_RATIO}:1); this looks like a zip bomb"
                )
            kept[name] = info
        _check_no_overlap(archive, infos)
        return kept

    def read_bytes(self, member: Member, limit: int | None = None) -> bytes:
        if self._zip is None:
            raise ValueError("zip archive is closed")
        info = self._infos[member.name]
        try:
            with self._lock:  # ZipFile's open/close bookkeeping is not thread-safe
                handle = self._zip.open(info)
            try:
                return handle.read(-1 if limit is None else limit)
            finally:
                with self._lock:
                    handle.close()
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            raise CorruptImage(f"cannot unpack zip entry {member.name!r}: {error}") from error
        except NotImplementedError as error:
            raise UnsupportedFormat(f"zip entry {member.name!r}: {error}") from error

    def copy_member(self, member: Member, target: BinaryIO) -> None:
        """Stream ``member`` into ``target`` in pieces (never whole in memory)."""
        if self._zip is None:
            raise ValueError("zip archive is closed")
        try:
            with self._lock:
                handle = self._zip.open(self._infos[member.name])
            try:
                shutil.copyfileobj(handle, target, COPY_BYTES)
            finally:
                with self._lock:
                    handle.close()
        except (zipfile.BadZipFile, EOFError, ValueError) as error:
            raise CorruptImage(f"cannot unpack zip entry {member.name!r}: {error}") from error

    def close(self) -> None:
        archive, self._zip = getattr(self, "_zip", None), None
        if archive is not None:
            archive.close()


def _check_no_overlap(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse entries whose compressed data overlap (one stream unpacked many times)."""
    ordered = sorted(infos, key=lambda info: info.header_offset)
    ends = [info.header_offset for info in ordered[1:]] + [archive.start_dir]
    for info, next_start in zip(ordered, ends, strict=True):
        if info.header_offset + 30 + info.compress_size > next_start:
            raise UnsafeArchive(
                f"the zip entry {info.filename!r} overlaps another entry; this looks like a "
                "zip bomb"
            )


def check_folder_links(path: str | os.PathLike) -> None:
    """Raise UnsafeArchive when any symbolic link under the folder points outside it."""
    root = Path(path).resolve()
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            entry = os.path.join(folder, name)
            if os.path.islink(entry):
                target = Path(os.path.realpath(entry))
                if target != root and root not in target.parents:
                    relative = Path(entry).relative_to(root).as_posix()
                    raise UnsafeArchive(
                        f"the folder holds a symbolic link {relative!r} that points outside it; "
                        "copy the files themselves instead"
                    )


def open_collection(path: str | os.PathLike, *, max_pixels: int) -> FileCollection:
    """The files of the folder or zip archive at ``path`` (UnsupportedFormat for other files)."""
    if os.path.isdir(path):
        return FolderFiles(path)
    with open(path, "rb") as handle:
        header = handle.read(4)
    if not is_zip(header):
        raise UnsupportedFormat(f"{os.fspath(path)!r} is neither a folder nor a zip archive")
    return ZipFiles(path, max_member_bytes=member_byte_limit(max_pixels))


class SingleFile(FileCollection):
    """One file, seen as a collection of one member (a lone DICOM file, for instance)."""

    kind = "file"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.members = [Member(self.path.name, self.path.stat().st_size)]

    def local_path(self, member: Member) -> str | None:
        return str(self.path)

    def read_bytes(self, member: Member, limit: int | None = None) -> bytes:
        with open(self.path, "rb") as handle:
            return handle.read(-1 if limit is None else limit)
