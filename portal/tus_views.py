"""The tus 1.0 endpoints under /api/v1/projects/<id>/uploads and the browser upload page: thin adapters over
portal.tus and portal.upload_groups."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    jsonify,
    make_response,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import http_date

from portal import tus
from portal.context import db, settings, storage
from portal.datasets import EmptyUpload
from portal.jobs import QueueUnavailable
from portal.models import Dataset, Role, Upload
from portal.permissions import project_or_404
from portal.upload_groups import complete_upload
from tiler.errors import TilerError

blueprint = Blueprint("uploads", __name__)
UPLOADS_URL = "/api/v1/projects/<int:project_id>/uploads"


@blueprint.after_request
def _tus_headers(response):
    if request.path.startswith("/api/"):
        response.headers["Tus-Resumable"] = tus.TUS_VERSION
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@blueprint.errorhandler(tus.TusError)
def _tus_error(exc: tus.TusError):
    # read what is left of a refused body (up to 64 MiB), or gunicorn closes the keep-alive connection under the client
    if request.method in ("PATCH", "POST") and (request.content_length or 0) <= 64 << 20:
        while request.stream.read(tus.CHUNK_BYTES):
            pass
    response = jsonify(error=str(exc), status=exc.status)
    if exc.status == 412:
        response.headers["Tus-Version"] = tus.TUS_VERSION
    return response, exc.status


def _check_tus_version() -> None:
    """Tus requests carry the protocol version (checked after access, so that outsiders learn nothing)."""
    sent = request.headers.get("Tus-Resumable")
    if request.method in ("POST", "HEAD", "PATCH", "DELETE") and sent != tus.TUS_VERSION:
        raise tus.TusError(412, f"Tus-Resumable must be {tus.TUS_VERSION} (got {sent!r})")


def _writable_project(project_id: int):
    project = project_or_404(db(), current_user, project_id, Role.ANALYST)
    _check_tus_version()
    return project


def _own_upload(project_id: int, upload_id: str) -> Upload:
    """The current user's upload in the project (analysts and owners only); anybody else's is a 404."""
    project_or_404(db(), current_user, project_id, Role.ANALYST)
    upload = db().get(Upload, upload_id)
    if upload is None or upload.project_id != project_id or upload.user_id != current_user.id:
        abort(404, f"no upload {upload_id} of yours in project {project_id}")
    _check_tus_version()
    return upload


def _offset_headers(response, upload: Upload):
    response.headers["Upload-Offset"] = str(upload.offset)
    if upload.completed_at is None:
        response.headers["Upload-Expires"] = http_date(tus.expires_at(upload))
    if upload.dataset_id:
        response.headers["Tilescope-Dataset-Id"] = upload.dataset_id
        response.headers["Tilescope-Dataset-Url"] = url_for("pages.dataset", dataset_id=upload.dataset_id)
    return response


@blueprint.route(UPLOADS_URL, methods=["OPTIONS"], provide_automatic_options=False)
def options(project_id: int):
    response = make_response("", 204)
    response.headers.update({"Tus-Version": tus.TUS_VERSION, "Tus-Extension": tus.TUS_EXTENSIONS,
                             "Tus-Max-Size": str(settings().max_upload_bytes),
                             "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUM_ALGORITHMS)})
    return response


@blueprint.post(UPLOADS_URL)
def create(project_id: int):
    """tus creation (and creation-with-upload): 201 with the new upload's Location."""
    project = _writable_project(project_id)
    tus.expire_uploads(db(), storage())
    try:
        length = int(request.headers.get("Upload-Length", ""))
    except ValueError:
        raise tus.TusError(400, "Upload-Length must be a whole number of bytes") from None
    upload = tus.create_upload(db(), storage(), project, current_user, length,
                               tus.parse_metadata(request.headers.get("Upload-Metadata", "")),
                               max_bytes=settings().max_upload_bytes, remote_addr=request.remote_addr or "")
    response = make_response("", 201)
    response.headers["Location"] = url_for("uploads.upload_resource", project_id=project_id, upload_id=upload.id)
    if request.content_type == tus.OFFSET_CONTENT_TYPE and request.content_length:
        response = _append(upload, response, request.headers.get("Upload-Offset", "0"))
    return _offset_headers(response, upload)


@blueprint.route(UPLOADS_URL + "/<upload_id>", methods=["GET", "HEAD"])
def upload_resource(project_id: int, upload_id: str):
    """HEAD: the tus offset; GET: the upload as JSON, with the dataset it became."""
    upload = _own_upload(project_id, upload_id)
    if request.method == "HEAD":
        response = make_response("", 200)
        response.headers["Upload-Length"] = str(upload.length)
        return _offset_headers(response, upload)
    body = tus.upload_summary(upload)
    if upload.dataset_id:
        dataset = db().get(Dataset, upload.dataset_id)
        body.update(dataset_url=url_for("pages.dataset", dataset_id=upload.dataset_id),
                    dataset_name=dataset.name if dataset else None, dataset_status=dataset.status if dataset else None)
    return jsonify(body)


@blueprint.patch(UPLOADS_URL + "/<upload_id>")
def patch(project_id: int, upload_id: str):
    """tus PATCH: append the body at Upload-Offset; 204 with the new offset (and the dataset id when complete)."""
    upload = _own_upload(project_id, upload_id)
    if request.content_type != tus.OFFSET_CONTENT_TYPE:
        raise tus.TusError(415, f"Content-Type must be {tus.OFFSET_CONTENT_TYPE}")
    return _offset_headers(_append(upload, make_response("", 204), request.headers.get("Upload-Offset")), upload)


def _append(upload: Upload, response, offset_header: str | None):
    try:
        offset = int(offset_header or "")
    except ValueError:
        raise tus.TusError(400, "Upload-Offset must be a whole number of bytes") from None
    result = tus.append_chunk(db(), storage(), upload, request.stream, offset, request.content_length,
                              request.headers.get("Upload-Checksum"), disconnect_errors=(ClientDisconnected,),
                              settings=settings())
    if result.complete:
        try:
            complete_upload(db(), settings(), storage(), upload, current_user, request.remote_addr or "")
        except (TilerError, EmptyUpload, QueueUnavailable) as exc:
            # the bytes are safe and acknowledged; why they are no dataset is told here and by a GET on the upload
            response.headers["Tilescope-Upload-Error"] = " ".join(str(exc).split())[:500].encode(
                "ascii", "replace").decode()
        db().refresh(upload)
    return response


@blueprint.delete(UPLOADS_URL + "/<upload_id>")
def terminate(project_id: int, upload_id: str):
    """tus termination: the partial file and the record are deleted."""
    upload = _own_upload(project_id, upload_id)
    if upload.dataset_id:
        raise tus.TusError(409, "the upload already became a dataset; delete the dataset instead")
    tus.terminate(db(), storage(), upload, current_user, request.remote_addr or "", settings=settings())
    return make_response("", 204)


@blueprint.get("/projects/<int:project_id>/upload")
def upload_page(project_id: int):
    """Drag and drop files or folders; resumable, with progress per file."""
    project = project_or_404(db(), current_user, project_id, Role.ANALYST)
    used = tus.project_usage(db(), project.id)
    return render_template("upload.html", project=project, max_upload=settings().max_upload_bytes, used_bytes=used,
                           endpoint=url_for("uploads.create", project_id=project.id))
