"""One slice of a stack (a file in a folder or zip): its kind, shape and type, and its pixels."""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass

import numpy
import tifffile
from PIL import ImageFile, JpegImagePlugin, PngImagePlugin

from tiler.errors import CorruptImage, TilerError, UnsupportedFormat
from tiler.readers.base import ImageSource, check_pixel_limit, default_channel_names
from tiler.readers.pillow import _CONVERTED_MODES, _NATIVE_MODES, JpegReader, PngReader
from tiler.readers.tiff import TiffReader
from tiler.readers.tiff_stack import open_single_tiff
from tiler.readers.tiff_structure import check_ifd_chain
from tiler.safe_archive import FileCollection, Member

__all__ = ["HEAD_BYTES", "IMAGE_KINDS", "PlainSlice", "SliceInfo", "plain_tiff_slice",
           "probe_slice", "read_plain_slice", "read_slice", "slice_kind"]

#: Leading bytes that identify a slice's kind (a DICOM file's "DICM" sits at 128).
HEAD_BYTES = 132
#: Bytes read from a zip member to parse its header before falling back on the whole member.
PROBE_BYTES = 1 << 16
#: Slice kinds a stack may be made of, with the 2D reader that opens such a file by path.
IMAGE_KINDS: dict[str, type[ImageSource]] = {"TIFF": TiffReader, "PNG": PngReader,
                                             "JPEG": JpegReader}
_PILLOW_CLASSES: dict[str, type[ImageFile.ImageFile]] = {
    "PNG": PngImagePlugin.PngImageFile, "JPEG": JpegImagePlugin.JpegImageFile}
#: tifffile axes read as channels (as TiffReader does).
_CHANNEL_AXES = "SCQI"


def slice_kind(head: bytes) -> str | None:
    """"DICOM", "TIFF", "PNG" or "JPEG" from a file's first HEAD_BYTES bytes, else None."""
    if head[128:132] == b"DICM":
        return "DICOM"
    return next((kind for kind, reader in IMAGE_KINDS.items() if head and reader.sniff(head)),
                None)


@dataclass(frozen=True)
class SliceInfo:
    """Shape (c, y, x), dtype, channel names and physical pixel size of one slice."""

    shape: tuple[int, int, int]
    dtype: numpy.dtype
    channel_names: list[str]
    pixel_size: tuple[float, float] | None
    unit: str | None


def probe_slice(files: FileCollection, member: Member, kind: str, max_pixels: int) -> SliceInfo:
    """Read a slice's header (not its pixels) and describe it."""
    path = files.local_path(member)
    try:
        if path is not None:
            with IMAGE_KINDS[kind](path, max_pixels=max_pixels) as reader:
                return SliceInfo(reader.shape, reader.dtype, reader.channel_names,
                                 reader.pixel_size, reader.unit)
        head = files.read_bytes(member, PROBE_BYTES)
        try:
            return _decode_bytes(head, kind, max_pixels, header_only=True)  # type: ignore
        except TilerError:
            if len(head) >= member.size:
                raise
        except Exception:  # noqa: BLE001 - the header may lie beyond the probe: read it all
            pass
        return _decode_bytes(files.read_bytes(member), kind, max_pixels, header_only=True)
    except TilerError as error:
        raise type(error)(f"slice {member.name!r}: {error}") from error


