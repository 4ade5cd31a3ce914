"""Decode just the TIFF strips or tiles a region needs, straight from the file, thread-safely."""

from __future__ import annotations

import math
import os

import numpy
import tifffile

__all__ = ["MAX_SEGMENT_BYTES", "SegmentReader", "SegmentTooLarge", "segmented"]

#: A strip or tile bigger than this once decoded is refused: it would have to be decoded whole
#: for every region read, which breaks the memory bound (files that store a whole huge image
#: in one compressed strip).
MAX_SEGMENT_BYTES = 256 * 2**20


class SegmentTooLarge(ValueError):
    """One strip or tile is too big to decode for each region read."""


class SegmentReader:
    """Reads regions of a tiled or striped TIFF page series by decoding whole segments.

    ``pages`` are the series' pages (one per plane, e.g. per channel); all share the layout of
    the first.  Segments are read with ``os.pread`` on a private descriptor and decoded by
    tifffile's own decoder for the page (every compression and predictor tifffile knows), so
    any number of threads can read at once.  Regions come back as (planes, h, w, samples).
    """

    def __init__(self, path: str | os.PathLike, pages: list) -> None:
        keyframe = pages[0].keyframe
        if keyframe.imagedepth != 1:
            raise ValueError("volumetric (tiled in depth) TIFF pages are not supported")
        self._keyframe = keyframe
        self._pages = pages
        _, _, height, width, samples = keyframe.shaped
        self._separate = keyframe.shaped[0]  # planar sample planes per page
        self._samples = samples  # interleaved samples per pixel
        self._height, self._width = height, width
        if keyframe.is_tiled:
            self._seg_h, self._seg_w = keyframe.tilelength, keyframe.tilewidth
        else:
            self._seg_h, self._seg_w = min(keyframe.rowsperstrip, height), width
        segment_bytes = self._seg_h * self._seg_w * samples * numpy.dtype(keyframe.dtype).itemsize
        if segment_bytes > MAX_SEGMENT_BYTES:
            raise SegmentTooLarge(
                f"the TIFF stores its pixels in {'tiles' if keyframe.is_tiled else 'strips'} of "
                f"{segment_bytes / 2**20:.0f} MiB each (limit {MAX_SEGMENT_BYTES // 2**20} MiB), "
                "too big to decode piece by piece; re-save it tiled (e.g. 256 x 256 tiles)"
            )
        self._cols = math.ceil(width / self._seg_w)
        self._rows = math.ceil(height / self._seg_h)
        self._per_plane = self._rows * self._cols
        self._decode = keyframe.decode
        self._jpeg = {"jpegtables": keyframe.jpegtables, "jpegheader": keyframe.jpegheader}
        self.dtype = numpy.dtype(keyframe.dtype).newbyteorder("=")
        self._fd: int | None = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    @property
    def planes(self) -> int:
        """Separate planes: pages times planar sample planes."""
        return len(self._pages) * self._separate

    def read(self, y0: int, y1: int, x0: int, x1: int,
             planes: int | None = None) -> numpy.ndarray:
        """Pixels [y0:y1, x0:x1] of the first ``planes`` planes as (planes, h, w, samples)."""
        if self._fd is None:
            raise ValueError("reader is closed")
        count = self.planes if planes is None else planes
        out = numpy.empty((count, y1 - y0, x1 - x0, self._samples), dtype=self.dtype)
        for plane in range(count):
            page = self._pages[plane // self._separate]
            first = (plane % self._separate) * self._per_plane
            for row in range(y0 // self._seg_h, (y1 - 1) // self._seg_h + 1):
                for col in range(x0 // self._seg_w, (x1 - 1) // self._seg_w + 1):
                    self._paste(page, first + row * self._cols + col, row, col, out[plane],
                                y0, y1, x0, x1)
        return out

    def _paste(self, page, index: int, row: int, col: int, out: numpy.ndarray,
               y0: int, y1: int, x0: int, x1: int) -> None:
        """Decode segment ``index`` of ``page`` and copy its overlap with the region into out."""
        seg_y, seg_x = row * self._seg_h, col * self._seg_w
        top, bottom = max(y0, seg_y), min(y1, seg_y + self._seg_h, self._height)
        left, right = max(x0, seg_x), min(x1, seg_x + self._seg_w, self._width)
        target = out[top - y0:bottom - y0, left - x0:right - x0]
        offset, size = page.dataoffsets[index], page.databytecounts[index]
        if not offset or not size:  # a segment that was never written: zeros
            target[...] = 0
            return
        data = os.pread(self._fd, size, offset)
        if len(data) < size:
            raise ValueError(f"segment {index} is cut short by the end of the file")
        decoded, _, _ = self._decode(data, index, **self._jpeg)
        if decoded is None:
            target[...] = 0
            return
        decoded = decoded.reshape(decoded.shape[-3:])  # (h, w, samples)
        target[...] = decoded[top - seg_y:bottom - seg_y, left - seg_x:right - seg_x]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def segmented(series: tifffile.TiffPageSeries) -> bool:
    """True when every page of ``series`` is plain tiled or striped 2D data SegmentReader reads."""
    keyframe = series.keyframe
    pages = list(series.pages)
    return (keyframe.imagedepth == 1 and keyframe.dtype is not None
            and numpy.dtype(keyframe.dtype) != numpy.bool_
            and all(page is not None for page in pages)
            and all(len(page.dataoffsets) == len(keyframe.dataoffsets) for page in pages))
