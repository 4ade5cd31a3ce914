"""Jobs on a dask cluster: with TILESCOPE_DASK_SCHEDULER set, a real worker's conversion and segmentation run on a
multi-process LocalCluster and give the same pyramid and measurements as the local path."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import tifffile

from portal.db import session_scope
from portal.models import Dataset, Job, Result
from tests.analysis_helpers import DISKS, disks_image, finished_result, queue_analysis, run_jobs
from tests.conftest import csrf_token, post_multipart
from tiler.checksum import tree_checksum
from tiler.storage import open_store


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def _upload_and_analyse(client, settings, project_name: str) -> tuple[str, str]:
    headers = {"X-CSRFToken": csrf_token(client, "/")}
    project_id = client.post("/api/v1/projects", json={"name": project_name}, headers=headers).json["id"]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, disks_image()[0], tile=(256, 256))
    response = post_multipart(client, f"/api/v1/projects/{project_id}/datasets",
                              {"file": (io.BytesIO(buffer.getvalue()), "disks.tif")}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    dataset_id = response.json["id"]
    run_jobs(settings)
    response = queue_analysis(client, dataset_id, params={"algorithm": "otsu"})
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    run_jobs(settings)
    return dataset_id, finished_result(settings, job_id)


def test_conversion_and_segmentation_on_a_cluster_match_the_local_path(settings, logged_in, cluster):
    local_dataset, local_result = _upload_and_analyse(logged_in, settings, "local")
    on_cluster = replace(settings, dask_scheduler=cluster)
    cluster_dataset, cluster_result = _upload_and_analyse(logged_in, on_cluster, "cluster")

    store = open_store(settings.data_path)
    with session_scope(settings.sqlalchemy_url) as session:
        pyramids = [store.location(session.get(Dataset, d).pyramid_path) for d in (local_dataset, cluster_dataset)]
        results = [session.get(Result, r) for r in (local_result, cluster_result)]
        assert tree_checksum(pyramids[0]) == tree_checksum(pyramids[1]), "the cluster's pyramid differs"
        for name in ("measurements.csv", "objects.npy", "summary.json"):
            assert results[0].outputs[name]["sha256"] == results[1].outputs[name]["sha256"], name
        assert results[1].summary["object_count"] == len(DISKS) + 1
        resources = results[1].provenance["document"]
        assert cluster in str(resources), "the provenance names the cluster the blocks ran on"
        assert session.get(Job, results[1].job_id).status == "finished"


def test_an_unreachable_scheduler_fails_the_job_with_the_reason(settings, logged_in):
    broken = replace(settings, dask_scheduler="tcp://127.0.0.1:9")
    headers = {"X-CSRFToken": csrf_token(logged_in, "/")}
    project_id = logged_in.post("/api/v1/projects", json={"name": "p"}, headers=headers).json["id"]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, disks_image()[0], tile=(256, 256))
    response = post_multipart(logged_in, f"/api/v1/projects/{project_id}/datasets",
                              {"file": (io.BytesIO(buffer.getvalue()), "disks.tif")}, headers=headers)
    run_jobs(broken)
    with session_scope(settings.sqlalchemy_url) as session:
        dataset = session.get(Dataset, response.json["id"])
        assert dataset.status == "failed"
        assert "tcp://127.0.0.1:9" in dataset.status_reason and "dask" in dataset.status_reason
