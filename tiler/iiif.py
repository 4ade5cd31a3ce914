"""IIIF Image API 3.0 over a pyramid (a volume's xy slices): parse requests, describe, render them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy
from PIL import Image

from tiler.display import DisplaySettings, encode_image, resolved_pixels
from tiler.errors import OutOfRange, TilerError
from tiler.render import Pyramid

__all__ = ["IIIF_CONTEXT", "IIIF_FORMATS", "IIIFError", "ImageRequest", "image_size", "info_json", "parse_request",
           "render_request"]

IIIF_CONTEXT = "http://iiif.io/api/image/3/context.json"
IIIF_PROFILE = "http://iiif.io/api/image"
#: IIIF format extension → tiler encoding.
IIIF_FORMATS = {"jpg": "jpeg", "png": "png", "webp": "webp"}
IIIF_QUALITIES = ("default", "color", "gray", "bitonal")
_NUMBER = r"\d{1,9}(?:\.\d{1,6})?"  # bounded, so no overflow, no infinity and no 4300-digit integers


class IIIFError(TilerError):
    """A syntactically or semantically invalid IIIF request (HTTP 400)."""


@dataclass(frozen=True)
class ImageRequest:
    """A parsed, validated request: a full-resolution pixel box, an output size and what to do with it."""

    x: int
    y: int
    width: int
    height: int
    out_width: int
    out_height: int
    rotation: int  # 0, 90, 180 or 270 degrees clockwise
    mirror: bool
    quality: str
    fmt: str  # tiler encoding name


def parse_request(image_size: tuple[int, int], region: str, size: str, rotation: str, quality: str, fmt: str,
                  *, max_area: int) -> ImageRequest:
    """Validate the five IIIF path parameters against an image of `image_size` (width, height)."""
    if fmt not in IIIF_FORMATS:
        raise IIIFError(f"unsupported format {fmt!r}; use one of {', '.join(IIIF_FORMATS)}")
    if quality not in IIIF_QUALITIES:
        raise IIIFError(f"unsupported quality {quality!r}; use one of {', '.join(IIIF_QUALITIES)}")
    x, y, w, h = _parse_region(region, *image_size)
    out_w, out_h = _parse_size(size, w, h, max_area)
    degrees, mirror = _parse_rotation(rotation)
    return ImageRequest(x, y, w, h, out_w, out_h, degrees, mirror, quality, IIIF_FORMATS[fmt])


def _parse_region(region: str, width: int, height: int) -> tuple[int, int, int, int]:
    if region == "full":
        return 0, 0, width, height
    if region == "square":
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    match = re.fullmatch(rf"(pct:)?({_NUMBER}),({_NUMBER}),({_NUMBER}),({_NUMBER})", region)
    if not match:
        raise IIIFError(f"invalid region {region!r}: use full, square, x,y,w,h or pct:x,y,w,h")
    values = [float(v) for v in match.groups()[1:]]
    if match.group(1):
        x, y = values[0] * width / 100, values[1] * height / 100
        w, h = values[2] * width / 100, values[3] * height / 100
    else:
        if any(v != int(v) for v in values):
            raise IIIFError(f"invalid region {region!r}: pixel regions take whole numbers")
        x, y, w, h = values
    if w <= 0 or h <= 0:
        raise IIIFError(f"invalid region {region!r}: width and height must be positive")
    if x >= width or y >= height:
        raise IIIFError(f"region {region!r} lies outside the {width}×{height} image")
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    x1, y1 = min(width, int(math.ceil(x + w))), min(height, int(math.ceil(y + h)))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def _parse_size(size: str, w: int, h: int, max_area: int) -> tuple[int, int]:
    upscale = size.startswith("^")
    spec = size[1:] if upscale else size
    if spec == "max":
        out_w, out_h = w, h
        if w * h > max_area:  # "max" means the largest size the server allows
            scale = math.sqrt(max_area / (w * h))
            out_w, out_h = max(1, int(w * scale)), max(1, int(h * scale))
        return out_w, out_h
    if match := re.fullmatch(rf"pct:({_NUMBER})", spec):
        scale = float(match.group(1)) / 100
        out_w, out_h = round(w * scale), round(h * scale)
    elif match := re.fullmatch(r"(!)?(\d{0,9}),(\d{0,9})", spec):
        confined, sw, sh = match.group(1), match.group(2), match.group(3)
        if not sw and not sh or confined and not (sw and sh):
            raise IIIFError(f"invalid size {size!r}")
        if confined:
            scale = min(int(sw) / w, int(sh) / h)
            out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
        elif sw and sh:
            out_w, out_h = int(sw), int(sh)
        elif sw:
            out_w, out_h = int(sw), max(1, round(h * int(sw) / w))
        else:
            out_w, out_h = max(1, round(w * int(sh) / h)), int(sh)
    else:
        raise IIIFError(f"invalid size {size!r}: use max, w,, ,h, pct:n, w,h or !w,h (optionally with ^)")
    if out_w < 1 or out_h < 1:
        raise IIIFError(f"size {size!r} gives an empty image")
    if not upscale and (out_w > w or out_h > h):
        raise IIIFError(f"size {size!r} is larger than the {w}×{h} region; prefix it with ^ to upscale")
    if out_w * out_h > max_area:
        raise IIIFError(f"size {out_w}×{out_h} exceeds the limit of {max_area} pixels per request")
    return out_w, out_h


def _parse_rotation(rotation: str) -> tuple[int, bool]:
    mirror = rotation.startswith("!")
    value = rotation[1:] if mirror else rotation
    if not re.fullmatch(_NUMBER, value):
        raise IIIFError(f"invalid rotation {rotation!r}")
    degrees = float(value)
    if degrees > 360 or degrees % 90:
        raise IIIFError(f"rotation {rotation!r} is not supported: use 0, 90, 180 or 270, optionally with !")
    return int(degrees) % 360, mirror


def best_level(pyramid: Pyramid, request: ImageRequest) -> int:
    """The coarsest level that still has at least as many pixels as the output needs."""
    scale = max(request.out_width / request.width, request.out_height / request.height)
    level = int(math.floor(math.log2(1 / scale))) if scale < 1 else 0
    return max(0, min(level, len(pyramid.levels) - 1))


def image_size(pyramid: Pyramid) -> tuple[int, int]:
    """(width, height) of the full-resolution image (of each xy slice of a volume)."""
    height, width = pyramid.plane_shape(0, "xy")
    return width, height


def render_request(pyramid: Pyramid, request: ImageRequest, *, index: int | None = None,
                   display: DisplaySettings | None = None) -> bytes:
    """Read only the region's pixels from the best level, resample, rotate and encode them.

    For a volume the image is xy slice ``index`` of level 0 (default: the middle slice), taken
    from the matching slice of the level read; ``display`` as for ``render_tile``.
    """
    resolved = (display or DisplaySettings()).resolve(pyramid.windows, pyramid.colors)
    if index is None:
        index = pyramid.plane_count(0, "xy") // 2
    level = best_level(pyramid, request)
    z = pyramid.level_slice(level, "xy", index)
    factor = 2 ** level
    height, width = pyramid.plane_shape(level, "xy")
    x0, y0 = request.x // factor, request.y // factor
    x1 = min(width, max(x0 + 1, math.ceil((request.x + request.width) / factor)))
    y1 = min(height, max(y0 + 1, math.ceil((request.y + request.height) / factor)))
    if x0 >= width or y0 >= height:
        raise OutOfRange(f"region starts outside level {level} ({width}×{height})")
    data = pyramid.read_plane(level, "xy", z, y0, y1, x0, x1, channels=resolved.channels)
    pixels = resolved_pixels(data, resolved)
    image = Image.fromarray(pixels)
    if image.size != (request.out_width, request.out_height):
        image = image.resize((request.out_width, request.out_height), Image.Resampling.LANCZOS)
    if request.mirror:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if request.rotation:
        image = image.rotate(-request.rotation, expand=True)
    if request.quality == "gray":
        image = image.convert("L")
    elif request.quality == "bitonal":
        image = image.convert("L").point(lambda value: 255 if value >= 128 else 0)
    return encode_image(numpy.asarray(image), request.fmt)


def info_json(pyramid: Pyramid, service_id: str, *, max_area: int) -> dict:
    """The info.json of a pyramid: size, tiles at every level's scale factor, sizes and what is supported."""
    width, height = image_size(pyramid)
    info = {
        "@context": IIIF_CONTEXT,
        "id": service_id,
        "type": "ImageService3",
        "protocol": IIIF_PROFILE,
        "profile": "level2",
        "width": width,
        "height": height,
        "maxArea": max_area,
        "tiles": [{"width": pyramid.tile_size, "scaleFactors": [2 ** level for level in range(len(pyramid.levels))]}],
        "sizes": [{"width": w, "height": h} for h, w in
                  (pyramid.plane_shape(level, "xy") for level in reversed(range(len(pyramid.levels))))],
        "extraFormats": ["png", "webp"],
        "extraQualities": ["color", "gray", "bitonal"],
        "extraFeatures": ["mirroring", "regionByPct", "regionByPx", "regionSquare", "rotationBy90s", "sizeByConfinedWh",
                          "sizeByH", "sizeByPct", "sizeByW", "sizeByWh", "sizeUpscaling", "cors", "jsonldMediaType",
                          "baseUriRedirect", "profileLinkHeader"],
    }
    return info
