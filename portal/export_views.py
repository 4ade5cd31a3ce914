"""Download endpoints: a dataset's original, its pyramid as a streamed zip, and a project's manifest (CSV/JSON)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request, stream_with_context
from flask_login import current_user

from portal import audit
from portal.context import db, storage
from portal.downloads import send_stored
from portal.export import (manifest_csv, manifest_json, manifest_rows, original_download_name,
                           original_entries, stream_zip, stored_folder_entries)
from portal.models import Dataset
from portal.permissions import dataset_or_404, project_or_404

blueprint = Blueprint("export", __name__, url_prefix="/api/v1")


def _audit(dataset: Dataset, what: str) -> None:
    audit.record(db(), "download", user=current_user, target_type="dataset", target_id=dataset.id,
                 project_id=dataset.project_id, new={"file": what}, remote_addr=request.remote_addr or "")
    db().commit()


def _zip_response(entries, filename: str) -> Response:
    response = Response(stream_with_context(stream_zip(entries)), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{_header_safe(filename)}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _header_safe(name: str) -> str:
    return "".join(ch if ch.isprintable() and ch not in '"\\' else "_" for ch in name)[:200] or "download"


@blueprint.get("/datasets/<dataset_id>/original")
def download_original(dataset_id: str):
    """The original file as uploaded or imported; an in-place folder (slices, DICOM series) as a zip stream."""
    dataset = dataset_or_404(db(), current_user, dataset_id)
    path, entries = original_entries(storage(), dataset)
    if not path.exists():  # a Path or a stored Location
        abort(410, f"the original of dataset {dataset.name!r} is no longer at {path.name}")
    name = original_download_name(dataset, entries)
    _audit(dataset, "original")
    if entries is not None:
        return _zip_response(entries, name)
    return send_stored(path, download_name=name, mimetype="application/octet-stream", etag=dataset.original_sha256)


@blueprint.get("/datasets/<dataset_id>/pyramid.zip")
def download_pyramid(dataset_id: str):
    """The OME-Zarr pyramid folder streamed as a zip (file by file, never built in memory)."""
    dataset = dataset_or_404(db(), current_user, dataset_id)
    if not dataset.pyramid_path:
        abort(409, f"dataset {dataset.name!r} has no pyramid yet (status: {dataset.status})")
    folder = storage().locate(dataset.pyramid_path)
    if not folder.is_dir():
        abort(410, f"the pyramid of dataset {dataset.name!r} is missing")
    _audit(dataset, "pyramid.zip")
    return _zip_response(stored_folder_entries(folder, prefix=f"{folder.name}/"), f"{folder.name}.zip")


@blueprint.get("/projects/<int:project_id>/manifest.<fmt>")
def project_manifest(project_id: int, fmt: str):
    """Every dataset with subject, visit, modality, original filename, size, checksums, status, metadata and tags."""
    project = project_or_404(db(), current_user, project_id)
    if fmt not in ("csv", "json"):
        abort(404, "the manifest is available as manifest.csv or manifest.json")
    rows = manifest_rows(db(), project)
    if fmt == "json":
        return Response(manifest_json(project, rows), mimetype="application/json")
    response = Response(manifest_csv(rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="project-{project.id}-manifest.csv"'
    return response
