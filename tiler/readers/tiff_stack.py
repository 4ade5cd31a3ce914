"""Multi-page TIFF stacks (many same-shape pages, or ImageJ/OME Z) as one volume, read lazily."""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, ClassVar

import numpy
import tifffile
import zarr
from defusedxml import ElementTree

from tiler.errors import CorruptImage, TilerError, UnsupportedFormat
from tiler.ome_xml import UnsafeXml, parse_ome_xml
from tiler.readers.base import default_channel_names, pixel_size_from_resolution
from tiler.readers.tiff_segments import SegmentReader, SegmentTooLarge, segmented
from tiler.readers.tiff_structure import check_ifd_chain
from tiler.readers.volume_base import VolumeSource, check_volume_dtype, check_volume_limit

__all__ = ["MIN_STACK_PAGES", "TiffStackReader", "open_single_tiff", "stack_axes"]

#: Generic multi-page TIFFs with more pages than this are stacks (fewer are channels).
MIN_STACK_PAGES = 33
#: tifffile axis letters that may be a stack's depth, best first.
DEPTH_AXES = "ZQI"
#: ImageJ / OME unit spellings and the OME-NGFF names they stand for.
UNITS = {"micron": "micrometer", "um": "micrometer", "\u00b5m": "micrometer",
         "nm": "nanometer", "mm": "millimeter", "cm": "centimeter"}
_TIFF_ERRORS = (tifffile.TiffFileError, ValueError, struct.error, EOFError, OSError, KeyError,
                IndexError, TypeError)


def open_single_tiff(file: str | BinaryIO) -> tifffile.TiffFile:
    """Open a TIFF that tifffile must read on its own: never another file named in its OME-XML.

    The OME-XML is checked with defusedxml before tifffile parses it (with plain xml.etree):
    a DTD or entities raise UnsafeXml, XML that is not well-formed makes the file be read as
    plain TIFF, and OME data spread over other files is refused with UnsupportedFormat.
    ``file`` may be a path or be a seekable binary stream positioned at the TIFF's first byte.
    """
    start = None if isinstance(file, str) else file.tell()
    tiff = tifffile.TiffFile(file, _multifile=False)
    try:
        if not tiff.is_ome:
            return tiff
        try:
            metadata = parse_ome_xml(tiff.pages.first.description)
        except UnsafeXml:
            raise
        except CorruptImage:
            tiff.close()
            if start is not None:
                file.seek(start)  # type: ignore[union-attr]
            tiff = tifffile.TiffFile(file, _multifile=False, is_ome=False)
            return tiff
        if metadata.other_files:
            raise UnsupportedFormat(
                f"this OME-TIFF is one part of a dataset spread over {metadata.other_files + 1} "
                "files; only single-file OME-TIFFs are supported"
            )
        return tiff
    except BaseException:
        tiff.close()
        raise


def stack_axes(series: tifffile.TiffPageSeries) -> tuple[str, str | None] | None:
    """(depth axis, channel axis or None) when ``series`` is a stack, else None.

    A stack has a Z axis (ImageJ hyperstacks, OME-TIFF) or, in a generic file, at least
    MIN_STACK_PAGES pages of one shape; besides Y and X it may have one channel axis (C or S).
    """
    axes, shape = series.axes, series.shape
    if "Y" not in axes or "X" not in axes:
        return None
    rest = {axis: shape[axes.index(axis)] for axis in axes if axis not in "YX"}
    depth = next((axis for axis in DEPTH_AXES if axis in rest), None)
    if depth is None or (depth != "Z" and rest[depth] < MIN_STACK_PAGES):
        return None
    others = [axis for axis in rest if axis != depth and rest[axis] > 1]
    if len(others) > 1 or (others and others[0] not in "CS"):
        return None
    return depth, (others[0] if others else None)


