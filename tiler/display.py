"""Display mapping: default colours and windows, channels to 8-bit grey/RGB, and image encoding."""

from __future__ import annotations

import functools
import io

import imagecodecs
import numpy
from PIL import Image

from tiler.colormaps import GREY_NAMES, colormap_table, is_colormap
from tiler.display_settings import DisplaySettings, ResolvedDisplay, parse_display
from tiler.errors import UnsupportedTileFormat
from tiler.ome_zarr_format import ChannelDisplay
from tiler.readers.base import RGB_CHANNEL_NAMES

__all__ = [
    "TILE_FORMATS",
    "WINDOW_PERCENTILES",
    "DisplaySettings",
    "ResolvedDisplay",
    "channel_displays",
    "check_tile_format",
    "default_colors",
    "encode_image",
    "parse_display",
    "resolved_pixels",
    "to_display_pixels",
]

#: Percentiles of the lowest pyramid level used as the default display window.
WINDOW_PERCENTILES = (0.1, 99.9)
#: Colours for multi-channel (non-RGB) images, in channel order, repeating.
CHANNEL_COLORS = ("00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF", "FFFFFF")
#: Tile encodings: format name -> (Pillow format, MIME type).
TILE_FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"),
                "webp": ("WEBP", "image/webp")}
#: The JPEG quality Pillow uses for ``quality=-1`` (libjpeg's default).
_PIL_DEFAULT_QUALITY = 75


def default_colors(channel_names: list[str]) -> list[str]:
    """White for one channel, red/green/blue for an RGB image, else a repeating palette."""
    if len(channel_names) == 1:
        return ["FFFFFF"]
    if list(channel_names) == RGB_CHANNEL_NAMES:
        return ["FF0000", "00FF00", "0000FF"]
    return [CHANNEL_COLORS[index % len(CHANNEL_COLORS)] for index in range(len(channel_names))]


def channel_displays(
    sample: numpy.ndarray, dtype: numpy.dtype, channel_names: list[str],
    colors: list[str | None] | None = None,
) -> list[ChannelDisplay]:
    """Default display settings per channel from a small (c, y, x) ``sample`` of the image.

    The window is the WINDOW_PERCENTILES of the sample; the slider range is the dtype's range
    for integers and the sample's finite range for floats.  ``colors`` (hex RRGGBB per channel,
    e.g. from a file's own metadata) replace the default colours where given.
    """
    dtype = numpy.dtype(dtype)
    displays = []
    chosen = default_colors(channel_names)
    if colors is not None and len(colors) == len(chosen):
        chosen = [_normal_color(given) or default for given, default in zip(colors, chosen,
                                                                            strict=True)]
    for label, color, plane in zip(channel_names, chosen, sample, strict=True):
        finite = plane[numpy.isfinite(plane)] if dtype.kind == "f" else plane.ravel()
        if finite.size:
            low, high = (float(v) for v in numpy.percentile(finite, WINDOW_PERCENTILES))
            data_min, data_max = float(finite.min()), float(finite.max())
        else:
            low = high = data_min = data_max = 0.0
        if dtype.kind in "iu":
            info = numpy.iinfo(dtype)
            minimum, maximum = float(info.min), float(info.max)
            low, high = float(numpy.floor(low)), float(numpy.ceil(high))
        else:
            minimum, maximum = data_min, data_max
        if high <= low:  # flat image: any value at or above `low` shows as full colour
            high = low + (1.0 if dtype.kind in "iu" else max(abs(low) * 1e-6, 1e-12))
            maximum = max(maximum, high)
        displays.append(ChannelDisplay(label=label, color=color, start=low, end=high,
                                       minimum=minimum, maximum=maximum))
    return displays


