"""Synthetic test volumes made by code: 3D blobs and gradients, as slice stacks, TIFF or raw."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy

from tiler.synthetic import _hash, _to_dtype

__all__ = [
    "synthetic_volume",
    "synthetic_volume_region",
    "write_synthetic_raw",
    "write_synthetic_stack",
    "write_synthetic_tiff_stack",
    "write_synthetic_zip_stack",
]

#: Blobs per channel of a synthetic volume.
VOLUME_BLOB_COUNT = 6


def synthetic_volume_region(
    shape_zyx: tuple[int, int, int], dtype: str | numpy.dtype, channels: int, seed: int,
    z0: int, z1: int, y0: int, y1: int, x0: int, x1: int,
) -> numpy.ndarray:
    """Voxels [z0:z1, y0:y1, x0:x1] of the synthetic volume of ``shape_zyx``: (c, dz, dy, dx).

    Each voxel depends only on its coordinates, so any block equals the same slice of
    ``synthetic_volume`` and huge volumes can be produced slice by slice.
    """
    return numpy.stack([
        _to_dtype(_volume_values(shape_zyx, channel, seed, z0, z1, y0, y1, x0, x1),
                  numpy.dtype(dtype))
        for channel in range(channels)
    ])


def synthetic_volume(shape_zyx: tuple[int, int, int], dtype: str | numpy.dtype = "uint16",
                     channels: int = 1, seed: int = 0) -> numpy.ndarray:
    """The whole synthetic volume as a (c, z, y, x) array (for small test volumes)."""
    depth, height, width = shape_zyx
    return synthetic_volume_region(shape_zyx, dtype, channels, seed, 0, depth, 0, height, 0, width)


def _volume_values(shape_zyx, channel, seed, z0, z1, y0, y1, x0, x1) -> numpy.ndarray:
    """Float32 values in [0, 1] for one channel of a block."""
    rng = numpy.random.default_rng([seed, channel, 3])
    axes = [numpy.arange(low, high, dtype=numpy.float32) for low, high in
            ((z0, z1), (y0, y1), (x0, x1))]
    zs, ys, xs = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    weights = rng.uniform(0.1, 1.0, 3)
    weights /= weights.sum()
    values = 0.25 * sum(w * a / max(size, 1)
                        for w, a, size in zip(weights, (zs, ys, xs), shape_zyx, strict=True))
    size = min(shape_zyx)
    for _ in range(VOLUME_BLOB_COUNT):
        centre = [rng.uniform(0, extent) for extent in shape_zyx]
        sigma = rng.uniform(0.08, 0.3) * size + 1.0
        amplitude = rng.uniform(0.2, 0.45)
        factors = [numpy.exp(-(((a - c) / sigma) ** 2)) for a, c in zip((zs, ys, xs), centre,
                                                                         strict=True)]
        values = values + amplitude * (factors[0] * factors[1]) * factors[2]
    rows = numpy.arange(y0, y1, dtype=numpy.int64)[None, :, None]
    cols = numpy.arange(x0, x1, dtype=numpy.int64)[None, None, :]
    slices = numpy.arange(z0, z1, dtype=numpy.int64)[:, None, None]
    noise = (_hash(slices, rows, cols, seed + 7919 * channel) & numpy.uint64(0xFFFF))
    values = values + 0.05 * noise.astype(numpy.float32) / 65536.0
    return numpy.clip(values, 0.0, 1.0).astype(numpy.float32)


def _slices(shape_zyx, dtype, channels, seed) -> Iterator[numpy.ndarray]:
    """(c, y, x) slices of the synthetic volume, z by z."""
    depth, height, width = shape_zyx
    for z in range(depth):
        yield synthetic_volume_region(shape_zyx, dtype, channels, seed, z, z + 1, 0, height,
                                      0, width)[:, 0]


def _encode_slice(plane: numpy.ndarray, fmt: str, pixel_size_um: float | None) -> bytes:
    """One (c, y, x) slice as TIFF or PNG bytes."""
    buffer = io.BytesIO()
    if fmt == "tiff":
        import tifffile

        extra = {}
        if pixel_size_um:
            extra = {"resolution": (1e4 / pixel_size_um, 1e4 / pixel_size_um),
                     "resolutionunit": "CENTIMETER"}
        rgb = plane.shape[0] == 3 and plane.dtype == numpy.uint8
        data = numpy.moveaxis(plane, 0, -1) if rgb else plane[0] if plane.shape[0] == 1 else plane
        tifffile.imwrite(buffer, data, photometric="rgb" if rgb else "minisblack",
                         metadata=None, **extra)
    elif fmt == "png":
        from PIL import Image

        image = plane[0] if plane.shape[0] == 1 else numpy.moveaxis(plane, 0, -1)
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    else:
        raise ValueError(f"slice format must be 'tiff' or 'png', not {fmt!r}")
    return buffer.getvalue()


def write_synthetic_stack(
    folder: str | os.PathLike, shape_zyx: tuple[int, int, int], dtype: str = "uint16", *,
    fmt: str = "tiff", channels: int = 1, seed: int = 0, pattern: str = "slice{index}.{ext}",
    start: int = 1, pixel_size_um: float | None = None,
) -> list[Path]:
    """Write the synthetic volume as one file per z slice, named by ``pattern``; return paths.

    ``pattern`` gets ``index`` (z + ``start``) and ``ext``; e.g. "slice{index}.{ext}" gives
    slice1.tif ... slice10.tif, which only natural sorting puts in z order.  One slice in memory.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for z, plane in enumerate(_slices(shape_zyx, dtype, channels, seed)):
        path = folder / pattern.format(index=z + start, ext="tif" if fmt == "tiff" else fmt)
        path.write_bytes(_encode_slice(plane, fmt, pixel_size_um))
        paths.append(path)
    return paths


