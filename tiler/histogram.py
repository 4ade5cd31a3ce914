"""Per-channel intensity histograms of a pyramid from its lowest level (cheap), for display controls."""

from __future__ import annotations

import copy
import functools

import numpy

from tiler.errors import InvalidParameter
from tiler.pyramid_reader import Pyramid

__all__ = ["DEFAULT_BINS", "MAX_BINS", "channel_histograms"]

#: Bins of a histogram unless asked otherwise.
DEFAULT_BINS = 256
#: Most bins a caller may ask for.
MAX_BINS = 4096
#: How many pyramids' histograms are remembered.
HISTOGRAM_CACHE_SIZE = 64


def channel_histograms(pyramid: Pyramid, *, bins: int = DEFAULT_BINS) -> list[dict]:
    """One JSON-serialisable histogram per channel, computed from the lowest pyramid level.

    Each is ``{"channel": name, "index", "min", "max", "counts": [...], "edges": [...],
    "window": [start, end], "color"}`` with len(edges) == len(counts) + 1.  Integer channels
    whose range spans at most ``bins`` values get one bin per value (edges v .. v + 1); float
    channels count finite values only.  ``min``/``max`` are the data range of that level.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise InvalidParameter(f"bins {bins!r} is out of range; use a whole number from 1 to "
                               f"{MAX_BINS}")
    return copy.deepcopy(_histograms(pyramid, bins))


@functools.lru_cache(maxsize=HISTOGRAM_CACHE_SIZE)
def _histograms(pyramid: Pyramid, bins: int) -> list[dict]:
    data = pyramid.read_level(len(pyramid.levels) - 1)
    result = []
    for index, values in enumerate(data):
        values = values.ravel()
        if values.dtype.kind == "f":
            values = values[numpy.isfinite(values)]
        counts, edges, low, high = _histogram(values, bins)
        result.append({
            "channel": pyramid.channel_names[index],
            "index": index,
            "min": low,
            "max": high,
            "counts": counts,
            "edges": edges,
            "window": [float(value) for value in pyramid.windows[index]],
            "color": pyramid.colors[index],
        })
    return result


def _histogram(values: numpy.ndarray, bins: int) -> tuple[list[int], list[float], float, float]:
    if values.size == 0:
        return [0] * bins, numpy.linspace(0.0, 1.0, bins + 1).tolist(), 0.0, 0.0
    low, high = values.min().item(), values.max().item()
    if values.dtype.kind in "iu" and high - low + 1 <= bins:
        counts = numpy.bincount((values.astype(numpy.int64) - low), minlength=high - low + 1)
        edges = numpy.arange(low, high + 2, dtype=numpy.float64)
    else:
        counts, edges = numpy.histogram(values, bins=bins, range=(float(low), float(high)))
    return ([int(count) for count in counts], [float(edge) for edge in edges],
            float(low), float(high))