class TiffStackReader(VolumeSource):
    """The first series of a multi-page TIFF as a (c, z, y, x) volume, read page by page.

    Only the pages (and strips or tiles) a block needs are decoded, in the calling thread by
    SegmentReader (tifffile's zarr store for layouts it does not read); uncompressed
    contiguous stacks are memory-mapped instead.
    """

    format_name: ClassVar[str] = "TIFF-STACK"
    #: Strips span whole rows, and so do memory-mapped rows: the writer reads the full width.
    whole_rows = True

    @classmethod
    def sniff_path(cls, path: str, head: bytes) -> str | None:
        if head[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") or os.path.isdir(path):
            return None
        try:
            check_ifd_chain(path)  # a damaged chain (e.g. a loop) must not reach tifffile
            with open_single_tiff(path) as tiff:
                return cls.format_name if tiff.series and stack_axes(tiff.series[0]) else None
        except Exception:  # noqa: BLE001 - not readable as a stack: the 2D reader reports why
            return None

    def __init__(self, path: str | os.PathLike, *, max_pixels: int) -> None:
        self.path = os.fspath(path)
        self._store = self._array = self._mapping = self._pages = None
        check_ifd_chain(self.path)
        try:
            self._tiff = open_single_tiff(self.path)
        except TilerError:
            raise
        except _TIFF_ERRORS as error:
            raise CorruptImage(f"cannot read TIFF structure: {error}") from error
        try:
            self._open(max_pixels)
        except TilerError:
            self.close()
            raise
        except _TIFF_ERRORS as error:
            self.close()
            reason = f"{type(error).__name__}: {error}"
            raise CorruptImage(f"cannot read TIFF stack: {reason}") from error

    def _open(self, max_pixels: int) -> None:
        series = self._tiff.series[0] if self._tiff.series else None
        layout = stack_axes(series) if series is not None else None
        if layout is None:
            raise UnsupportedFormat("the TIFF file is not a stack of same-size pages")
        depth_axis, channel_axis = layout
        axes, shape = series.axes, tuple(series.shape)
        size = {axis: shape[axes.index(axis)] for axis in axes}
        check_volume_limit(size[depth_axis], size["Y"], size["X"], max_pixels)
        dtype = check_volume_dtype(series.dtype, "TIFF")
        _check_in_file(series, os.path.getsize(self.path))
        channels = size[channel_axis] if channel_axis else 1
        rgb = series.keyframe.photometric == tifffile.PHOTOMETRIC.RGB and channels in (3, 4)
        self._channels = 3 if rgb else channels
        self._axes, self._depth_axis, self._channel_axis = axes, depth_axis, channel_axis
        self.dtype = dtype
        self.shape = (self._channels, size[depth_axis], size["Y"], size["X"])
        self.channel_names = default_channel_names(self._channels, rgb=rgb)
        self.voxel_size, self.unit = _voxel_size(self._tiff, series)
        self.metadata = {}
        if series.dataoffset is not None:  # uncompressed and contiguous: map, decode nothing
            self._mapping = {"dtype": numpy.dtype(series.dtype).newbyteorder(self._tiff.byteorder),
                             "offset": series.dataoffset, "shape": shape}
            return
        self._pages = _segment_pages(self.path, series, depth_axis)
        if self._pages is None:  # a layout SegmentReader does not read
            self._store = series.aszarr(level=0, maxworkers=1)
            self._array = zarr.open_array(self._store, mode="r", zarr_format=2)

    def _read_block(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        bounds = {self._depth_axis: slice(z0, z1), "Y": slice(y0, y1), "X": slice(x0, x1)}
        if self._channel_axis:
            bounds[self._channel_axis] = slice(0, self._channels)
        selection = tuple(bounds.get(axis, 0) for axis in self._axes)  # size-1 axes: index 0
        if self._pages is not None:
            return self._read_segments(z0, z1, y0, y1, x0, x1)
        try:
            if self._mapping is not None:
                mapped = numpy.memmap(self.path, mode="r", **self._mapping)
                block = numpy.array(mapped[selection])
                del mapped
            elif self._array is not None:
                block = numpy.asarray(self._array[selection])
            else:
                raise ValueError("reader is closed")
        except TilerError:
            raise
        except Exception as error:  # whatever the decoder says, the file is at fault
            raise CorruptImage(f"cannot decode TIFF stack pages {z0}:{z1}: "
                               f"{type(error).__name__}: {error}") from error
        kept = [axis for axis in self._axes if axis in bounds]
        order = ([kept.index(self._channel_axis)] if self._channel_axis else []) + [
            kept.index(axis) for axis in (self._depth_axis, "Y", "X")]
        block = block.transpose(order)
        if not self._channel_axis:
            block = block[numpy.newaxis]
        return numpy.ascontiguousarray(block, dtype=self.dtype)

    def _read_segments(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int
                       ) -> numpy.ndarray:
        """Decode just the strips or tiles of pages z0:z1 the block needs, in this thread."""
        reader = SegmentReader(self.path, self._pages[z0:z1])  # type: ignore[index]
        try:
            block = reader.read(y0, y1, x0, x1)  # (z, h, w, samples)
        except Exception as error:  # whatever the decoder says, the file is at fault
            raise CorruptImage(f"cannot decode TIFF stack pages {z0}:{z1}: "
                               f"{type(error).__name__}: {error}") from error
        finally:
            reader.close()
        return numpy.ascontiguousarray(block.transpose(3, 0, 1, 2)[:self._channels])

    def close(self) -> None:
        self._array = self._mapping = self._pages = None
        store, self._store = getattr(self, "_store", None), None
        if store is not None:
            store.close()
        tiff, self._tiff = getattr(self, "_tiff", None), None
        if tiff is not None:
            tiff.close()


def _segment_pages(path: str, series: tifffile.TiffPageSeries, depth_axis: str) -> list | None:
    """The pages, one per slice, when SegmentReader can decode them piece by piece, else None.

    That is one page per z (grey or interleaved samples), in strips or tiles small enough.
    """
    if series.axes not in (f"{depth_axis}YX", f"{depth_axis}YXS") or not segmented(series):
        return None
    pages = list(series.pages)
    try:
        SegmentReader(path, pages[:1]).close()
    except SegmentTooLarge:  # one strip per page: the zarr store decodes pages whole
        return None
    return pages


def _check_in_file(series: tifffile.TiffPageSeries, file_size: int) -> None:
    """CorruptImage when image data lies past the end of the file (a truncated stack)."""
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
    else:
        end = max((offset + count for page in series.pages if page is not None
                   for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False)
                   if offset and count), default=0)
    if end > file_size:
        raise CorruptImage(f"the TIFF file is truncated: image data runs to byte {end} but the "
                           f"file has only {file_size} bytes")


def _voxel_size(tiff: tifffile.TiffFile, series: tifffile.TiffPageSeries
                ) -> tuple[tuple[float, float, float] | None, str | None]:
    """(z, y, x) voxel size from OME-XML, or ImageJ spacing and resolution tags."""
    if tiff.is_ome and tiff.ome_metadata:
        try:
            pixels = next(element for element in ElementTree.fromstring(tiff.ome_metadata).iter()
                          if element.tag.endswith("}Pixels") or element.tag == "Pixels")
            sizes = [float(pixels.get(f"PhysicalSize{axis}", "nan")) for axis in "ZYX"]
            unit = UNITS.get(pixels.get("PhysicalSizeXUnit", "\u00b5m"))
            if all(value > 0 for value in sizes) and unit:
                return (sizes[0], sizes[1], sizes[2]), unit
        except (StopIteration, ValueError, TypeError, ElementTree.ParseError):
            pass
    tags = series.keyframe.tags
    if 282 not in tags or 283 not in tags:
        return None, None
    x_res, y_res = (_rational(tags[code].value) for code in (282, 283))
    if not (x_res > 0 and y_res > 0):
        return None, None
    imagej = tiff.imagej_metadata or {}
    unit = UNITS.get(str(imagej.get("unit", "")).strip().lower())
    if unit:
        pixel = (1.0 / y_res, 1.0 / x_res)
    else:
        units = {2: "inch", 3: "centimeter", 4: "millimeter", 5: "micrometer"}
        pixel, unit = pixel_size_from_resolution(x_res, y_res,
                                                 units.get(tags.valueof(296, default=2), ""))
        if pixel is None:
            return None, None
    spacing = float(imagej.get("spacing", 0) or 0)
    return (spacing if spacing > 0 else pixel[1], pixel[0], pixel[1]), unit


def _rational(value: object) -> float:
    if isinstance(value, tuple):
        numerator, denominator = value
        return float(numerator) / float(denominator) if denominator else 0.0
    return float(value)  # type: ignore[arg-type]
