"""The segmentation methods applied to one block: threshold, local, watershed and classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy
from scipy import ndimage

__all__ = ["BYTES_PER_VOXEL", "BlockLabels", "global_threshold", "method_halo", "segment_block"]

#: Working memory of one block per voxel (halo included), by method: the block read, its float
#: copy, the mask, the int32 labels and the per-voxel temporaries of the measurements.  The
#: classifier's own need comes from its ``bytes_per_voxel`` attribute when it has one.
BYTES_PER_VOXEL = {"threshold": 48, "local": 72, "watershed": 96, "classifier": 192}
#: scipy.ndimage.gaussian_filter's default reach, in sigmas (skimage's threshold_local uses it).
GAUSSIAN_TRUNCATE = 4.0


@dataclass
class BlockLabels:
    """One block's objects: ``core`` labels (int32, 1..count, 0 = background) of the core
    voxels, the ``classes`` of labels 1..count (uint8), and for the watershed the labels of
    the whole haloed block in the same numbering (``haloed``; 0 where an object does not reach
    the core), used to match objects across block faces."""

    core: numpy.ndarray
    count: int
    classes: numpy.ndarray
    haloed: numpy.ndarray | None = None


def method_halo(params: dict, classifier: Any = None) -> int:
    """Voxels of context a block needs on every side so its core comes out as in a whole-image
    computation (threshold: none; local: the filter's reach; watershed: twice the largest
    object radius; classifier: its own halo)."""
    method = params["method"]
    if method == "local":
        size = params["block_size"]
        if params["statistic"] == "gaussian":
            return int(GAUSSIAN_TRUNCATE * (size - 1) / 6.0 + 0.5)
        return size // 2
    if method == "watershed":
        return 2 * params["max_object_radius"]
    if method == "classifier":
        return int(classifier.halo)
    return 0


def global_threshold(data: numpy.ndarray, params: dict) -> float:
    """The global threshold of ``data`` (a reduced level) for params["algorithm"]."""
    from skimage import filters

    if params["algorithm"] == "manual":
        return float(params["value"])
    values = data[numpy.isfinite(data)] if data.dtype.kind == "f" else data
    if values.size == 0 or values.min() == values.max():
        return float(values.min()) if values.size else 0.0
    function = getattr(filters, f"threshold_{params['algorithm']}")
    return float(function(values))


def structure(ndim: int, connectivity: int | str) -> numpy.ndarray:
    """scipy.ndimage's neighbourhood for ``connectivity`` (1, 2, ... or "full")."""
    rank = ndim if connectivity == "full" else int(connectivity)
    return ndimage.generate_binary_structure(ndim, rank)


def _object_side(data: numpy.ndarray, threshold: Any, polarity: str) -> numpy.ndarray:
    """Object voxels: above the threshold for bright objects, at or below it for dark ones."""
    return data > threshold if polarity == "bright" else data <= threshold


def segment_block(data: numpy.ndarray, core: tuple[slice, ...], params: dict,
                  threshold: float | None, classifier: Any = None) -> BlockLabels:
    """Label the objects of one block.

    ``data`` is the haloed block of one channel (native dtype), ``core`` where its core lies
    in it.  Connected-component methods label the core only; their ids are in raster order
    of first appearance.
    """
    method = params["method"]
    if method == "threshold":
        mask = _object_side(data[core], threshold, params["polarity"])
        return _components(mask, params["connectivity"])
    if method == "local":
        from skimage.filters import threshold_local

        local = threshold_local(data, params["block_size"], method=params["statistic"],
                                offset=params["offset"])
        mask = _object_side(data[core], local[core], params["polarity"])
        del local
        return _components(mask, params["connectivity"])
    if method == "watershed":
        return _watershed(data, core, params, threshold)
    if method == "classifier":
        classes = classifier.classify_block(data.astype(numpy.float32, copy=False))[core]
        return _class_components(classes, params["connectivity"],
                                 len(classifier.class_names))
    raise ValueError(f"unknown method {method!r}")


def _components(mask: numpy.ndarray, connectivity: int | str) -> BlockLabels:
    labels, count = ndimage.label(mask, structure(mask.ndim, connectivity),
                                  output=numpy.int32)
    return BlockLabels(labels, int(count), numpy.ones(count, dtype=numpy.uint8))


def _class_components(classes: numpy.ndarray, connectivity: int | str,
                      class_count: int) -> BlockLabels:
    """Connected components of each non-zero class, numbered class by class."""
    labels = numpy.zeros(classes.shape, dtype=numpy.int32)
    kinds, total = [], 0
    footprint = structure(classes.ndim, connectivity)
    for value in range(1, class_count):
        mask = classes == value
        if not mask.any():
            continue
        part, count = ndimage.label(mask, footprint, output=numpy.int32)
        part[mask] += total
        labels[mask] = part[mask]
        kinds.append(numpy.full(count, value, dtype=numpy.uint8))
        total += count
    found = numpy.concatenate(kinds) if kinds else numpy.zeros(0, dtype=numpy.uint8)
    return BlockLabels(labels, total, found)


def _watershed(data: numpy.ndarray, core: tuple[slice, ...], params: dict,
               threshold: float | None) -> BlockLabels:
    """Seeded watershed of the distance to the background over the whole haloed block: seeds
    are distance maxima at least ``min_distance`` apart; mask parts without a seed become
    objects of their own.  Core ids are renumbered 1..count in raster order."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    mask = _object_side(data, threshold, params["polarity"])
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=params["min_distance"], exclude_border=False)
    markers = numpy.zeros(mask.shape, dtype=numpy.int32)
    markers[tuple(peaks.T)] = numpy.arange(1, len(peaks) + 1, dtype=numpy.int32)
    labels = watershed(-distance, markers, mask=mask)
    del distance, markers
    rest = mask & (labels == 0)
    if rest.any():
        extra, _ = ndimage.label(rest, output=numpy.int32)
        labels[rest] = extra[rest] + len(peaks)
    inner = labels[core]
    flat = inner.ravel()
    present = numpy.flatnonzero(flat)
    firsts = numpy.full(int(labels.max()) + 1, flat.size, dtype=numpy.int64)
    numpy.minimum.at(firsts, flat[present], present)
    order = numpy.argsort(firsts[1:], kind="stable") + 1
    order = order[firsts[order] < flat.size]
    lut = numpy.zeros(firsts.size, dtype=numpy.int32)
    lut[order] = numpy.arange(1, order.size + 1, dtype=numpy.int32)
    return BlockLabels(lut[inner], int(order.size), numpy.ones(order.size, dtype=numpy.uint8),
                       haloed=lut[labels])
