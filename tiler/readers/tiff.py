"""TIFF/BigTIFF/OME-TIFF reader: tiled or striped, grey, RGB or multi-channel, read lazily."""

from __future__ import annotations

import os
import struct

import numpy
import tifffile
import zarr

from tiler.errors import CorruptImage, TilerError, UnsupportedFormat
from tiler.ome_xml import OmeImage, UnsafeXml, parse_ome_xml
from tiler.readers.base import (
    ImageSource,
    check_pixel_limit,
    default_channel_names,
    pixel_size_from_resolution,
)
from tiler.readers.tiff_segments import SegmentReader, SegmentTooLarge, segmented
from tiler.readers.tiff_structure import check_ifd_chain

__all__ = ["TiffReader"]

#: Classic TIFF and BigTIFF headers, little- and big-endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: tifffile axis letters that are read as channels (samples, channels, generic page sequences).
CHANNEL_AXES = "SCQI"

#: TIFF ResolutionUnit tag values and the unit names they stand for.
RESOLUTION_UNITS = {2: "inch", 3: "centimeter", 4: "millimeter", 5: "micrometer"}

#: ImageJ unit spellings and the OME-NGFF unit names they stand for.
IMAGEJ_UNITS = {"micron": "micrometer", "um": "micrometer", "\u00b5m": "micrometer",
                "nm": "nanometer", "mm": "millimeter", "cm": "centimeter"}

#: More pages or samples than this are a stack (3D/time), not channels: not supported yet.
MAX_CHANNELS = 32

#: Pixel dtypes passed through as they are.
SUPPORTED_DTYPES = {"uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"}


