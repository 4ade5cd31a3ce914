"""Tile, info and thumbnail endpoints: thin adapters over tiler, access checked on every request (see access.py)."""

from __future__ import annotations

import json
import re

from flask import Blueprint, Response, abort, jsonify, request

from portal.access import current_grant, issue_view_token
from tiler.display import parse_display
from tiler.histogram import channel_histograms
from tiler.render import open_pyramid
from tiler.reslice import render_view_tile, view_plane_sizes

blueprint = Blueprint("tiles", __name__, url_prefix="/api/v1/datasets")

FORMATS = {"jpg": ("jpeg", "image/jpeg"), "jpeg": ("jpeg", "image/jpeg"), "png": ("png", "image/png"),
           "webp": ("webp", "image/webp")}
TILE_CACHE_CONTROL = "private, max-age=86400"


def cached_response(etag: str, build) -> Response:
    if etag in request.if_none_match:
        response = Response(status=304)
    else:
        body, mimetype = build()
        response = Response(body, mimetype=mimetype)
    response.set_etag(etag)
    response.headers["Cache-Control"] = TILE_CACHE_CONTROL
    return response


@blueprint.get("/<dataset_id>/tiles/<int:level>/<int:row>/<int:col>.<ext>")
def tile(dataset_id: str, level: int, row: int, col: int, ext: str):
    """A tile of one plane (xy, xz or yz; `slice` along its normal) with display settings from the query string."""
    if ext not in FORMATS:
        abort(400, f"unknown tile format {ext!r}; use one of {', '.join(sorted(FORMATS))}")
    fmt, mimetype = FORMATS[ext]
    grant = current_grant(dataset_id)
    pyramid = open_pyramid(grant.pyramid)
    plane = request.args.get("plane", "xy")
    index = slice_argument(pyramid, plane)
    display = parse_display(request.args, pyramid.shape[0])
    etag = f"{grant.version}-{level}-{row}-{col}-{fmt}-{plane}{index}-{display.key()}"
    return cached_response(etag, lambda: (render_view_tile(pyramid, level, row, col, fmt=fmt, plane=plane,
                                                           index0=index, display=display), mimetype))


def slice_argument(pyramid, plane: str) -> int:
    """The `slice` query argument: a level-0 slice number along the plane's normal; the middle one by default."""
    text = request.args.get("slice")
    if text is None:
        return pyramid.plane_count(0, plane) // 2 if pyramid.ndim == 3 else 0
    if not re.fullmatch(r"[0-9]{1,9}", text):
        abort(400, f"slice must be a whole number (at most 9 digits), not {text[:20]!r}")
    return int(text)


@blueprint.get("/<dataset_id>/info")
def info(dataset_id: str):
    """What a viewer needs: size, tile size, levels, planes, channels, windows and physical sizes."""
    grant = current_grant(dataset_id)
    pyramid = open_pyramid(grant.pyramid)
    planes = ["xy", "xz", "yz"] if pyramid.ndim == 3 else ["xy"]
    height, width = pyramid.plane_shape(0, "xy")
    plane_sizes = view_plane_sizes(pyramid)
    return jsonify(
        id=dataset_id, version=grant.version, token=issue_view_token(grant), ndim=pyramid.ndim,
        tile_size=pyramid.tile_size, levels=[list(level) for level in pyramid.levels], width=width, height=height,
        depth=pyramid.shape[1] if pyramid.ndim == 3 else None, plane_sizes=plane_sizes,
        planes={plane: [{"shape": list(pyramid.plane_shape(level, plane)), "count": pyramid.plane_count(level, plane),
                         "scale": list(pyramid.plane_scale(level, plane))} for level in range(len(pyramid.levels))]
                for plane in planes},
        channels=pyramid.channel_names, colors=list(pyramid.colors), dtype=str(pyramid.dtype),
        windows=[list(window) for window in pyramid.windows],
        pixel_size=list(pyramid.pixel_size) if pyramid.pixel_size else None,
        voxel_size=list(pyramid.voxel_size) if getattr(pyramid, "voxel_size", None) else None, unit=pyramid.unit,
    )


@blueprint.get("/<dataset_id>/histogram")
def histogram(dataset_id: str):
    """Per-channel histograms (from the smallest level) for the viewer's contrast controls."""
    grant = current_grant(dataset_id)
    return cached_response(f"{grant.version}-histogram",
                           lambda: (json.dumps({"channels": channel_histograms(open_pyramid(grant.pyramid))}),
                                    "application/json"))


@blueprint.get("/<dataset_id>/thumbnail.png")
def thumbnail(dataset_id: str):
    grant = current_grant(dataset_id)
    path = grant.pyramid / "thumbnail.png"
    if not path.is_file():
        abort(404, "this pyramid has no thumbnail")
    return cached_response(f"{grant.version}-thumb", lambda: (path.read_bytes(), "image/png"))
