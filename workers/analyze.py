"""The segment job: blockwise segmentation of a dataset's pyramid → results/<job-id>/ published atomically → a Result row."""

from __future__ import annotations

import json
import logging
import os
import posixpath
import resource
import shutil
import socket
import traceback
from pathlib import Path

from sqlalchemy import select

from portal.db import session_scope
from portal.models import DatasetStatus, DerivedMeasure, Job, Result, utcnow
from portal.provenance import build_provenance, provenance_digest, software_versions
from portal.settings import Settings
from portal.storage import Storage
from tiler.checksum import file_sha256, tree_checksum
from tiler.errors import TilerError
from tiler.segmentation import segment_pyramid, validate_params
from tiler.storage import Location
from workers.progress import JobRecorder

log = logging.getLogger(__name__)

#: Outputs whose checksums a reproduction must match (provenance.json differs by design: other times).
COMPARED_OUTPUTS = ("labels.ome.zarr", "measurements.csv", "objects.npy", "summary.json")
#: Summary entries stored as derived measures on the dataset: (summary key, measure name, unit or None for the image unit).
DERIVED_MEASURES = (("object_count", "object count", ""), ("foreground_fraction", "foreground fraction", "1"),
                    ("mean_equivalent_diameter", "mean equivalent diameter", None),
                    ("median_equivalent_diameter", "median equivalent diameter", None))


class AnalysisRefused(TilerError):
    """The job cannot run as asked (dataset not ready, parameters no longer valid)."""


def analyze_dataset(job_id: str, settings: Settings | None = None) -> str:
    """Run segment job `job_id`; returns the final job status. Errors end in the database, not in Redis."""
    settings = settings or Settings.from_env()
    url, storage = settings.sqlalchemy_url, Storage(settings)
    recorder = JobRecorder(url, job_id)
    recorder.start("preparing")
    staging = None
    try:
        plan = _plan(url, storage, job_id)
        dest = storage.result(job_id)
        if dest.exists():
            if _recorded(url, job_id):  # a published result is immutable; a rerun of the same job must not touch it
                raise AnalysisRefused(f"job {job_id} already has published results at {dest.key}")
            dest.delete()  # left by an attempt killed while publishing (an upload to S3): never recorded, never served
        staging = storage.scratch(f"analysis-{job_id}")
        outputs, summary, run = _run(plan, staging, settings, recorder)
        provenance = _write_provenance(plan, staging, outputs, run)
        dest.publish_tree(staging)  # a rename on local storage, an upload to an object store
        staging = None
        result_id = _record_result(url, storage, plan, dest, outputs, summary, provenance)
    except TilerError as exc:
        recorder.fail(str(exc))
        status = "failed"
    except Exception as exc:  # the worker must keep running; admins get the traceback, users a sentence
        log.exception("analysis job %s failed", job_id)
        recorder.fail(f"the analysis failed unexpectedly: {type(exc).__name__}: {exc}", traceback.format_exc())
        status = "failed"
    else:
        recorder.finish(f"{summary.get('object_count', 0)} objects · result {result_id}")
        status = "finished"
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return status  # the recorder has queued the mail about the outcome (once, see workers.notify)


def _recorded(url: str, job_id: str) -> bool:
    with session_scope(url) as session:
        return session.scalar(select(Result.id).where(Result.job_id == job_id)) is not None


def _plan(url: str, storage: Storage, job_id: str) -> dict:
    """Everything the run needs from the database, read once, so no session stays open during the work."""
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        if job is None or job.dataset is None:
            raise AnalysisRefused(f"job {job_id} has no dataset to analyse")
        dataset = job.dataset
        if dataset.status != DatasetStatus.READY.value:
            raise AnalysisRefused(f"dataset {dataset.name} is {dataset.status}; it must be converted first")
        pyramid = storage.locate(dataset.pyramid_path)
        analysis = validate_params(dict(job.params.get("analysis", {})), 3 if dataset.is_volume else 2,
                                   dataset.channels or 1)
        checksum = dataset.pyramid_info.get("checksum")
        if not checksum:  # pyramids are immutable: compute once, keep on the dataset
            checksum = tree_checksum(pyramid)
            dataset.pyramid_info = {**dataset.pyramid_info, "checksum": checksum}
        user = job.user
        return {
            "job": {"id": job.id, "queued": job.created_at, "started": job.started_at or utcnow(),
                    "host": socket.gethostname()},
            "dataset": {"id": dataset.id, "name": dataset.name, "original_sha256": dataset.original_sha256,
                        "original_filename": dataset.original_filename, "pyramid_path": dataset.pyramid_path,
                        "pyramid_checksum": checksum, "project_id": dataset.project_id, "unit": dataset.unit},
            "pyramid": pyramid, "analysis": analysis, "method": analysis["method"],
            # the image, as seen from the published labels (results/<job>/labels.ome.zarr) in the same store
            "labels_source": posixpath.relpath(dataset.pyramid_path, f"results/{job.id}/labels.ome.zarr"),
            "user": {"id": user.id, "name": user.display_name, "email": user.email} if user else None,
            "reproduces": job.params.get("reproduces"),
        }