def to_display_pixels(
    data: numpy.ndarray, windows: list[tuple[float, float]], colors: list[str], *,
    gamma: float = 1.0, invert: bool = False, colormap: str | None = None,
) -> numpy.ndarray:
    """Map (c, h, w) data to uint8: (h, w) grey for one white or grey channel, else (h, w, 3) RGB.

    Each channel is scaled linearly so that its window start is 0 and end is 255 (clipped),
    bent by ``gamma`` (v ** gamma on [0, 1]) and flipped if ``invert``, then tinted by its colour;
    several channels add up (clipped at full brightness).  A lone channel may instead go through
    a colormap: ``colormap`` or a colormap name as its colour.  No channels give black.
    """
    count = data.shape[0]
    if len(windows) != count or len(colors) != count:
        raise ValueError("need one window and one colour per channel")
    if colormap is not None:
        if count != 1:
            raise ValueError("a colormap shows exactly one channel")
        colors = [colormap]
    if count == 0:
        return numpy.zeros(data.shape[1:], dtype=numpy.uint8)
    if count == 1 and (is_colormap(colors[0]) or colors[0].lstrip("#").upper() == "FFFFFF"):
        grey = window_to_8bit(data[0], *windows[0], gamma=gamma, invert=invert)
        if not is_colormap(colors[0]) or colors[0].lower() in GREY_NAMES:
            return grey
        return colormap_table(colors[0])[grey]
    if any(is_colormap(color) for color in colors):
        raise ValueError("a colormap shows exactly one channel")
    height, width = data.shape[1:]
    composite = numpy.zeros((height, width, 3), dtype=numpy.float32)
    for plane, (start, end), color in zip(data, windows, colors, strict=True):
        scaled = window_to_8bit(plane, start, end, gamma=gamma, invert=invert, rounded=False)
        for component, weight in enumerate(_rgb_weights(color)):
            if weight == 1.0:
                composite[..., component] += scaled
            elif weight:
                composite[..., component] += scaled * numpy.float32(weight)
    numpy.clip(composite, 0, 255, out=composite)
    return numpy.rint(composite).astype(numpy.uint8)


def resolved_pixels(data: numpy.ndarray, display: ResolvedDisplay) -> numpy.ndarray:
    """``to_display_pixels`` of the (c, h, w) ``data`` of ``display.channels``."""
    return to_display_pixels(data, list(display.windows), list(display.colors),
                             gamma=display.gamma, invert=display.invert)


def window_to_8bit(
    plane: numpy.ndarray, start: float, end: float, *, gamma: float = 1.0, invert: bool = False,
    rounded: bool = True,
) -> numpy.ndarray:
    """Window [start, end] -> [0, 255] (clipped, NaN 0), gamma, invert: uint8, or float32 if not
    ``rounded``.  8- and 16-bit integers go through a cached lookup table of the same values;
    a uint8 plane that the table leaves unchanged (window 0-255, no gamma or invert) is
    returned as it is, not copied."""
    dtype = plane.dtype
    if dtype.kind in "iu" and dtype.itemsize <= 2 and dtype.isnative:
        settings = (dtype.str, float(start), float(end), float(gamma), bool(invert), rounded)
        index = plane.view(f"u{dtype.itemsize}") if dtype.kind == "i" else plane
        if rounded and dtype.itemsize == 1:
            return _lookup_bytes(index, settings)
        return numpy.take(_window_table(*settings), index)
    return _window_values(plane, start, end, gamma, invert, rounded)


def _lookup_bytes(plane: numpy.ndarray, settings: tuple) -> numpy.ndarray:
    """The uint8 table of ``settings`` applied to the uint8 ``plane``: two pixels per lookup
    (as uint16, in a 65536-entry table of pairs) where the rows allow it, which halves the
    cost of numpy's take."""
    if _is_identity(*settings):
        return plane
    if plane.ndim and plane.shape[-1] % 2 == 0 and plane.strides[-1] == 1:
        pairs = plane.view(numpy.uint16)
        return numpy.take(_pair_table(*settings), pairs, mode="clip").view(numpy.uint8)
    return numpy.take(_window_table(*settings), plane)


