"""Analysis end to end: queue over the API, a real worker segments, results/tables/overlay/provenance, reproduce."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy
import pytest
import tifffile
from PIL import Image
from sqlalchemy import select

from portal.db import session_scope
from portal.models import DerivedMeasure, Result
from tests.analysis_helpers import DISKS, RECTANGLE, disks_image, finished_result, queue_analysis, run_here, run_jobs
from tests.conftest import add_converted_dataset, csrf_token, log_in, worker_env

def test_threshold_finds_every_object_and_publishes_tables(settings, logged_in, analysed):
    client = logged_in
    data = client.get(f"/api/v1/results/{analysed}").get_json()
    truth = disks_image()[1]
    assert data["summary"]["object_count"] == len(DISKS) + 1
    assert data["summary"]["foreground_fraction"] == pytest.approx((truth > 0).mean(), abs=1e-9)
    measures = {m["name"]: m for m in data["measures"]}
    assert measures["object count"]["value"] == len(DISKS) + 1

    page = client.get(f"{data['objects_url']}?sort=voxels&order=desc&limit=3").get_json()
    names = [c["name"] for c in page["columns"]]
    assert page["total"] == len(DISKS) + 1 and len(page["rows"]) == 3
    largest = dict(zip(names, page["rows"][0]))
    r0, r1, c0, c1 = RECTANGLE
    assert largest["voxels"] == (r1 - r0) * (c1 - c0)

    r, c, radius = DISKS[-1]  # the disk across the chunk edge is one object with its whole area
    hit = client.get(f"{data['object_at_url']}?x={c}&y={r}").get_json()
    assert hit["label"] > 0 and hit["object"]["voxels"] == int((truth == len(DISKS)).sum())
    assert client.get(f"{data['object_at_url']}?x=5&y=5").get_json()["label"] == 0
    assert client.get(f"{data['object_at_url']}?x=640&y=5").status_code == 404
    assert client.get(f"{data['object_at_url']}?x=-1&y=5").status_code == 400

    with client.get(data["csv_url"]) as response:
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 1 + len(DISKS) + 1 and "label" in rows[0]

    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalar(select(DerivedMeasure).where(DerivedMeasure.result_id == analysed)) is not None


def test_label_tiles_draw_objects_and_outlines(logged_in, analysed):
    info = logged_in.get(f"/api/v1/results/{analysed}/labels/info").get_json()
    dataset_info = logged_in.get(f"/api/v1/results/{analysed}").get_json()["dataset"]
    assert info["levels"] == logged_in.get(dataset_info["info_url"]).get_json()["levels"]
    base = f"/api/v1/results/{analysed}/labels/tiles/0/0/0.png"
    fill = numpy.asarray(Image.open(io.BytesIO(logged_in.get(base).data)))
    outline = numpy.asarray(Image.open(io.BytesIO(logged_in.get(base + "?outline=1").data)))
    truth = disks_image()[1][:256, :256]
    assert fill.shape == (256, 256, 4)
    assert ((fill[..., 3] > 0) == (truth > 0)).all()
    assert 0 < (outline[..., 3] > 0).sum() < (fill[..., 3] > 0).sum() / 2
    token = info["token"]
    anonymous = logged_in.application.test_client()
    assert anonymous.get(f"{base}?t={token}").status_code == 200  # the token alone suffices, as for image tiles
    assert anonymous.get(base).status_code == 401
    assert logged_in.get(f"/api/v1/results/{analysed}/labels/tiles/99/0/0.png").status_code == 404


def test_provenance_is_prov_json_with_checksums(settings, logged_in, analysed):
    from prov.model import ProvDocument

    from tiler.checksum import tree_checksum

    with logged_in.get(f"/results/{analysed}/provenance.json") as response:
        text = response.get_data(as_text=True)
    document = ProvDocument.deserialize(content=text, format="json")
    assert document.get_records()
    raw = json.loads(text)
    with session_scope(settings.sqlalchemy_url) as session:
        result = session.get(Result, analysed)
        folder = settings.data_path / result.path
        assert result.outputs["labels.ome.zarr"]["sha256"] == tree_checksum(folder / "labels.ome.zarr")
        pyramid_checksum = tree_checksum(settings.data_path / result.dataset.pyramid_path)
    entities = raw["entity"].values()
    assert any(e.get("ts:checksum") == pyramid_checksum for e in entities)
    assert {e["prov:label"] for e in entities if e.get("prov:type") == "ts:Output"} >= {"labels.ome.zarr",
                                                                                          "measurements.csv"}
    agent = next(a for a in raw["agent"].values() if a.get("prov:type") == "prov:SoftwareAgent")
    assert agent["ts:git_commit"] and agent["ts:scikit-image"] != "not installed"
    activity = next(iter(raw["activity"].values()))
    assert json.loads(activity["ts:parameters"])["algorithm"] == "otsu"
    assert activity["ts:cpuSeconds"] > 0 and activity["ts:peakRssBytes"] > 0


def test_reproduce_from_the_api_and_the_cli_matches(settings, logged_in, analysed):
    response = logged_in.post(f"/api/v1/results/{analysed}/reproduce", headers={"X-CSRFToken": csrf_token(logged_in, "/")})
    assert response.status_code == 202
    run_jobs(settings)
    rerun = finished_result(settings, response.get_json()["job_id"])
    data = logged_in.get(f"/api/v1/results/{rerun}").get_json()
    assert data["reproduces"] == analysed and data["reproduction"]["matches"] is True
    assert [r["id"] for r in logged_in.get(f"/api/v1/results/{analysed}").get_json()["reproductions"]] == [rerun]

    cli = subprocess.run([sys.executable, "-m", "portal.cli", "reproduce", analysed],
                         env=dict(worker_env(settings), TILESCOPE_ANALYSIS_PROCESSES="1"),
                         capture_output=True, text=True, timeout=240)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "outputs match" in cli.stdout


@pytest.mark.parametrize(("method", "params", "recipients", "status", "message"), [
    ("nonsense", {}, None, 400, "unknown method"),
    ("threshold", {"algorithm": "magic"}, None, 400, "algorithm"),
    ("threshold", {"algorithm": "otsu", "min_size": -3}, None, 400, "min_size"),
    ("threshold", "not an object", None, 400, "params must be an object"),
    ("threshold", {"algorithm": "otsu"}, ["not-an-address"], 400, "not an e-mail address"),
])
def test_bad_analysis_requests_say_what_is_wrong(logged_in, disks_dataset, method, params, recipients, status, message):
    response = queue_analysis(logged_in, disks_dataset, method, params, recipients)
    assert response.status_code == status
    assert message in response.get_json()["error"]


def test_analyses_need_a_ready_dataset_and_the_analyst_role(settings, logged_in, disks_dataset, make_user):
    from portal.models import Dataset, Membership, Role, User

    with session_scope(settings.sqlalchemy_url) as session:
        dataset = session.get(Dataset, disks_dataset)
        project_id = dataset.project_id
        dataset.status = "converting"
    assert queue_analysis(logged_in, disks_dataset).status_code == 409
    with session_scope(settings.sqlalchemy_url) as session:
        session.get(Dataset, disks_dataset).status = "ready"
    other = logged_in.application.test_client()
    make_user("viewer@example.org")
    log_in(other, "viewer@example.org")
    assert queue_analysis(other, disks_dataset).status_code == 404  # not a member: the dataset is invisible
    with session_scope(settings.sqlalchemy_url) as session:
        viewer = session.scalar(select(User).where(User.email == "viewer@example.org"))
        session.add(Membership(user_id=viewer.id, project_id=project_id, role=Role.VIEWER.value))
    assert queue_analysis(other, disks_dataset).status_code == 403
    anonymous = logged_in.application.test_client()
    assert anonymous.post(f"/api/v1/datasets/{disks_dataset}/analyses", json={}).status_code == 401


def test_a_volume_is_segmented_in_3d_and_overlaid_on_every_plane(settings, logged_in):
    """Two balls in a 96³ CT-like volume (anisotropic voxels): two objects, overlay tiles on xy and xz, lookup by z."""
    zz, yy, xx = numpy.mgrid[0:48, 0:96, 0:96]
    balls = [(20, 30, 30, 10), (30, 64, 70, 14)]  # (z, y, x, radius in x/y voxels); z voxels are twice as long
    truth = numpy.zeros(zz.shape, numpy.int32)
    for label, (z, y, x, r) in enumerate(balls, start=1):
        truth[(2 * (zz - z)) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r**2] = label
    volume = numpy.where(truth > 0, 50000, 8000).astype(numpy.uint16)
    path = settings.storage_dir("uploads") / "balls.tif"
    tifffile.imwrite(path, volume)
    dataset_id = add_converted_dataset(settings, path, name="balls", voxel_size=(2.0, 1.0, 1.0))
    response = queue_analysis(logged_in, dataset_id, params={"algorithm": "otsu"})
    assert response.status_code == 202, response.get_json()
    run_here(settings, response.get_json()["job_id"])
    result_id = finished_result(settings, response.get_json()["job_id"])
    data = logged_in.get(f"/api/v1/results/{result_id}").get_json()
    assert data["summary"]["object_count"] == 2
    z, y, x, _ = balls[1]
    hit = logged_in.get(f"{data['object_at_url']}?x={x}&y={y}&z={z}").get_json()
    assert hit["object"]["voxels"] == int((truth == 2).sum())
    names = {column["name"] for column in logged_in.get(data["objects_url"]).get_json()["columns"]}
    assert "bbox_z0" in names and any(name.startswith("centroid_z") for name in names)
    for plane in ("xy", "xz", "yz"):
        tile = logged_in.get(f"{data['labels']['tiles_url']}/0/0/0.png?plane={plane}&slice={y if plane == 'xz' else z}")
        assert tile.status_code == 200
        alpha = numpy.asarray(Image.open(io.BytesIO(tile.data)))[..., 3]
        assert alpha.any(), plane


def test_pixel_classifier_from_scribbles_finds_the_objects(settings, logged_in, disks_dataset):
    """"AI segmentation": two classes painted as the viewer sends them; a random forest segments the whole image."""
    scribbles = [
        {"class": 0, "points": [[200, 300], [300, 320], [350, 420]], "radius": 6},  # dark background
        {"class": 0, "points": [[20, 450], [600, 460]], "radius": 4},
        {"class": 1, "points": [[82, 160], [98, 160]], "radius": 5},  # inside disks and the bar (points are x, y)
        {"class": 1, "points": [[400, 300]], "radius": 8},
        {"class": 1, "points": [[350, 115], [580, 115]], "radius": 6},
    ]
    response = queue_analysis(logged_in, disks_dataset, "classifier",
                              {"scribbles": scribbles, "class_names": ["background", "particle"], "min_size": 20})
    assert response.status_code == 202, response.get_json()
    run_here(settings, response.get_json()["job_id"])
    result_id = finished_result(settings, response.get_json()["job_id"])
    data = logged_in.get(f"/api/v1/results/{result_id}").get_json()
    assert data["summary"]["object_count"] == len(DISKS) + 1
    truth = disks_image()[1]
    assert data["summary"]["foreground_fraction"] == pytest.approx((truth > 0).mean(), rel=0.05)
    assert "classifier.pkl" in data["outputs"]
    bad = queue_analysis(logged_in, disks_dataset, "classifier",
                         {"scribbles": scribbles[:2], "class_names": ["background", "particle"]})
    assert bad.status_code == 400 and "particle" in bad.get_json()["error"]