def write_synthetic_zip_stack(
    path: str | os.PathLike, shape_zyx: tuple[int, int, int], dtype: str = "uint16", *,
    fmt: str = "png", channels: int = 1, seed: int = 0, pattern: str = "stack/slice{index}.{ext}",
    start: int = 1, compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write the synthetic volume as a zip of slice files (encoded in memory, one at a time)."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for z, plane in enumerate(_slices(shape_zyx, dtype, channels, seed)):
            name = pattern.format(index=z + start, ext="tif" if fmt == "tiff" else fmt)
            archive.writestr(name, _encode_slice(plane, fmt, None))
    return Path(path)


def write_synthetic_tiff_stack(
    path: str | os.PathLike, shape_zyx: tuple[int, int, int], dtype: str = "uint16", *,
    imagej: bool = False, channels: int = 1, seed: int = 0, compression: str | None = None,
    voxel_size_um: tuple[float, float, float] | None = None,
) -> Path:
    """Write the synthetic volume as one multi-page TIFF, page by page; return ``path``.

    ``imagej=True`` writes an ImageJ hyperstack (axes ZYX or ZCYX, with spacing and unit);
    otherwise a generic file of z * channels pages (channels planar within each z).
    """
    import tifffile

    depth, height, width = shape_zyx
    extra: dict = {}
    if voxel_size_um:
        extra["resolution"] = (1 / voxel_size_um[2], 1 / voxel_size_um[1])
    planes = (plane[c] for plane in _slices(shape_zyx, dtype, channels, seed)
              for c in range(channels))
    if imagej:
        metadata = {"axes": "ZCYX" if channels > 1 else "ZYX"}
        if voxel_size_um:
            metadata.update(spacing=voxel_size_um[0], unit="um")
        shape = (depth, channels, height, width) if channels > 1 else shape_zyx
        tifffile.imwrite(path, planes, shape=shape, dtype=dtype, imagej=True, metadata=metadata,
                         **extra)
    else:
        shape = (depth, channels, height, width) if channels > 1 else shape_zyx
        tifffile.imwrite(path, planes, shape=shape, dtype=dtype, metadata=None,
                         compression=compression, photometric="minisblack", **extra)
    return Path(path)


def write_synthetic_raw(path: str | os.PathLike, shape_zyx: tuple[int, int, int],
                        dtype: str = "uint16", *, byteorder: str = "little", seed: int = 0) -> Path:
    """Write the synthetic volume as headerless voxels in ``byteorder``, slice by slice."""
    stored = numpy.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
    with open(path, "wb") as handle:
        for plane in _slices(shape_zyx, dtype, 1, seed):
            handle.write(numpy.ascontiguousarray(plane[0], dtype=stored).tobytes())
    return Path(path)
