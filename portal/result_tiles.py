"""A result's label overlay and objects: label-pyramid info and tiles, object pages, the object under a point."""

from __future__ import annotations

import re

from flask import Blueprint, abort, jsonify, request

from portal.context import storage
from portal.result_access import issue_label_token, labels_grant, result_access, result_folder
from portal.result_objects import object_row, page
from portal.tiles import cached_response, slice_argument
from tiler.label_render import render_label_tile
from tiler.render import open_pyramid
from tiler.reslice import view_plane_sizes

blueprint = Blueprint("result_tiles", __name__, url_prefix="/api/v1/results")


@blueprint.get("/<result_id>/labels/info")
def label_info(result_id: str):
    """Like a dataset's info: levels, tile size and plane sizes of the label pyramid, plus a label token."""
    access = result_access(result_id)
    path, version = labels_grant(result_id)
    labels = open_pyramid(path)
    height, width = labels.plane_shape(0, "xy")
    return jsonify(id=result_id, version=version, token=issue_label_token(access.result), ndim=labels.ndim,
                   tile_size=labels.tile_size, levels=[list(level) for level in labels.levels], width=width,
                   height=height, depth=labels.shape[1] if labels.ndim == 3 else None,
                   plane_sizes=view_plane_sizes(labels), max_label=int(access.result.summary.get("object_count", 0)))


@blueprint.get("/<result_id>/labels/tiles/<int:level>/<int:row>/<int:col>.png")
def label_tile(result_id: str, level: int, row: int, col: int):
    """An RGBA overlay tile: a colour per object (or its outline with outline=1), aligned with the image tile."""
    path, version = labels_grant(result_id)
    labels = open_pyramid(path)
    plane = request.args.get("plane", "xy")
    index = slice_argument(labels, plane)
    outline = request.args.get("outline", "0") == "1"
    etag = f"{version}-{level}-{row}-{col}-{plane}{index}-{int(outline)}"
    return cached_response(etag, lambda: (render_label_tile(labels, level, row, col, plane=plane, index0=index,
                                                            outline=outline), "image/png"))


@blueprint.get("/<result_id>/objects")
def objects(result_id: str):
    """A sorted page of the measurement table: ?sort=<column>&order=asc|desc&offset=&limit=."""
    result = result_access(result_id).result
    folder = result_folder(result)
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        abort(400, "order must be asc or desc")
    return jsonify(page(storage().local_copy(folder / "objects.npy"), sort=request.args.get("sort", "label"), descending=order == "desc",
                        offset=_whole("offset", 0), limit=_whole("limit", 50),
                        unit=result.summary.get("unit_symbol") or "px"))


@blueprint.get("/<result_id>/objects/at")
def object_at(result_id: str):
    """The object under level-0 pixel (x, y[, z]) and its measurements, or label 0 for background."""
    access = result_access(result_id)
    folder = result_folder(access.result)
    labels = open_pyramid(folder / "labels.ome.zarr")
    x, y = _whole("x", None), _whole("y", None)
    z = _whole("z", 0) if labels.ndim == 3 else 0
    _, *zyx = labels.shape
    limits = dict(zip("zyx", zyx)) if labels.ndim == 3 else {"y": zyx[0], "x": zyx[1]}
    for name, value in (("x", x), ("y", y), ("z", z)):
        if name in limits and not value < limits[name]:
            abort(404, f"{name}={value} is outside the image (0 to {limits[name] - 1})")
    label = int(labels.read_plane(0, "xy", z, y, y + 1, x, x + 1, channels=[0])[0, 0, 0])
    row = object_row(storage().local_copy(folder / "objects.npy"), label) if label else None
    return jsonify(label=label if row is not None else 0, object=row)


def _whole(name: str, default: int | None) -> int:
    text = request.args.get(name)
    if text is None:
        if default is None:
            abort(400, f"{name} is required")
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text):
        abort(400, f"{name} must be a whole number >= 0 (at most 9 digits), not {text[:20]!r}")
    return int(text)
