"""Image stacks: a folder or zip of TIFF/PNG/JPEG slices, in natural name order, as one volume."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy

from tiler.errors import CorruptImage, TilerError, UnsupportedFormat
from tiler.readers.slices import (
    HEAD_BYTES,
    IMAGE_KINDS,
    PlainSlice,
    plain_tiff_slice,
    probe_slice,
    read_plain_slice,
    read_slice,
    slice_kind,
)
from tiler.readers.volume_base import VolumeSource, check_volume_dtype, check_volume_limit
from tiler.safe_archive import FileCollection, Member, ZipFiles, open_collection

__all__ = ["SNIFF_MEMBERS", "StackReader", "classify_collection"]

#: How many files of a folder or zip are looked at to tell a DICOM series from a stack.
SNIFF_MEMBERS = 64


def classify_collection(files: FileCollection, limit: int | None = SNIFF_MEMBERS
                        ) -> list[tuple[Member, str]]:
    """(member, kind) in name order, kind "DICOM", "TIFF", "PNG" or "JPEG" from first bytes.

    Members of other kinds are left out; only the first ``limit`` members are looked at.
    """
    found = []
    for member in files.members[:limit]:
        kind = slice_kind(files.read_bytes(member, HEAD_BYTES))
        if kind:
            found.append((member, kind))
    return found


class StackReader(VolumeSource):
    """A folder or zip of 2D slices of one shape and type; slice n is z = n in natural order.

    "slice2" comes before "slice10"; files that are not TIFF/PNG/JPEG images (notes, logs,
    hidden files) are skipped.  Every slice's header is checked when the stack is opened, so a
    slice of another shape or type is reported at once, by name.  TIFF slices in a folder are
    read region by region (uncompressed grey ones straight from the file into the block: their
    layout is found, and checked, when the stack is opened); PNG/JPEG slices and zip members
    are decoded whole for each read.
    """

    format_name: ClassVar[str] = "STACK"

    @classmethod
    def sniff_path(cls, path: str, head: bytes) -> str | None:
        """"STACK" for a folder, "ZIP-STACK" for a zip, of image slices (and no DICOM)."""
        if not (os.path.isdir(path) or head[:4] in (b"PK\x03\x04", b"PK\x05\x06")):
            return None
        with open_collection(path, max_pixels=1 << 62) as files:
            kinds = {kind for _, kind in classify_collection(files)}
        if "DICOM" in kinds or not kinds:
            return None
        return "ZIP-STACK" if head[:2] == b"PK" else "STACK"

    def __init__(self, path: str | os.PathLike, *, max_pixels: int) -> None:
        self.path = os.fspath(path)
        self._files = open_collection(self.path, max_pixels=max_pixels)
        try:
            self._open(max_pixels)
        except BaseException:
            self._files.close()
            raise

    def _open(self, max_pixels: int) -> None:
        files = self._files
        if isinstance(files, ZipFiles):
            self.format_name = "ZIP-STACK"  # type: ignore[misc]
        self._slices = [(member, kind) for member, kind in classify_collection(files, None)
                        if kind in IMAGE_KINDS]
        if not self._slices:
            what = "is empty" if not files.members else (
                f"holds no {', '.join(IMAGE_KINDS)} slices (e.g. {files.members[0].name!r})")
            raise UnsupportedFormat(f"the {files.kind} {what}")
        self._max_pixels = max_pixels
        first_member, first_kind = self._slices[0]
        first = probe_slice(files, first_member, first_kind, max_pixels)
        channels, height, width = first.shape
        self._plain: list[PlainSlice | None] = []
        for index, (member, kind) in enumerate(self._slices):
            path = files.local_path(member) if kind == "TIFF" and channels == 1 else None
            plain = plain_tiff_slice(path, height, width, first.dtype) if path else None
            self._plain.append(plain)
            if plain is not None or index == 0:  # plain: of the first slice's size and type
                continue
            info = probe_slice(files, member, kind, max_pixels)
            if info.shape != first.shape or info.dtype != first.dtype:
                raise CorruptImage(
                    f"slice {member.name!r} is {_describe(info.shape, info.dtype)} but the first "
                    f"slice {first_member.name!r} is {_describe(first.shape, first.dtype)}; all "
                    "slices of a stack must have the same size and pixel type"
                )
        check_volume_limit(len(self._slices), height, width, max_pixels)
        self.dtype = check_volume_dtype(first.dtype, f"{first_kind} slice")
        self.shape = (channels, len(self._slices), height, width)
        self.channel_names = list(first.channel_names)
        self.unit = first.unit
        # z spacing is unknown for plain slices: assumed equal to the x pixel size
        self.voxel_size = None if first.pixel_size is None else (
            first.pixel_size[1], *first.pixel_size)
        self.metadata = {}
        self.random_access = first_kind == "TIFF" and not isinstance(files, ZipFiles)
        self.whole_rows = self.random_access  # strips and plain rows: cheapest read whole

    @property
    def slice_names(self) -> list[str]:
        """Names of the slices in z order."""
        return [member.name for member, _ in self._slices]

    def _read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        block = numpy.empty((self.shape[0], z1 - z0, y1 - y0, x1 - x0), dtype=self.dtype)
        for z in range(z0, z1):
            member, kind = self._slices[z]
            plain = self._plain[z]
            if plain is not None:
                try:
                    read_plain_slice(self._files.local_path(member), plain,  # type: ignore
                                     y0, y1, x0, x1, block[0, z - z0])
                except OSError as error:
                    raise CorruptImage(f"slice {member.name!r}: {error}") from error
                except CorruptImage as error:
                    raise CorruptImage(f"slice {member.name!r} {error}") from error
                continue
            try:
                block[:, z - z0] = read_slice(self._files, member, kind, self._max_pixels,
                                              y0, y1, x0, x1)
            except TilerError:
                raise
            except (ValueError, TypeError) as error:  # e.g. a slice with other channels
                raise CorruptImage(f"slice {member.name!r} does not match the first slice: "
                                   f"{error}") from error
        return block

    def close(self) -> None:
        files = getattr(self, "_files", None)
        if files is not None:
            files.close()


def _describe(shape: tuple[int, int, int], dtype: numpy.dtype) -> str:
    channels, height, width = shape
    extra = f" x {channels} channels" if channels > 1 else ""
    return f"{width} x {height}{extra} {numpy.dtype(dtype).name}"
