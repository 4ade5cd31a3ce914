"""Tilescope's imaging core: format readers, the OME-Zarr pyramid writer and the tile renderer."""

from __future__ import annotations

import importlib
from typing import Any

# Typical use, e.g. from a notebook:
#
#     import tiler
#     with tiler.open_image("scan.tif") as source:
#         summary = tiler.write_pyramid(source, "pyramids/scan.ome.zarr")
#     pyramid = tiler.open_pyramid(summary.path)
#     jpeg_bytes = tiler.render_tile(pyramid, level=0, row=0, col=0)
#
# Nothing heavy happens at import time: the readers, writer and renderer load on first use.
from tiler.errors import CorruptImage, ImageTooLarge, OutOfRange, TilerError, UnsupportedFormat

__all__ = [
    "CorruptImage",
    "ImageSource",
    "ImageTooLarge",
    "OutOfRange",
    "Pyramid",
    "PyramidSummary",
    "TilerError",
    "UnsupportedFormat",
    "VolumeSource",
    "build_pyramid",
    "open_image",
    "open_raw_volume",
    "open_pyramid",
    "render_tile",
    "write_pyramid",
    "write_volume_pyramid",
]

#: Public names imported on first use, so ``import tiler`` stays cheap (no zarr/tifffile load).
_LAZY = {
    "ImageSource": "tiler.readers.base",
    "open_image": "tiler.readers",
    "Pyramid": "tiler.render",
    "open_pyramid": "tiler.render",
    "render_tile": "tiler.render",
    "PyramidSummary": "tiler.pyramid",
    "write_pyramid": "tiler.pyramid",
    "VolumeSource": "tiler.readers.volume_base",
    "open_raw_volume": "tiler.readers",
    "write_volume_pyramid": "tiler.volume_pyramid",
    "build_pyramid": "tiler.convert",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tiler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
