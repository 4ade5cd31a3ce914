"""Objects cut by block faces made whole: face slabs, equivalences, union and final numbering."""

# Each block saves one-voxel slabs of its labels at its faces (``save_faces``).  For every face
# between two blocks, ``face_pairs`` pairs provisional ids: for connected components, object
# voxels of the same class that touch across the face (with diagonal neighbours when the
# connectivity allows; the slabs of the next blocks along the face are joined on, so block
# edges and corners count too); for the watershed, the ids the two blocks give to the same
# voxels in the two slabs on either side of the face (each block labelled them, one as core,
# one as halo), joined when they share most of the smaller object's voxels there.  ``resolve``
# unites them (scipy.sparse.csgraph); ``number_objects`` orders objects by their first voxel
# in image raster order, so the numbering does not depend on the blocks or the workers.


from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import numpy

from tiler.segmentation.blocks import BlockPlan
from tiler.segmentation.measure import first_rows
from tiler.segmentation.methods import BlockLabels

__all__ = ["face_pairs", "number_objects", "resolve", "save_faces"]

#: Blocks whose face slabs are kept loaded while pairing.
BLOCK_CACHE_SIZE = 64


def _faces_path(folder: Path, index: int) -> Path:
    return folder / f"{index}.npy"


def _slab_layout(plan: BlockPlan, index: int, overlap: bool
                 ) -> list[tuple[str, tuple[int, ...], int, int]]:
    """(key, shape, index along the axis in the haloed block, axis) of each slab block
    ``index`` saves, in file order: "{axis}-lo"/"{axis}-hi" (its core's first and last slab
    on inner faces) and for the watershed "{axis}-before"/"{axis}-after" (one voxel beyond)."""
    core, haloed = plan.core(index), plan.haloed(index)
    layout = []
    for axis, ((low, high), size) in enumerate(zip(core, plan.shape, strict=True)):
        shape = tuple(c_high - c_low for a, (c_low, c_high) in enumerate(core) if a != axis)
        start = haloed[axis][0]
        sides = [("lo", low, low - 1, "before", low > 0),
                 ("hi", high - 1, high, "after", high < size)]
        for kind, at, beyond, name, inside in sides:
            if inside:
                layout.append((f"{axis}-{kind}", shape, at - start, axis))
                if overlap:
                    layout.append((f"{axis}-{name}", shape, beyond - start, axis))
    return layout


def save_faces(folder: Path, plan: BlockPlan, index: int, labels: BlockLabels) -> None:
    """Save block ``index``'s face slabs (see _slab_layout) in one file, as local ids."""
    core, haloed = plan.core(index), plan.haloed(index)
    inner = [slice(c_low - h_low, c_high - h_low)
             for (c_low, c_high), (h_low, _) in zip(core, haloed, strict=True)]
    parts = []
    for _, _, at, axis in _slab_layout(plan, index, labels.haloed is not None):
        if labels.haloed is not None:
            source, region = labels.haloed, list(inner)
            region[axis] = at
        else:  # only core slabs: address the core
            source, region = labels.core, [slice(None)] * len(core)
            region[axis] = at - inner[axis].start
        parts.append(source[tuple(region)].reshape(-1).astype(numpy.uint32))
    if parts:
        numpy.save(_faces_path(folder, index), numpy.concatenate(parts))


def face_pairs(folder: Path, plan: BlockPlan, offsets: numpy.ndarray, classes: numpy.ndarray,
               connectivity: int | str, overlap: bool) -> numpy.ndarray:
    """(k, 2) provisional ids to unite, over every face between blocks (see module doc).

    ``offsets[b]`` + local id is block b's provisional id; ``classes`` the class of each
    provisional id.  ``overlap`` selects the watershed rule.
    """
    ndim = len(plan.shape)
    rank = ndim if connectivity == "full" else int(connectivity)

    @functools.lru_cache(maxsize=BLOCK_CACHE_SIZE)
    def faces(index: int) -> dict[str, numpy.ndarray]:
        local = numpy.load(_faces_path(folder, index)).astype(numpy.int64)
        ids = numpy.where(local > 0, local + offsets[index], 0)
        slabs, start = {}, 0
        for key, shape, _, _ in _slab_layout(plan, index, overlap):
            size = math.prod(shape)
            slabs[key] = ids[start:start + size].reshape(shape)
            start += size
        return slabs

    def slab(index: int, axis: int, kind: str) -> numpy.ndarray:
        return faces(index)[f"{axis}-{kind}"]

    found: list[numpy.ndarray] = []
    grid = plan.grid
    for axis in range(ndim):
        others = [b for b in range(ndim) if b != axis]
        for rest in itertools.product(*(range(grid[b]) for b in others)):
            for k in range(1, grid[axis]):
                block = functools.partial(_block_index, plan, axis, k, others, rest)
                if overlap:
                    lower, upper = block(0), block(1)
                    pairs = _overlap_pairs(slab(lower, axis, "hi"), slab(lower, axis, "after"),
                                           slab(upper, axis, "before"), slab(upper, axis, "lo"))
                else:
                    extend = [int(rank > 1 and j + 1 < grid[b]) for b, j in zip(others, rest,
                                                                                strict=True)]
                    lower, upper = (_joined(slab, block, step, axis, extend, kind)
                                    for step, kind in ((0, "hi"), (1, "lo")))
                    pairs = _touching_pairs(lower, upper, rank, classes)
                if pairs.size:
                    found.append(pairs)
    if not found:
        return numpy.zeros((0, 2), dtype=numpy.int64)
    return numpy.unique(numpy.concatenate(found), axis=0)


