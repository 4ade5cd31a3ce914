"""IIIF Image API 3.0 and Deep Zoom endpoints for every dataset (volumes: the xy slice `?slice=`, middle by default)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, request, url_for

from portal.context import settings
from portal.access import current_grant
from portal.tiles import cached_response, slice_argument
from tiler.deepzoom import dzi_tile, dzi_xml
from tiler.iiif import image_size, info_json, parse_request, render_request
from tiler.render import open_pyramid

blueprint = Blueprint("iiif", __name__)

MIMETYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
DZI_FORMATS = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp"}


@blueprint.after_request
def allow_any_origin(response: Response) -> Response:
    """IIIF clients are often served from elsewhere: any origin may read, but never with the user's cookies
    (no credentials); such clients authenticate with a viewer token, and access is still checked per request."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@blueprint.get("/iiif/3/<dataset_id>")
def iiif_base(dataset_id: str):
    current_grant(dataset_id)  # access is checked on every request, redirects included
    return redirect(url_for("iiif.iiif_info", dataset_id=dataset_id), code=303)


@blueprint.get("/iiif/3/<dataset_id>/info.json")
def iiif_info(dataset_id: str):
    grant = current_grant(dataset_id)
    service_id = url_for("iiif.iiif_base", dataset_id=dataset_id, _external=True)
    response = jsonify(info_json(open_pyramid(grant.pyramid), service_id, max_area=settings().max_region_pixels))
    if "application/ld+json" in request.headers.get("Accept", ""):
        response.mimetype = "application/ld+json"
        response.headers["Content-Type"] = 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'
    response.headers["Link"] = '<http://iiif.io/api/image/3/level2.json>;rel="profile"'
    return response


@blueprint.get("/iiif/3/<dataset_id>/<region>/<size>/<rotation>/<quality>.<fmt>")
def iiif_image(dataset_id: str, region: str, size: str, rotation: str, quality: str, fmt: str):
    grant = current_grant(dataset_id)
    pyramid = open_pyramid(grant.pyramid)
    image_request = parse_request(image_size(pyramid), region, size, rotation, quality, fmt,
                                  max_area=settings().max_region_pixels)
    index = slice_argument(pyramid, "xy")
    etag = f"{grant.version}-iiif-{region}-{size}-{rotation}-{quality}-{fmt}-{index}"
    response = cached_response(etag, lambda: (render_request(pyramid, image_request, index=index),
                                              MIMETYPES[image_request.fmt]))
    response.headers["Link"] = '<http://iiif.io/api/image/3/level2.json>;rel="profile"'
    return response


@blueprint.get("/dzi/<dataset_id>.dzi")
def dzi_descriptor(dataset_id: str):
    grant = current_grant(dataset_id)
    return cached_response(f"{grant.version}-dzi", lambda: (dzi_xml(open_pyramid(grant.pyramid)), "application/xml"))


@blueprint.get("/dzi/<dataset_id>_files/<int:level>/<int:col>_<int:row>.<ext>")
def dzi_image_tile(dataset_id: str, level: int, col: int, row: int, ext: str):
    grant = current_grant(dataset_id)
    fmt = DZI_FORMATS.get(ext, ext)
    pyramid = open_pyramid(grant.pyramid)
    index = slice_argument(pyramid, "xy")
    etag = f"{grant.version}-dzi-{level}-{col}-{row}-{fmt}-{index}"
    return cached_response(etag, lambda: (dzi_tile(pyramid, level, col, row, fmt, index=index), MIMETYPES.get(fmt)))
