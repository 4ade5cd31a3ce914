"""Benchmark inputs, generated tile by tile or slice by slice (memory stays small at any size)."""

# Run as a script (`python _inputs.py KIND PATH SIZE`, see _measure.generate) so that the
# measuring process never holds numpy or image data itself.

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy
import tifffile

from tiler.synthetic import synthetic_image, write_synthetic_tiff

#: Side of the synthetic texture the fast generator cuts its tiles from.
TEXTURE_SIZE = 2048
TILE = 256


def tiled_bigtiff_2d(path: Path, size: int) -> Path:
    """A size x size uint8 tiled (256 px) deflate BigTIFF of the synthetic image; cached."""
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_name(path.name + ".partial")
        write_synthetic_tiff(partial, (size, size), "uint8", tile=TILE, bigtiff=True,
                             compression="zlib")
        partial.rename(path)
        print(f"generated {path} in {time.perf_counter() - started:.0f} s")
    return path


def fast_tiled_bigtiff_2d(path: Path, size: int) -> Path:
    """A huge size x size uint8 tiled deflate BigTIFF made quickly from a synthetic texture.

    Each tile is a window of a 2048 px synthetic texture chosen by the tile's position, plus
    a slow gradient, so the file compresses like a real image; memory is one texture.
    """
    if not path.exists():
        started = time.perf_counter()
        texture = synthetic_image((TEXTURE_SIZE, TEXTURE_SIZE), "uint8")[0]
        partial = path.with_name(path.name + ".partial")
        tifffile.imwrite(partial, _texture_tiles(texture, size), shape=(size, size),
                         dtype="uint8", tile=(TILE, TILE), bigtiff=True, compression="zlib",
                         compressionargs={"level": 1}, photometric="minisblack", metadata=None,
                         maxworkers=2)
        partial.rename(path)
        print(f"generated {path} in {time.perf_counter() - started:.0f} s")
    return path


def _texture_tiles(texture: numpy.ndarray, size: int) -> Iterator[numpy.ndarray]:
    span = TEXTURE_SIZE - TILE
    tiles = -(-size // TILE)
    for row in range(tiles):
        for col in range(tiles):
            y, x = (row * 389 + col * 97) % span, (col * 211 + row * 53) % span
            offset = numpy.uint8((row + col) * 64 // tiles)
            yield texture[y:y + TILE, x:x + TILE] + offset


def tiff_stack_3d(folder: Path, size: int) -> Path:
    """A folder of ``size`` uint16 TIFF slices of size x size px (uncompressed); cached.

    Slices are the 2D synthetic image shifted a little per slice, plus a depth gradient.
    """
    if not folder.exists():
        started = time.perf_counter()
        partial = folder.with_name(folder.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        base = synthetic_image((size, size), "uint16")[0] // 2
        for z in range(size):
            plane = numpy.roll(base, (z * 3, z * 2), axis=(0, 1)) + numpy.uint16(z * 16384 // size)
            tifffile.imwrite(partial / f"slice_{z:05d}.tif", plane, photometric="minisblack",
                             metadata=None)
        partial.rename(folder)
        print(f"generated {folder} in {time.perf_counter() - started:.0f} s")
    return folder


GENERATORS = {"2d": tiled_bigtiff_2d, "2d-fast": fast_tiled_bigtiff_2d, "3d": tiff_stack_3d}


if __name__ == "__main__":
    GENERATORS[sys.argv[1]](Path(sys.argv[2]), int(sys.argv[3]))
