"""The whole portal on S3 storage (moto on loopback): upload, convert, tiles, analysis, downloads — nothing on local disk."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from dataclasses import replace

import numpy
import pytest
import s3fs
import tifffile
from PIL import Image

from portal.db import session_scope
from portal.models import Dataset
from tests.analysis_helpers import DISKS, disks_image, finished_result, queue_analysis, run_jobs
from tests.conftest import csrf_token, log_in, post_multipart


@pytest.fixture
def s3_settings(settings, s3_server):
    bucket = s3_server.new_bucket()
    return replace(settings, storage_url=f"s3://{bucket}/lab", s3_endpoint_url=s3_server.endpoint,
                   s3_access_key_id=s3_server.options()["key"], s3_secret_access_key=s3_server.options()["secret"],
                   s3_region="us-east-1")


@pytest.fixture
def s3_client(s3_settings, make_user):
    from portal.app import create_app

    app = create_app(s3_settings)
    app.config.update(TESTING=True)
    client = app.test_client()
    make_user()
    log_in(client)
    return client


def _bucket_files(settings) -> list[str]:
    fs = s3fs.S3FileSystem(endpoint_url=settings.s3_endpoint_url, key=settings.s3_access_key_id,
                           secret=settings.s3_secret_access_key)
    root = settings.storage_url.removeprefix("s3://")
    fs.invalidate_cache()
    return sorted(path.removeprefix(root + "/") for path in fs.find(root))


def test_upload_convert_view_analyse_and_download_with_s3_storage(s3_settings, s3_client):
    client = s3_client
    headers = {"X-CSRFToken": csrf_token(client, "/")}
    project_id = client.post("/api/v1/projects", json={"name": "On S3"}, headers=headers).json["id"]
    image = disks_image()[0]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, tile=(256, 256))
    source = buffer.getvalue()
    response = post_multipart(client, f"/api/v1/projects/{project_id}/datasets", {"file": (io.BytesIO(source), "disks.tif")},
                              headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    dataset_id = response.json["id"]
    run_jobs(s3_settings)

    with session_scope(s3_settings.sqlalchemy_url) as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset.status == "ready", dataset.status_reason
        assert dataset.pyramid_path == f"pyramids/{dataset_id}.ome.zarr"
        sha256 = dataset.original_sha256
    stored = _bucket_files(s3_settings)
    assert f"originals/{sha256[:2]}/{sha256}" in stored
    assert f"pyramids/{dataset_id}.ome.zarr/zarr.json" in stored
    data = s3_settings.data_path
    for area in ("originals", "pyramids", "results"):
        assert not any(p.is_file() for p in (data / area).rglob("*")), f"{area} written to local disk"
    assert not any(p.is_file() for p in (data / "scratch").rglob("*")), "scratch left behind"

    info = client.get(f"/api/v1/datasets/{dataset_id}/info").json
    tile = client.get(f"/api/v1/datasets/{dataset_id}/tiles/0/0/0.png")
    assert tile.status_code == 200, tile.get_data(as_text=True)
    pixels = Image.open(io.BytesIO(tile.data))
    assert pixels.size == (256, 256) and len(numpy.unique(numpy.asarray(pixels))) > 10
    assert client.get(f"/api/v1/datasets/{dataset_id}/tiles/0/0/0.png").data == tile.data
    assert client.get(f"/api/v1/datasets/{dataset_id}/tiles/99/0/0.png").status_code == 404
    assert info["levels"]

    original = client.get(f"/api/v1/datasets/{dataset_id}/original")
    assert original.status_code == 200 and hashlib.sha256(original.data).hexdigest() == sha256
    with client.get(f"/api/v1/datasets/{dataset_id}/pyramid.zip") as pyramid_zip:
        names = zipfile.ZipFile(io.BytesIO(pyramid_zip.data)).namelist()
    assert f"{dataset_id}.ome.zarr/zarr.json" in names

    response = queue_analysis(client, dataset_id)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    run_jobs(s3_settings)
    result_id = finished_result(s3_settings, job_id)
    assert f"results/{job_id}/measurements.csv" in _bucket_files(s3_settings)
    result = client.get(f"/api/v1/results/{result_id}").json
    assert result["summary"]["object_count"] == len(DISKS) + 1
    with client.get(result["csv_url"]) as response:
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 1 + len(DISKS) + 1
    page = client.get(f"{result['objects_url']}?sort=voxels&order=desc&limit=2").json
    assert page["total"] == len(DISKS) + 1
    r, c, _ = DISKS[0]
    assert client.get(f"{result['object_at_url']}?x={c}&y={r}").json["label"] > 0
    labels = client.get(f"/api/v1/results/{result_id}/labels/tiles/0/0/0.png")
    assert labels.status_code == 200 and Image.open(io.BytesIO(labels.data)).mode == "RGBA"
    provenance = client.get(f"/results/{result_id}/provenance.json")
    assert provenance.status_code == 200 and provenance.json["entity"]


def test_readiness_checks_the_object_store(s3_settings, s3_client, s3_server):
    from portal.health import readiness

    s3_settings.data_path.mkdir(parents=True, exist_ok=True)
    ok, checks = readiness(s3_settings)
    assert ok and checks["storage"]["status"] == "ok", checks
    assert not [f for f in _bucket_files(s3_settings) if ".readyz" in f], "the probe object is removed"
    missing = replace(s3_settings, storage_url="s3://no-such-bucket-here/x")
    ok, checks = readiness(missing)
    assert not ok and "storage" in checks and checks["storage"]["status"] == "failed", checks


def test_tiles_answer_503_when_the_object_store_is_down(s3_settings, s3_client):
    import socket

    from portal.app import create_app
    from tests.conftest import add_converted_dataset

    source = s3_settings.storage_dir("uploads") / "small.tif"
    tifffile.imwrite(source, disks_image()[0], tile=(256, 256))
    dataset_id = add_converted_dataset(s3_settings, source, name="small")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = create_app(replace(s3_settings, s3_endpoint_url=f"http://127.0.0.1:{port}")).test_client()
    log_in(down)
    response = down.get(f"/api/v1/datasets/{dataset_id}/tiles/0/0/0.png")
    assert response.status_code == 503, response.get_data(as_text=True)
    assert "cannot be used" in response.json["error"]
    from portal.access import grants

    grants._grants.clear()  # both apps live in this process and share its grant cache (one app per process in use)
    good = s3_client.get(f"/api/v1/datasets/{dataset_id}/tiles/0/0/0.png")
    assert good.status_code == 200, good.get_data(as_text=True)


def test_an_analysis_killed_while_uploading_its_result_is_published_whole_by_the_next_attempt(s3_settings, s3_client):
    from tests.analysis_helpers import run_here
    from tests.conftest import add_converted_dataset
    from tiler.storage import open_store

    source = s3_settings.storage_dir("uploads") / "disks.tif"
    tifffile.imwrite(source, disks_image()[0], tile=(256, 256))
    dataset_id = add_converted_dataset(s3_settings, source, name="disks")
    response = queue_analysis(s3_client, dataset_id)
    job_id = response.get_json()["job_id"]
    store = open_store(s3_settings.storage_url, {"endpoint_url": s3_settings.s3_endpoint_url,
                                                 "key": s3_settings.s3_access_key_id,
                                                 "secret": s3_settings.s3_secret_access_key})
    partial = s3_settings.data_path / "partial.csv"
    partial.write_text("half a table")
    store.location(f"results/{job_id}/measurements.csv").put_file(partial)  # what a killed upload leaves
    assert run_here(s3_settings, job_id) == "finished"
    result = s3_client.get(f"/api/v1/results/{finished_result(s3_settings, job_id)}").json
    assert result["summary"]["object_count"] == len(DISKS) + 1
    with s3_client.get(result["csv_url"]) as table:
        assert len(list(csv.reader(io.StringIO(table.get_data(as_text=True))))) == 1 + len(DISKS) + 1