def _run(plan: dict, staging: Path, settings: Settings, recorder: JobRecorder) -> tuple[dict, dict, dict]:
    analysis = plan["analysis"]
    classifier = None
    if plan["method"] == "classifier":
        from tiler.render import open_pyramid
        from tiler.segmentation.classifier import save_classifier, train_classifier

        recorder.progress(0.01, "training the pixel classifier on the scribbles")
        classifier = train_classifier(open_pyramid(plan["pyramid"]), analysis["scribbles"], analysis["class_names"],
                                      channel=analysis.get("channel", 0), features=analysis.get("features"))

    def progress(fraction: float, message: str) -> None:
        recorder.progress(0.05 + 0.9 * fraction, message)

    result = segment_pyramid(plan["pyramid"], staging, analysis, memory_budget=settings.analysis_memory_budget,
                             processes=settings.analysis_processes or None, progress=progress, classifier=classifier,
                             scheduler=settings.dask_scheduler or None, source_image=plan["labels_source"])
    if classifier is not None:
        save_classifier(classifier, staging / "classifier.pkl")
    recorder.progress(0.96, "checksumming the outputs")
    outputs = {}
    for name in sorted(os.listdir(staging)):
        path = staging / name
        outputs[name] = {"path": name, "sha256": tree_checksum(path) if path.is_dir() else file_sha256(path),
                         "bytes": _size(path)}
    return outputs, result.summary, result.run


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _resources() -> dict:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpuSeconds": round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 3),
            "peakRssBytes": max(own.ru_maxrss, children.ru_maxrss) * 1024}


def _write_provenance(plan: dict, staging: Path, outputs: dict, run: dict) -> dict:
    job = {**plan["job"], "ended": utcnow()}
    resources = {"wallSeconds": round((job["ended"] - job["started"]).total_seconds(), 3), **_resources(),
                 "blocks": run["blocks"], "blockShape": run["block_shape"], "halo": run["halo"],
                 "processes": run["processes"],
                 **({"daskScheduler": run["scheduler"]} if run.get("scheduler") else {})}
    software = software_versions()
    document = build_provenance(job=job, dataset=plan["dataset"], user=plan["user"], method=plan["method"],
                                params=plan["analysis"], outputs=outputs, resources=resources, software=software)
    (staging / "provenance.json").write_text(json.dumps(document, indent=1, sort_keys=True))
    digest = provenance_digest(method=plan["method"], params=plan["analysis"], dataset=plan["dataset"], job=job,
                               resources=resources, outputs=outputs, software=software)
    return {"document": document, "tilescope_summary": digest}


def _record_result(url: str, storage: Storage, plan: dict, dest: Location, outputs: dict, summary: dict,
                   provenance: dict) -> str:
    job_id, dataset = plan["job"]["id"], plan["dataset"]
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        result = Result(job_id=job_id, dataset_id=dataset["id"], project_id=dataset["project_id"],
                        method=plan["method"], params=plan["analysis"], path=dest.key, summary=summary,
                        outputs=outputs, provenance=provenance, created_by_id=job.user_id,
                        labels_info={"levels": summary.get("levels"), "object_count": summary.get("object_count")})
        if plan["reproduces"]:
            original = session.get(Result, plan["reproduces"])
            if original is not None:
                result.reproduces_id = original.id
                result.reproduction = compare_outputs(original.outputs, outputs)
        session.add(result)
        session.flush()
        for key, name, unit in DERIVED_MEASURES:
            value = summary.get(key)
            if value is None:
                continue
            session.add(DerivedMeasure(project_id=dataset["project_id"], dataset_id=dataset["id"], result_id=result.id,
                                       name=name, value=float(value),
                                       unit=(summary.get("unit_symbol") or "px") if unit is None else unit,
                                       description=f"{plan['method']} segmentation, job {job_id}",
                                       created_by_id=job.user_id))
        return result.id


def compare_outputs(original: dict, reproduced: dict) -> dict:
    """Whether every compared output of a rerun has the checksum of the original's."""
    rows = {}
    for name in COMPARED_OUTPUTS:
        if name in original or name in reproduced:
            before = (original.get(name) or {}).get("sha256")
            after = (reproduced.get(name) or {}).get("sha256")
            rows[name] = {"original": before, "reproduced": after, "match": before is not None and before == after}
    return {"matches": bool(rows) and all(row["match"] for row in rows.values()), "outputs": rows}
