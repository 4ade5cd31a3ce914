"""Results of analyses: the result page, its JSON, the CSV and PROV-JSON downloads, and "reproduce"."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import select

from portal import audit
from portal.access import grant_for, issue_view_token
from portal.analysis import queue_analysis
from portal.context import db, settings
from portal.jobs import QueueUnavailable
from portal.models import Result, Role
from portal.permissions import dataset_or_404, project_or_404
from portal.downloads import send_stored
from portal.result_access import issue_label_token, result_access, result_folder

blueprint = Blueprint("results", __name__)

def result_summary(result: Result) -> dict:
    """A short description of a result, for lists."""
    return {"id": result.id, "method": result.method, "dataset_id": result.dataset_id, "job_id": result.job_id,
            "created_at": result.created_at.isoformat(), "object_count": result.summary.get("object_count"),
            "foreground_fraction": result.summary.get("foreground_fraction"), "url": f"/results/{result.id}",
            "reproduces": result.reproduces_id, "reproduction": result.reproduction or {}}


def result_json(result: Result, *, via_share: bool, can_manage: bool) -> dict:
    dataset = result.dataset
    base = f"/api/v1/results/{result.id}"
    dataset_api = f"/api/v1/datasets/{dataset.id}"
    provenance = result.provenance or {}
    return {
        **result_summary(result),
        "params": result.params, "summary": result.summary,
        "created_by": result.created_by.display_name if result.created_by and not via_share else "",
        "dataset": {"id": dataset.id, "name": dataset.name, "info_url": f"{dataset_api}/info",
                    "tiles_url": f"{dataset_api}/tiles", "histogram_url": f"{dataset_api}/histogram",
                    "iiif_url": f"/iiif/3/{dataset.id}", "token": issue_view_token(grant_for(dataset, 0))},
        "project": {"id": result.project_id, "name": result.project.name},
        "labels": {"info_url": f"{base}/labels/info", "tiles_url": f"{base}/labels/tiles",
                   "token": issue_label_token(result)},
        "objects_url": f"{base}/objects", "object_at_url": f"{base}/objects/at",
        "csv_url": f"/results/{result.id}/measurements.csv", "provenance_url": f"/results/{result.id}/provenance.json",
        "measures": [{"name": m.name, "value": m.value, "unit": m.unit} for m in result.measures],
        "outputs": result.outputs, "provenance_summary": provenance.get("tilescope_summary", {}),
        "reproductions": [result_summary(r) for r in db().scalars(
            select(Result).where(Result.reproduces_id == result.id).order_by(Result.created_at))],
        "can_manage": can_manage, "via_share": via_share,
        "shares_url": f"{base}/shares" if can_manage else None,
        "reproduce_url": f"{base}/reproduce" if can_manage else None,
    }


@blueprint.get("/results/<result_id>")
def result_page(result_id: str):
    access = result_access(result_id)
    result = access.result
    return render_template("result.html", result=result, dataset=result.dataset, project=result.project,
                           api_url=f"/api/v1/results/{result.id}", via_share=access.via_share,
                           can_manage=access.can_manage)


@blueprint.get("/api/v1/results/<result_id>")
def get_result(result_id: str):
    access = result_access(result_id)
    return jsonify(result_json(access.result, via_share=access.via_share, can_manage=access.can_manage))


@blueprint.get("/api/v1/datasets/<dataset_id>/results")
def dataset_results(dataset_id: str):
    dataset = dataset_or_404(db(), current_user, dataset_id)
    results = db().scalars(select(Result).where(Result.dataset_id == dataset.id).order_by(Result.created_at.desc()))
    return jsonify(results=[result_summary(r) for r in results])


@blueprint.get("/results/<result_id>/measurements.csv")
def measurements_csv(result_id: str):
    """The per-object measurement table; every download is written to the audit trail."""
    access = result_access(result_id)
    result = access.result
    _audit_download(access, "measurements.csv")
    name = f"{result.dataset.name.rsplit('.', 1)[0]}-{result.method}-{result.id[:8]}.csv"
    return send_stored(result_folder(result) / "measurements.csv", mimetype="text/csv", download_name=name,
                       max_age=3600)


@blueprint.get("/results/<result_id>/provenance.json")
def provenance_json(result_id: str):
    """The W3C PROV-JSON record of how this result was made."""
    access = result_access(result_id)
    _audit_download(access, "provenance.json")
    return send_stored(result_folder(access.result) / "provenance.json", mimetype="application/json",
                       download_name=f"provenance-{result_id[:8]}.json", as_attachment=False, max_age=3600)


@blueprint.post("/api/v1/results/<result_id>/reproduce")
def reproduce(result_id: str):
    """Queue the same analysis on the same pyramid; the new result says whether its outputs match."""
    access = result_access(result_id)
    result = access.result
    project_or_404(db(), current_user, result.project_id, Role.ANALYST)
    try:
        job = queue_analysis(db(), settings(), result.dataset, current_user, result.params, reproduces=result)
    except QueueUnavailable as exc:
        abort(503, str(exc))
    return jsonify(job_id=job.id, job_url=f"/jobs/{job.id}", status_url=f"/api/v1/jobs/{job.id}"), 202


def _audit_download(access, what: str) -> None:
    result = access.result
    user = current_user if current_user.is_authenticated else None
    audit.record(db(), "download", user=user, actor="" if user else "share-link holder", target_type="result",
                 target_id=result.id, project_id=result.project_id, new={"file": what, "via_share": access.via_share},
                 remote_addr=request.remote_addr or "")
    db().commit()