class TiffReader(ImageSource):
    """Reads the first image series of a TIFF lazily, region by region.

    Only the strips or tiles a region overlaps are read from disk and decoded (any number of
    threads at once); uncompressed contiguous images are memory-mapped instead.  Interleaved
    RGB (YXS) and planar (SYX) samples, and multi-page channel series, come out as (c, y, x).
    OME-TIFF metadata (parsed with defusedxml) gives channel names, colours
    (``channel_colors``) and the physical pixel size; data in other files is refused.
    Pyramid levels stored in the file (SubIFDs) are not used: the writer makes its own.
    """

    format_name = "TIFF"

    @classmethod
    def sniff(cls, header: bytes) -> bool:
        return header[:4] in TIFF_MAGIC

    def __init__(self, path: str | os.PathLike, *, max_pixels: int) -> None:
        self.path = os.fspath(path)
        self._tiff = None
        self._segments: SegmentReader | None = None
        self.channel_colors: list[str | None] | None = None
        check_ifd_chain(self.path)
        try:
            self._tiff = tifffile.TiffFile(self.path, _multifile=False)
            ome = self._ome_image()
        except TilerError:
            self.close()
            raise
        except (tifffile.TiffFileError, ValueError, struct.error, EOFError) as error:
            self.close()
            raise CorruptImage(f"cannot read TIFF structure: {error}") from error
        try:
            self._open_series(max_pixels)
            if ome is not None:
                self._apply_ome(ome)
        except TilerError:
            self.close()
            raise
        except Exception as error:
            self.close()
            reason = f"{type(error).__name__}: {error}"
            raise CorruptImage(f"cannot read TIFF image: {reason}") from error

    def _ome_image(self) -> OmeImage | None:
        """The first image of the file's OME-XML, checked before tifffile may parse it.

        Unsafe XML (DTD, entities) raises; badly formed XML is ignored, and then tifffile is
        told not to read the file as OME either.  Data spread over several files is refused.
        """
        if not self._tiff.is_ome:
            return None
        try:
            metadata = parse_ome_xml(self._tiff.pages.first.description)
        except UnsafeXml:
            raise
        except CorruptImage:
            self._tiff.close()
            self._tiff = tifffile.TiffFile(self.path, _multifile=False, is_ome=False)
            return None
        if metadata.other_files:
            raise UnsupportedFormat(
                f"this OME-TIFF is one part of a dataset spread over {metadata.other_files + 1} "
                "files; only single-file OME-TIFFs are supported"
            )
        return metadata.images[0] if metadata.images else None

    def _apply_ome(self, image: OmeImage) -> None:
        """Use the OME names, colours and pixel size when the image matches the series read."""
        channels, height, width = self.shape
        if (image.size_x, image.size_y) != (width, height):
            return
        if len(image.channel_names) == channels and image.samples_per_pixel == 1:
            self.channel_names = [name or default for name, default in
                                  zip(image.channel_names, self.channel_names, strict=True)]
            colors = image.channel_colors
            if any(colors) and not (channels > 1 and set(colors) == {"FFFFFF"}):
                self.channel_colors = list(colors)  # several all-white channels: not a choice
        if image.pixel_size is not None:
            self.pixel_size, self.unit = image.pixel_size, image.unit

    def _open_series(self, max_pixels: int) -> None:
        if not self._tiff.series:
            raise CorruptImage("the TIFF file contains no image")
        series = self._tiff.series[0]
        axes, shape = series.axes, tuple(series.shape)
        if not shape or 0 in shape:
            raise CorruptImage("the TIFF image directory describes no image: its width, height "
                               "or pixel format tags are missing or invalid")
        extra = [axis for axis in axes if axis not in "YX"]
        supported = len(extra) <= 1 and all(axis in CHANNEL_AXES for axis in extra)
        if "Y" not in axes or "X" not in axes or not supported:
            raise UnsupportedFormat(
                f"TIFF with axes {axes} and shape {shape} is not supported yet "
                "(only 2D images, optionally with channels)"
            )
        height, width = shape[axes.index("Y")], shape[axes.index("X")]
        check_pixel_limit(height, width, max_pixels)
        dtype = numpy.dtype(series.dtype)
        if dtype.name not in SUPPORTED_DTYPES and dtype != numpy.bool_:
            raise UnsupportedFormat(f"TIFF pixel type {dtype} is not supported")
        _check_segments_in_file(series, os.path.getsize(self.path))

        keyframe = series.keyframe
        channels = shape[axes.index(extra[0])] if extra else 1
        if channels > MAX_CHANNELS:
            raise UnsupportedFormat(
                f"TIFF with {channels} planes (axes {axes}) looks like a stack; stacks are not "
                f"supported yet (at most {MAX_CHANNELS} channels)"
            )
        rgb = keyframe.photometric == tifffile.PHOTOMETRIC.RGB and channels in (3, 4)
        self._channel_count = 3 if rgb else channels  # an alpha sample is dropped
        self._axes = axes
        padded = axes if extra else "C" + axes  # 2D blocks get a leading channel axis
        self._to_cyx = tuple(padded.index(axis) for axis in (extra or ["C"]) + ["Y", "X"])
        self._is_bool = dtype == numpy.bool_
        self.dtype = numpy.dtype("uint8") if self._is_bool else dtype.newbyteorder("=")
        self.shape = (self._channel_count, height, width)
        self.channel_names = default_channel_names(self._channel_count, rgb=rgb)
        self.pixel_size, self.unit = _pixel_size(self._tiff, keyframe)
        self._store = None
        self._array = None
        self._mapping: dict | None = None
        if series.dataoffset is not None:  # uncompressed, contiguous: map the file, decode nothing
            end = series.dataoffset + int(numpy.prod(shape)) * dtype.itemsize
            if end > os.path.getsize(self.path):
                raise CorruptImage(f"the TIFF file is truncated: image data runs to byte {end} "
                                   f"but the file has only {os.path.getsize(self.path)} bytes")
            self._mapping = {"dtype": dtype.newbyteorder(self._tiff.byteorder),
                             "offset": series.dataoffset, "shape": shape}
        elif segmented(series):  # strips or tiles, decoded on demand in the caller's thread
            try:
                self._segments = SegmentReader(self.path, list(series.pages))
            except SegmentTooLarge as error:
                raise UnsupportedFormat(str(error)) from error
        else:  # anything else tifffile reads (e.g. bilevel): through its zarr store
            self._store = series.aszarr(level=0, maxworkers=max(2, os.cpu_count() or 1))
            self._array = zarr.open_array(self._store, mode="r", zarr_format=2)

    @property
    def memory_mapped(self) -> bool:
        """True when pixels are copied straight from a memory map (no decoding needed)."""
        return self._mapping is not None

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        if self._segments is not None:
            return self._read_segments(y0, y1, x0, x1)
        selection = tuple(
            slice(y0, y1) if axis == "Y" else slice(x0, x1) if axis == "X"
            else slice(0, self._channel_count)
            for axis in self._axes
        )
        try:
            block = self._read_mapped(selection) if self._mapping else self._read_decoded(selection)
        except TilerError:
            raise
        except Exception as error:  # whatever the decoder says, the file is at fault
            raise CorruptImage(
                f"cannot decode TIFF data in rows {y0}:{y1}, columns {x0}:{x1}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if len(self._axes) == 2:
            block = block[numpy.newaxis]
        block = block.transpose(self._to_cyx)
        if self._is_bool:
            return block.astype(numpy.uint8) * numpy.uint8(255)
        if block.dtype != self.dtype or not block.flags.c_contiguous:
            block = numpy.array(block, dtype=self.dtype, order="C")
        return block

    def _read_segments(self, y0: int, y1: int, x0: int, x1: int) -> numpy.ndarray:
        """Decode the region's segments into (planes, h, w, samples), then make it (c, h, w)."""
        segments = self._segments
        interleaved = self._axes.endswith("S")
        try:
            block = segments.read(y0, y1, x0, x1,
                                  planes=None if interleaved else self._channel_count)
        except Exception as error:  # whatever the decoder says, the file is at fault
            raise CorruptImage(
                f"cannot decode TIFF data in rows {y0}:{y1}, columns {x0}:{x1}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if interleaved:
            return numpy.ascontiguousarray(block[0].transpose(2, 0, 1)[:self._channel_count])
        return block[..., 0]

    def _read_decoded(self, selection: tuple[slice, ...]) -> numpy.ndarray:
        if self._array is None:
            raise ValueError("reader is closed")
        return numpy.asarray(self._array[selection])

    def _read_mapped(self, selection: tuple[slice, ...]) -> numpy.ndarray:
        """Copy the selection out of a short-lived memory map of the file.

        The map is dropped after each read so that touched file pages do not pile up in the
        process's resident memory.
        """
        mapped = numpy.memmap(self.path, mode="r", **self._mapping)  # type: ignore[arg-type]
        block = numpy.array(mapped[selection], dtype=self.dtype, order="C")
        del mapped  # the last reference: unmapped here, not at some later collection
        return block

    def close(self) -> None:
        self._array = None
        self._mapping = None
        segments = getattr(self, "_segments", None)
        if segments is not None:
            segments.close()
            self._segments = None
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()
            self._store = None
        tiff = getattr(self, "_tiff", None)
        if tiff is not None:
            tiff.close()
            self._tiff = None


def _check_segments_in_file(series: tifffile.TiffPageSeries, file_size: int) -> None:
    """Raise CorruptImage when a strip or tile lies past the end of the file (truncated file)."""
    for page in series.pages:
        if page is None:
            continue
        ends = [
            offset + count
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False)
            if offset and count
        ]
        if ends and max(ends) > file_size:
            raise CorruptImage(
                f"the TIFF file is truncated: image data runs to byte {max(ends)} "
                f"but the file has only {file_size} bytes"
            )


def _pixel_size(
    tiff: tifffile.TiffFile, page: tifffile.TiffPage
) -> tuple[tuple[float, float] | None, str | None]:
    """Physical pixel size from the resolution tags (and ImageJ's unit), if the file states one."""
    tags = page.tags
    if 282 not in tags or 283 not in tags:
        return None, None
    x_per_unit, y_per_unit = (_rational(tags[code].value) for code in (282, 283))
    unit_code = tags.valueof(296, default=2)
    if unit_code in RESOLUTION_UNITS:
        return pixel_size_from_resolution(x_per_unit, y_per_unit, RESOLUTION_UNITS[unit_code])
    imagej_unit = (tiff.imagej_metadata or {}).get("unit") if tiff.is_imagej else None
    unit = IMAGEJ_UNITS.get(str(imagej_unit).strip().lower()) if imagej_unit else None
    if unit is None or not (x_per_unit > 0 and y_per_unit > 0):
        return None, None
    return (1.0 / y_per_unit, 1.0 / x_per_unit), unit


def _rational(value: object) -> float:
    """A TIFF RATIONAL tag value, (numerator, denominator) or a plain number, as a float."""
    if isinstance(value, tuple):
        numerator, denominator = value
        return float(numerator) / float(denominator) if denominator else 0.0
    return float(value)  # type: ignore[arg-type]
