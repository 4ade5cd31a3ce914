"""Tile, info and thumbnail endpoints: thin adapters over tiler, access checked on every request (see access.py)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, request

from portal.access import current_grant, issue_view_token
from tiler.render import open_pyramid, render_tile

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
    if ext not in FORMATS:
        abort(400, f"unknown tile format {ext!r}; use one of {', '.join(sorted(FORMATS))}")
    fmt, mimetype = FORMATS[ext]
    grant = current_grant(dataset_id)
    etag = f"{grant.version}-{level}-{row}-{col}-{fmt}"
    return cached_response(etag, lambda: (render_tile(open_pyramid(grant.pyramid), level, row, col, fmt=fmt), mimetype))


@blueprint.get("/<dataset_id>/info")
def info(dataset_id: str):
    """What a viewer needs: size, tile size, levels, channels and physical pixel size."""
    grant = current_grant(dataset_id)
    pyramid = open_pyramid(grant.pyramid)
    return jsonify(
        id=dataset_id, version=grant.version, token=issue_view_token(grant), tile_size=pyramid.tile_size, levels=[list(lv) for lv in pyramid.levels],
        width=pyramid.levels[0][1], height=pyramid.levels[0][0], channels=pyramid.channel_names,
        dtype=str(pyramid.dtype), windows=[list(w) for w in pyramid.windows],
        pixel_size=list(pyramid.pixel_size) if pyramid.pixel_size else None, unit=pyramid.unit,
    )


@blueprint.get("/<dataset_id>/thumbnail.png")
def thumbnail(dataset_id: str):
    grant = current_grant(dataset_id)
    path = grant.pyramid / "thumbnail.png"
    if not path.is_file():
        abort(404, "this pyramid has no thumbnail")
    return cached_response(f"{grant.version}-thumb", lambda: (path.read_bytes(), "image/png"))
