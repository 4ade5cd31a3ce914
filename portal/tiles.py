"""Tile, info and thumbnail endpoints: thin adapters over tiler, access checked on every request."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, request
from flask_login import current_user

from portal.context import db, storage
from portal.models import DatasetStatus
from portal.permissions import dataset_or_404
from tiler.render import open_pyramid, render_tile

blueprint = Blueprint("tiles", __name__, url_prefix="/api/v1/datasets")

FORMATS = {"jpg": ("jpeg", "image/jpeg"), "jpeg": ("jpeg", "image/jpeg"), "png": ("png", "image/png"),
           "webp": ("webp", "image/webp")}
GRANT_SECONDS = 10  # how long a checked (user, dataset) grant is reused without asking the database again
TILE_CACHE_CONTROL = "private, max-age=86400"


@dataclass(frozen=True)
class Grant:
    pyramid: Path
    version: str
    expires: float


class GrantCache:
    """Recently checked (user, dataset) → pyramid grants, so a tile does not cost a permission query."""

    def __init__(self, ttl: float = GRANT_SECONDS):
        self.ttl = ttl
        self._grants: dict[tuple[int, str], Grant] = {}
        self._lock = threading.Lock()

    def get(self, user_id: int, dataset_id: str) -> Grant:
        key = (user_id, dataset_id)
        with self._lock:
            grant = self._grants.get(key)
        if grant is not None and grant.expires > time.monotonic():
            return grant
        dataset = dataset_or_404(db(), current_user, dataset_id)
        if dataset.status != DatasetStatus.READY.value or not dataset.pyramid_path:
            abort(409, f"dataset {dataset_id} is {dataset.status}, it has no pyramid yet")
        version = hashlib.sha256(f"{dataset.pyramid_path}|{dataset.updated_at.isoformat()}".encode()).hexdigest()[:16]
        grant = Grant(storage().absolute(dataset.pyramid_path), version, time.monotonic() + self.ttl)
        with self._lock:
            if len(self._grants) > 10_000:
                self._grants.clear()
            self._grants[key] = grant
        return grant


grants = GrantCache()


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
    grant = grants.get(current_user.id, dataset_id)
    etag = f"{grant.version}-{level}-{row}-{col}-{fmt}"
    return cached_response(etag, lambda: (render_tile(open_pyramid(grant.pyramid), level, row, col, fmt=fmt), mimetype))


@blueprint.get("/<dataset_id>/info")
def info(dataset_id: str):
    """What a viewer needs: size, tile size, levels, channels and physical pixel size."""
    grant = grants.get(current_user.id, dataset_id)
    pyramid = open_pyramid(grant.pyramid)
    return jsonify(
        id=dataset_id, version=grant.version, tile_size=pyramid.tile_size, levels=[list(lv) for lv in pyramid.levels],
        width=pyramid.levels[0][1], height=pyramid.levels[0][0], channels=pyramid.channel_names,
        dtype=str(pyramid.dtype), windows=[list(w) for w in pyramid.windows],
        pixel_size=list(pyramid.pixel_size) if pyramid.pixel_size else None, unit=pyramid.unit,
    )


@blueprint.get("/<dataset_id>/thumbnail.png")
def thumbnail(dataset_id: str):
    grant = grants.get(current_user.id, dataset_id)
    path = grant.pyramid / "thumbnail.png"
    if not path.is_file():
        abort(404, "this pyramid has no thumbnail")
    return cached_response(f"{grant.version}-thumb", lambda: (path.read_bytes(), "image/png"))