def read_slice(files: FileCollection, member: Member, kind: str, max_pixels: int,
               y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
    """Pixels [y0:y1, x0:x1] of a slice as (c, h, w); only a TIFF in a folder is read partly."""
    path = files.local_path(member)
    try:
        if path is not None:
            with IMAGE_KINDS[kind](path, max_pixels=max_pixels) as reader:
                _, height, width = reader.shape
                if y1 > height or x1 > width:
                    raise CorruptImage(f"is {width} x {height} pixels, smaller than the first")
                return reader.read_region(y0, y1, x0, x1)
        pixels = _decode_bytes(files.read_bytes(member), kind, max_pixels, header_only=False)
        if y1 > pixels.shape[1] or x1 > pixels.shape[2]:  # type: ignore[union-attr]
            raise CorruptImage("is smaller than the first slice")
        return pixels[:, y0:y1, x0:x1]  # type: ignore[index]
    except TilerError as error:
        raise type(error)(f"slice {member.name!r}: {error}") from error


@dataclass(frozen=True)
class PlainSlice:
    """Where an uncompressed grey TIFF slice keeps its pixels: rows one after another."""

    offset: int
    dtype: numpy.dtype  # as stored, in the file's byte order
    height: int
    width: int


def plain_tiff_slice(path: str, height: int, width: int, dtype: numpy.dtype) -> PlainSlice | None:
    """The layout of a TIFF slice of this size and type stored uncompressed in one piece.

    None for anything else (compressed, tiled in pieces, several channels or pages, damaged):
    such slices go through the TIFF reader, which also says what is wrong with them.
    """
    try:
        check_ifd_chain(path)  # a damaged chain (e.g. a loop) must not reach tifffile
        with open_single_tiff(path) as tiff:
            series = tiff.series[0] if tiff.series else None
            if (series is None or series.dataoffset is None or series.axes != "YX"
                    or tuple(series.shape) != (height, width)):
                return None
            stored = numpy.dtype(series.dtype).newbyteorder(tiff.byteorder)
            end = series.dataoffset + height * width * stored.itemsize
            if (stored.kind not in "iuf" or stored.newbyteorder("=") != dtype
                    or end > os.path.getsize(path)):
                return None
            return PlainSlice(int(series.dataoffset), stored, height, width)
    except Exception:  # noqa: BLE001 - the TIFF reader reports the problem
        return None


def read_plain_slice(path: str, plain: PlainSlice, y0: int, y1: int, x0: int, x1: int,
                     out: numpy.ndarray) -> None:
    """Read pixels [y0:y1, x0:x1] of a plain slice into ``out`` (h, w, native byte order).

    Whole rows go straight from the file into ``out``; a narrower region reads its rows whole
    and copies its columns.
    """
    row_bytes = plain.width * plain.dtype.itemsize
    whole = x0 == 0 and x1 == plain.width and out.flags.c_contiguous
    target = out if whole else numpy.empty((y1 - y0, plain.width), dtype=out.dtype)
    view = memoryview(target).cast("B")  # type: ignore[arg-type]
    with open(path, "rb", buffering=0) as handle:
        handle.seek(plain.offset + y0 * row_bytes)
        done = 0
        while done < len(view):
            count = handle.readinto(view[done:])
            if not count:
                raise CorruptImage("is cut short: its pixel data ends before the last row")
            done += count
    if not plain.dtype.isnative:
        target.byteswap(inplace=True)
    if not whole:
        out[...] = target[:, x0:x1]


def _decode_bytes(data: bytes, kind: str, max_pixels: int, *,
                  header_only: bool) -> SliceInfo | numpy.ndarray:
    """Describe (``header_only``) or decode a slice held in memory."""
    if kind == "TIFF":
        return _decode_tiff(data, max_pixels, header_only)
    if kind in _PILLOW_CLASSES:
        return _decode_pillow(data, kind, max_pixels, header_only)
    raise UnsupportedFormat(f"{kind} slices are not supported")


def _decode_tiff(data: bytes, max_pixels: int, header_only: bool) -> SliceInfo | numpy.ndarray:
    try:
        with open_single_tiff(io.BytesIO(data)) as tiff:
            if not tiff.series:
                raise CorruptImage("the TIFF file contains no image")
            series = tiff.series[0]
            axes, shape = series.axes, tuple(series.shape)
            extra = [axis for axis in axes if axis not in "YX"]
            if "Y" not in axes or "X" not in axes or len(extra) > 1 or (
                    extra and extra[0] not in _CHANNEL_AXES):
                raise UnsupportedFormat(f"TIFF slice with axes {axes} is not a 2D image")
            height, width = shape[axes.index("Y")], shape[axes.index("X")]
            check_pixel_limit(height, width, max_pixels)
            count = shape[axes.index(extra[0])] if extra else 1
            rgb = series.keyframe.photometric == tifffile.PHOTOMETRIC.RGB and count in (3, 4)
            channels = 3 if rgb else count
            dtype = numpy.dtype(series.dtype).newbyteorder("=")
            if header_only:
                return SliceInfo((channels, height, width), dtype,
                                 default_channel_names(channels, rgb=rgb), None, None)
            pixels = series.asarray()
    except TilerError:
        raise
    except (tifffile.TiffFileError, ValueError, struct.error, EOFError, OSError, KeyError,
            IndexError) as error:
        raise CorruptImage(f"cannot read TIFF data: {error}") from error
    if not extra:
        pixels = pixels[numpy.newaxis]
    elif axes.index(extra[0]) == 2:  # interleaved samples (y, x, s)
        pixels = numpy.moveaxis(pixels, -1, 0)
    return numpy.ascontiguousarray(pixels[:channels], dtype=dtype)


def _decode_pillow(data: bytes, kind: str, max_pixels: int,
                   header_only: bool) -> SliceInfo | numpy.ndarray:
    try:
        image = _PILLOW_CLASSES[kind](io.BytesIO(data))
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptImage(f"cannot read {kind} header: {error}") from error
    with image:
        width, height = image.size
        check_pixel_limit(height, width, max_pixels)
        mode = _CONVERTED_MODES.get(image.mode, image.mode)
        if mode not in _NATIVE_MODES:
            raise UnsupportedFormat(f"{kind} pixel mode {image.mode!r} is not supported")
        channels = 3 if mode == "RGB" else 1
        dtype = numpy.dtype(_NATIVE_MODES[mode])
        if header_only:
            return SliceInfo((channels, height, width), dtype,
                             default_channel_names(channels, rgb=True), None, None)
        try:
            pixels = numpy.asarray(image.convert(mode) if image.mode != mode else image)
        except (OSError, SyntaxError, ValueError) as error:
            raise CorruptImage(f"cannot decode {kind} data: {error}") from error
    pixels = pixels[numpy.newaxis] if pixels.ndim == 2 else numpy.moveaxis(pixels, -1, 0)
    return numpy.ascontiguousarray(pixels, dtype=dtype)
