"""Label-pyramid tiles for the viewer's overlay: a stable colour per object (RGBA PNG), filled or outlines only."""

from __future__ import annotations

import io

import numpy
from PIL import Image

from tiler.pyramid_reader import Pyramid
from tiler.reslice import view_tile_data

#: Colours cycle through this many hues; neighbouring label ids get far-apart hues (golden ratio).
PALETTE_SIZE = 4096
_GOLDEN = 0.618033988749895


def _palette(size: int = PALETTE_SIZE) -> numpy.ndarray:
    """(size, 3) uint8 bright, saturated colours; entry i is the colour of every label ≡ i (mod size)."""
    hue = (numpy.arange(size) * _GOLDEN) % 1.0
    saturation = 0.65 + 0.35 * ((numpy.arange(size) * 7) % 3) / 2
    value = numpy.full(size, 1.0)
    i = numpy.floor(hue * 6).astype(int) % 6
    f = hue * 6 - numpy.floor(hue * 6)
    p, q, t = value * (1 - saturation), value * (1 - f * saturation), value * (1 - (1 - f) * saturation)
    choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)]
    rgb = numpy.zeros((size, 3))
    for k, (r, g, b) in enumerate(choices):
        rgb[i == k] = numpy.stack([r, g, b], axis=1)[i == k]
    return (rgb * 255).round().astype(numpy.uint8)


PALETTE = _palette()


def label_color(label: int) -> str:
    """The overlay's colour of object `label` as #rrggbb (the same the tiles use)."""
    r, g, b = PALETTE[int(label) % PALETTE_SIZE]
    return f"#{r:02x}{g:02x}{b:02x}"


def outline_mask(labels: numpy.ndarray) -> numpy.ndarray:
    """Pixels of an object whose 4-neighbour belongs to another object or to the background."""
    edge = numpy.zeros(labels.shape, dtype=bool)
    differs_v = labels[1:, :] != labels[:-1, :]
    differs_h = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= differs_v
    edge[:-1, :] |= differs_v
    edge[:, 1:] |= differs_h
    edge[:, :-1] |= differs_h
    return edge & (labels != 0)


def label_pixels(labels: numpy.ndarray, *, outline: bool = False) -> numpy.ndarray:
    """(h, w, 4) RGBA: each object in its colour, background transparent; only borders with `outline`."""
    shown = labels != 0
    if outline:
        shown = outline_mask(labels)
    rgba = numpy.zeros(labels.shape + (4,), dtype=numpy.uint8)
    rgba[shown, :3] = PALETTE[(labels[shown] % PALETTE_SIZE).astype(numpy.intp)]
    rgba[shown, 3] = 255  # transparent pixels stay (0, 0, 0, 0): no tint for clients that ignore alpha
    return rgba


def render_label_tile(labels: Pyramid, level: int, row: int, col: int, *, plane: str = "xy", index0: int = 0,
                      outline: bool = False) -> bytes:
    """PNG (RGBA) of view tile (row, col) of a label pyramid, aligned with the image's tile of the same address."""
    data = view_tile_data(labels, level, row, col, plane=plane, index0=index0, channels=[0])[0]
    buffer = io.BytesIO()
    Image.fromarray(label_pixels(data, outline=outline), "RGBA").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
