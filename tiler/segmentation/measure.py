"""Object measurements accumulated block by block (bincount, ufunc.at) and combined per object."""

# Columns of ``objects.npy`` (row i is label i + 1) and of ``measurements.csv``; lengths are in
# the pyramid's unit (``u``: um for micrometer, nm, mm, ...; px when the pixel size is unknown):
#
# - ``label``: the id in labels.ome.zarr (1..N); ``class``: 1 for threshold methods, the class
#   index (into the summary's ``class_names``) for the classifier;
# - ``voxels``: pixel (2D) or voxel (3D) count at full resolution;
# - ``area`` (2D, CSV ``area_u2``) or ``volume`` (3D, ``volume_u3``): voxels times the pixel area
#   or voxel volume;
# - ``equivalent_diameter`` (``equivalent_diameter_u``): of the disk (2D) or sphere (3D) of that
#   area or volume;
# - ``centroid_x``, ``centroid_y`` (, ``centroid_z``) (``centroid_x_u``...): mean voxel index
#   times the voxel size (the NGFF scale transform; voxel i's centre is at i * size);
# - ``bbox_x0``, ``bbox_y0`` (, ``bbox_z0``), ``bbox_x1``, ``bbox_y1`` (, ``bbox_z1``):
#   bounding box in level-0 voxels, half-open (x0 <= x < x1);
# - ``mean_intensity``, ``min_intensity``, ``max_intensity``, ``std_intensity`` (population
#   standard deviation) of the segmented channel's level-0 values;
# - ``touches_edge``: the object reaches the image border (it may be cut off).


from __future__ import annotations

import math

import numpy

__all__ = ["block_stats", "combine_stats", "first_rows", "object_dtype", "object_table",
           "unit_suffix"]

AXES = "zyx"
#: Short unit names for CSV headers; other units are written out.
UNIT_SUFFIXES = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm",
                 "meter": "m", "angstrom": "A", "picometer": "pm", "kilometer": "km"}


def block_stats(labels: numpy.ndarray, count: int, values: numpy.ndarray,
                origin: tuple[int, ...], classes: numpy.ndarray) -> dict[str, numpy.ndarray]:
    """Sums, extremes and extents of labels 1..count of one block's core, one row each.

    ``values`` are the core's intensities, ``origin`` the core's first voxel in the image;
    coordinates in the result are the image's.  ``first`` is the (z,) y, x of each label's
    first voxel in raster order (the same in block and image raster order).
    """
    ndim = labels.ndim
    flat = labels.reshape(-1)
    present = numpy.flatnonzero(flat)
    ids = flat[present]
    stats: dict[str, numpy.ndarray] = {
        "voxels": numpy.bincount(ids, minlength=count + 1)[1:].astype(numpy.int64),
        "class": classes.astype(numpy.uint8),
    }
    first = numpy.full(count + 1, max(flat.size - 1, 0), dtype=numpy.int64)
    numpy.minimum.at(first, ids, present.astype(numpy.int64))
    stats["first"] = (numpy.stack(numpy.unravel_index(first[1:], labels.shape), axis=1)
                      .astype(numpy.int64).reshape(count, ndim) + numpy.array(origin))
    coords = numpy.unravel_index(present, labels.shape)
    low = numpy.empty((count, ndim), dtype=numpy.int64)
    high = numpy.empty((count, ndim), dtype=numpy.int64)
    centre = numpy.empty((count, ndim), dtype=numpy.float64)
    for axis, coord in enumerate(coords):
        coord = coord.astype(numpy.int64)
        lo = numpy.full(count + 1, labels.shape[axis], dtype=numpy.int64)
        hi = numpy.full(count + 1, -1, dtype=numpy.int64)
        numpy.minimum.at(lo, ids, coord)
        numpy.maximum.at(hi, ids, coord)
        low[:, axis], high[:, axis] = lo[1:] + origin[axis], hi[1:] + 1 + origin[axis]
        sums = numpy.bincount(ids, weights=coord, minlength=count + 1)[1:]
        centre[:, axis] = sums + origin[axis] * stats["voxels"]
    del coords
    stats.update(low=low, high=high, centre_sum=centre)
    picked = values.reshape(-1)[present].astype(numpy.float64)
    stats["sum"] = numpy.bincount(ids, weights=picked, minlength=count + 1)[1:]
    stats["sum_squares"] = numpy.bincount(ids, weights=picked * picked, minlength=count + 1)[1:]
    minimum = numpy.full(count + 1, numpy.inf)
    maximum = numpy.full(count + 1, -numpy.inf)
    numpy.minimum.at(minimum, ids, picked)
    numpy.maximum.at(maximum, ids, picked)
    stats["min"], stats["max"] = minimum[1:], maximum[1:]
    return stats