@functools.lru_cache(maxsize=32)
def _window_table(dtype: str, start: float, end: float, gamma: float, invert: bool,
                  rounded: bool) -> numpy.ndarray:
    """Display value of every value of a small integer dtype, indexed by its unsigned bits."""
    size = numpy.dtype(dtype).itemsize
    values = numpy.arange(1 << (8 * size), dtype=f"u{size}").view(dtype)
    table = _window_values(values, start, end, gamma, invert, rounded)
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=32)
def _pair_table(*settings) -> numpy.ndarray:
    """``_window_table`` of a 1-byte dtype for two pixels at once: entry ``a | b << 8`` (two
    adjacent bytes read as one little- or big-endian uint16) holds their two display bytes."""
    table = _window_table(*settings)
    pairs = numpy.empty((256, 256, 2), dtype=numpy.uint8)  # [second byte, first byte]
    pairs[..., 0] = table[None, :]
    pairs[..., 1] = table[:, None]
    if numpy.little_endian:
        result = pairs.reshape(-1).view(numpy.uint16)
    else:
        result = pairs.transpose(1, 0, 2).copy().reshape(-1).view(numpy.uint16)
    result.flags.writeable = False
    return result


@functools.lru_cache(maxsize=32)
def _is_identity(*settings) -> bool:
    table = _window_table(*settings)
    return bool((table == numpy.arange(256)).all())


def _window_values(plane: numpy.ndarray, start: float, end: float, gamma: float, invert: bool,
                   rounded: bool) -> numpy.ndarray:
    span = end - start if end > start else 1e-12
    scaled = (plane.astype(numpy.float32) - numpy.float32(start)) * numpy.float32(255.0 / span)
    numpy.nan_to_num(scaled, copy=False, nan=0.0)
    numpy.clip(scaled, 0, 255, out=scaled)
    if gamma != 1.0:
        scaled *= numpy.float32(1 / 255)
        numpy.power(scaled, numpy.float32(gamma), out=scaled)
        scaled *= numpy.float32(255)
    if invert:
        numpy.subtract(numpy.float32(255), scaled, out=scaled)
    return numpy.rint(scaled).astype(numpy.uint8) if rounded else scaled


def _normal_color(color: str | None) -> str | None:
    """"#ff8800" or "FF8800" -> "FF8800"; None for anything that is not a hex RRGGBB colour."""
    value = str(color).lstrip("#").upper() if color else ""
    return value if len(value) == 6 and all(c in "0123456789ABCDEF" for c in value) else None


def _rgb_weights(color: str) -> tuple[float, float, float]:
    """Hex RRGGBB -> per-component weights in [0, 1]."""
    value = color.lstrip("#")
    try:
        return tuple(int(value[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        return (1.0, 1.0, 1.0)


def check_tile_format(fmt: str) -> str:
    """Return the normalised tile format name, or raise UnsupportedTileFormat."""
    key = str(fmt).lower()
    if key not in TILE_FORMATS:
        raise UnsupportedTileFormat(
            f"unknown tile format {fmt!r}; use one of {', '.join(sorted(TILE_FORMATS))}"
        )
    return key


def encode_image(pixels: numpy.ndarray, fmt: str = "jpeg", *, quality: int = 85) -> bytes:
    """Encode uint8 grey (h, w) or RGB (h, w, 3) pixels as JPEG, PNG or WebP bytes.

    JPEG goes straight to libjpeg-turbo (imagecodecs), which gives the same bytes as Pillow's
    ``save(quality=...)`` without its per-image overhead (about 0.07 ms a tile).
    """
    key = check_tile_format(fmt)
    if key == "jpeg":
        return imagecodecs.jpeg8_encode(numpy.ascontiguousarray(pixels),
                                        level=_PIL_DEFAULT_QUALITY if quality == -1 else int(quality))
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    if key == "png":
        image.save(buffer, format="PNG", compress_level=1)
    else:
        image.save(buffer, format=TILE_FORMATS[key][0], quality=int(quality))
    return buffer.getvalue()
