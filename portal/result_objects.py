"""A result's per-object measurements (objects.npy, row i = label i+1): sorted pages and lookup by label."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy

from tiler.errors import InvalidParameter

MAX_PAGE_ROWS = 1000


@functools.lru_cache(maxsize=32)
def load_objects(path: str) -> numpy.ndarray:
    """The structured array of one result, memory-mapped (results are immutable, so caching by path is safe)."""
    return numpy.load(path, mmap_mode="r", allow_pickle=False)


@functools.lru_cache(maxsize=64)
def _order(path: str, column: str, descending: bool) -> numpy.ndarray:
    values = numpy.asarray(load_objects(path)[column])
    order = numpy.argsort(values, kind="stable")
    return order[::-1].copy() if descending else order


def column_names(objects: numpy.ndarray) -> list[str]:
    return list(objects.dtype.names or ())


def column_unit(name: str, unit: str) -> str:
    """The unit of a measurement column, given the image's length unit (e.g. µm; px when unknown)."""
    if name == "area":
        return f"{unit}²"
    if name == "volume":
        return f"{unit}³"
    if name == "equivalent_diameter" or name.startswith("centroid_"):
        return unit
    if name.startswith("bbox_"):
        return "px"
    return ""


def _plain(value):
    """A numpy scalar as JSON: ints stay ints, non-finite floats become None."""
    if isinstance(value, (numpy.bool_, bool)):
        return bool(value)
    if isinstance(value, numpy.integer):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def page(path: Path, *, sort: str = "label", descending: bool = False, offset: int = 0, limit: int = 50,
         unit: str = "px") -> dict:
    """One page of rows sorted by `sort`: {"total", "columns": [{"name", "unit"}], "rows": [[...], ...]}."""
    objects = load_objects(str(path))
    names = column_names(objects)
    if sort not in names:
        raise InvalidParameter(f"cannot sort by {sort!r}; the columns are {', '.join(names)}")
    if not (0 <= offset and 1 <= limit <= MAX_PAGE_ROWS):
        raise InvalidParameter(f"offset must be >= 0 and limit from 1 to {MAX_PAGE_ROWS}")
    total = int(objects.shape[0])
    if sort == "label" and not descending:
        chosen = numpy.arange(offset, min(offset + limit, total))
    else:
        chosen = _order(str(path), sort, descending)[offset:offset + limit]
    rows = [[_plain(objects[i][name]) for name in names] for i in chosen]
    return {"total": total, "offset": offset, "limit": limit, "sort": sort, "order": "desc" if descending else "asc",
            "columns": [{"name": name, "unit": column_unit(name, unit)} for name in names], "rows": rows}


def object_row(path: Path, label: int) -> dict | None:
    """The measurements of object `label` as {column: value}, or None if there is no such object."""
    objects = load_objects(str(path))
    if not 1 <= label <= objects.shape[0]:
        return None
    row = objects[label - 1]
    return {name: _plain(row[name]) for name in column_names(objects)}