def combine_stats(stats: dict[str, numpy.ndarray], group: numpy.ndarray,
                  groups: int) -> dict[str, numpy.ndarray]:
    """Per-group totals of provisional rows: row i goes to ``group[i]`` (0..groups-1, or -1
    to drop it).  Sums add, extremes and first voxels take the min or max, in row order."""
    keep = group >= 0
    index = group[keep]
    out: dict[str, numpy.ndarray] = {}
    for name, values in stats.items():
        values = values[keep]
        if name in ("voxels", "sum", "sum_squares", "centre_sum"):
            total = numpy.zeros((groups, *values.shape[1:]), dtype=values.dtype)
            numpy.add.at(total, index, values)
        elif name in ("min", "low"):
            total = numpy.full((groups, *values.shape[1:]), _largest(values.dtype),
                               dtype=values.dtype)
            numpy.minimum.at(total, index, values)
        elif name in ("max", "high", "class"):
            total = numpy.full((groups, *values.shape[1:]), _smallest(values.dtype),
                               dtype=values.dtype)
            numpy.maximum.at(total, index, values)
        elif name == "first":
            total = first_rows(values, index, groups)
        else:
            raise KeyError(f"unknown statistic {name!r}")
        out[name] = total
    return out


def first_rows(first: numpy.ndarray, index: numpy.ndarray, groups: int) -> numpy.ndarray:
    """Per group, the lexicographically smallest (z,) y, x row of ``first``."""
    out = numpy.zeros((groups, first.shape[1]), dtype=first.dtype)
    if index.size == 0:
        return out
    order = numpy.lexsort((*first.T[::-1], index))  # by group, then z, y, x
    sorted_index = index[order]
    starts = numpy.flatnonzero(numpy.r_[True, sorted_index[1:] != sorted_index[:-1]])
    out[sorted_index[starts]] = first[order[starts]]
    return out


def _largest(dtype: numpy.dtype) -> float | int:
    return numpy.inf if dtype.kind == "f" else numpy.iinfo(dtype).max


def _smallest(dtype: numpy.dtype) -> float | int:
    return -numpy.inf if dtype.kind == "f" else numpy.iinfo(dtype).min


def object_dtype(ndim: int) -> numpy.dtype:
    """The structured dtype of objects.npy for 2D or 3D images."""
    axes = "xyz"[:ndim]
    fields = [("label", "<u4"), ("class", "u1"), ("voxels", "<i8"),
              ("area" if ndim == 2 else "volume", "<f8"), ("equivalent_diameter", "<f8")]
    fields += [(f"centroid_{axis}", "<f8") for axis in axes]
    fields += [(f"bbox_{axis}0", "<i8") for axis in axes]
    fields += [(f"bbox_{axis}1", "<i8") for axis in axes]
    fields += [(f"{name}_intensity", "<f8") for name in ("mean", "min", "max", "std")]
    fields += [("touches_edge", "?")]
    return numpy.dtype(fields)


def object_table(totals: dict[str, numpy.ndarray], shape: tuple[int, ...],
                 voxel_size: tuple[float, ...]) -> numpy.ndarray:
    """The objects.npy rows from combined statistics, in label order (row i = label i + 1)."""
    ndim = len(shape)
    count = totals["voxels"].shape[0]
    table = numpy.zeros(count, dtype=object_dtype(ndim))
    voxels = totals["voxels"]
    table["label"] = numpy.arange(1, count + 1)
    table["class"] = totals["class"]
    table["voxels"] = voxels
    size = voxels * math.prod(voxel_size)
    if ndim == 2:
        table["area"] = size
        table["equivalent_diameter"] = numpy.sqrt(4.0 * size / math.pi)
    else:
        table["volume"] = size
        table["equivalent_diameter"] = numpy.cbrt(6.0 * size / math.pi)
    safe = numpy.maximum(voxels, 1)
    for axis in range(ndim):
        name = AXES[3 - ndim + axis]
        table[f"centroid_{name}"] = totals["centre_sum"][:, axis] / safe * voxel_size[axis]
        table[f"bbox_{name}0"] = totals["low"][:, axis]
        table[f"bbox_{name}1"] = totals["high"][:, axis]
    mean = totals["sum"] / safe
    table["mean_intensity"] = mean
    table["min_intensity"] = totals["min"]
    table["max_intensity"] = totals["max"]
    table["std_intensity"] = numpy.sqrt(numpy.maximum(totals["sum_squares"] / safe - mean * mean,
                                                      0.0))
    table["touches_edge"] = ((totals["low"] == 0) | (totals["high"] == numpy.array(shape))).any(
        axis=1)
    return table


def unit_suffix(unit: str | None) -> str:
    """The short name of ``unit`` for column names (px when unknown)."""
    if not unit:
        return "px"
    return UNIT_SUFFIXES.get(unit, "".join(c if c.isalnum() else "_" for c in unit))