def _block_index(plan: BlockPlan, axis: int, k: int, others: list[int], rest: tuple[int, ...],
                 step: int, shift: tuple[int, ...] | None = None) -> int:
    """Index of the block before (``step`` 0) or after (1) face ``k`` along ``axis``, at
    ``rest`` along the other axes (plus ``shift``)."""
    position = [0] * plan.ndim
    position[axis] = k - 1 + step
    for b, j, s in zip(others, rest, shift or (0,) * len(others), strict=True):
        position[b] = j + s
    return plan.index(tuple(position))


def _joined(slab, block, step: int, axis: int, extend: list[int], kind: str) -> numpy.ndarray:
    """A face slab with the first row of the next blocks' slabs along each other axis added."""
    base = slab(block(step), axis, kind)
    shape = tuple(side + e for side, e in zip(base.shape, extend, strict=True))
    if shape == base.shape:
        return base
    out = numpy.zeros(shape, dtype=numpy.int64)
    for shift in itertools.product(*(range(e + 1) for e in extend)):
        part = slab(block(step, shift), axis, kind)
        source = tuple(slice(0, 1) if s else slice(None) for s in shift)
        target = tuple(slice(side, side + 1) if s else slice(0, side)
                       for s, side in zip(shift, base.shape, strict=True))
        out[target] = part[source]
    return out


def _touching_pairs(lower: numpy.ndarray, upper: numpy.ndarray, rank: int,
                    classes: numpy.ndarray) -> numpy.ndarray:
    """Distinct (lower id, upper id) of same-class object voxels touching across the face:
    straight across, and diagonally for ``rank`` - 1 more differing axes."""
    found = []
    for shift in itertools.product((-1, 0, 1), repeat=lower.ndim):
        if numpy.count_nonzero(shift) > rank - 1:
            continue
        source = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, lower.shape,
                                                                         strict=True))
        target = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(shift, upper.shape,
                                                                         strict=True))
        a, b = lower[source].reshape(-1), upper[target].reshape(-1)
        both = (a > 0) & (b > 0)
        a, b = a[both], b[both]
        same = classes[a] == classes[b]
        found.append(numpy.stack([a[same], b[same]], axis=1))
    pairs = numpy.concatenate(found)
    return numpy.unique(pairs, axis=0) if len(pairs) else pairs


def _overlap_pairs(hi: numpy.ndarray, after: numpy.ndarray, before: numpy.ndarray,
                   lo: numpy.ndarray) -> numpy.ndarray:
    """Pairs of ids the two blocks give to the same voxels, kept when they share more than
    half of the voxels the smaller of the two has in the two slabs."""
    a = numpy.concatenate([hi.reshape(-1), after.reshape(-1)])
    b = numpy.concatenate([before.reshape(-1), lo.reshape(-1)])
    both = (a > 0) & (b > 0)
    if not both.any():
        return numpy.zeros((0, 2), dtype=numpy.int64)
    pairs, shared = numpy.unique(numpy.stack([a[both], b[both]], axis=1), axis=0,
                                 return_counts=True)
    a_ids, a_counts = numpy.unique(a[a > 0], return_counts=True)
    b_ids, b_counts = numpy.unique(b[b > 0], return_counts=True)
    smaller = numpy.minimum(a_counts[numpy.searchsorted(a_ids, pairs[:, 0])],
                            b_counts[numpy.searchsorted(b_ids, pairs[:, 1])])
    return pairs[2 * shared > smaller]


def resolve(total: int, pairs: numpy.ndarray) -> numpy.ndarray:
    """Component of each provisional id 0..total (0 is the background) given ``pairs``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    weights = numpy.ones(len(pairs), dtype=numpy.int8)
    graph = coo_matrix((weights, (pairs[:, 0], pairs[:, 1])), shape=(total + 1, total + 1))
    _, components = connected_components(graph.tocsr(), directed=False)
    return components


def number_objects(components: numpy.ndarray, voxels: numpy.ndarray, first: numpy.ndarray,
                   min_size: int) -> tuple[numpy.ndarray, int]:
    """(final label of each provisional row, object count): components with at least
    ``min_size`` voxels (and one), numbered 1..N by their first voxel in raster order; the
    others get -1.  ``voxels``/``first`` are the provisional rows (id i + 1 is row i)."""
    rows = components[1:]
    _, group = numpy.unique(rows, return_inverse=True)
    groups = int(group.max()) + 1 if group.size else 0
    sizes = numpy.zeros(groups, dtype=numpy.int64)
    numpy.add.at(sizes, group, voxels)
    firsts = first_rows(first, group, groups)
    kept = numpy.flatnonzero(sizes >= max(1, min_size))
    order = kept[numpy.lexsort(firsts[kept].T[::-1])]
    rank = numpy.full(groups, -1, dtype=numpy.int64)
    rank[order] = numpy.arange(order.size)
    return rank[group], int(order.size)
