"""Upload → Dataset → RQ job on a real Redis → real worker → OME-Zarr pyramid → tiles, on SQLite and PostgreSQL."""

import hashlib
from pathlib import Path
import io
import stat

import numpy
import pytest
from PIL import Image
from redis import Redis
from rq import Queue

from tiler.synthetic import write_synthetic_tiff
from tests.conftest import csrf_token, log_in, post_multipart, run_worker_burst


@pytest.fixture
def project_id(logged_in):
    headers = {"X-CSRFToken": csrf_token(logged_in, "/")}
    return logged_in.post("/api/v1/projects", json={"name": "Mosaics"}, headers=headers).json["id"]


def upload(client, project_id, data: bytes, filename: str):
    return post_multipart(client, f"/api/v1/projects/{project_id}/datasets", {"file": (io.BytesIO(data), filename)},
                          {"X-CSRFToken": csrf_token(client, "/")})


@pytest.fixture
def tiff_bytes(tmp_path):
    path = write_synthetic_tiff(tmp_path / "mosaic.tif", (600, 900), "uint16", tile=256)
    return Path(path).read_bytes()


def test_upload_queues_a_conversion_and_the_worker_makes_it_ready(settings, logged_in, project_id, tiff_bytes):
    response = upload(logged_in, project_id, tiff_bytes, "mosaic.tif")
    assert response.status_code == 202, response.json
    dataset = response.json
    assert dataset["status"] == "uploaded" and dataset["job"]["status"] == "queued"
    assert dataset["original_sha256"] == hashlib.sha256(tiff_bytes).hexdigest()

    queue = Queue("convert", connection=Redis.from_url(settings.redis_url))
    assert dataset["job"]["id"] in queue.job_ids

    run_worker_burst(settings)
    ready = logged_in.get(f"/api/v1/datasets/{dataset['id']}").json
    assert ready["status"] == "ready", ready
    assert (ready["width"], ready["height"], ready["channels"], ready["dtype"]) == (900, 600, 1, "uint16")
    assert ready["job"]["status"] == "finished" and ready["job"]["progress"] == 1.0
    assert ready["levels"][0] == [600, 900]

    original = settings.data_path / "originals" / ready["original_sha256"][:2] / ready["original_sha256"]
    assert original.read_bytes() == tiff_bytes
    assert not original.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), "originals are read-only"
    assert list((settings.data_path / "uploads").iterdir()) == []
    pyramids = list((settings.data_path / "pyramids").iterdir())
    assert [p.name for p in pyramids] == [f"{dataset['id']}.ome.zarr"], "no temporary leftovers"

    [mail] = list((settings.data_path / "outbox").glob("*.eml"))
    text = mail.read_text()
    assert "To: ana@example.org" in text and "Ready to view: mosaic.tif" in text
    assert f"http://127.0.0.1:8000/datasets/{dataset['id']}" in text

    page = logged_in.get(f"/datasets/{dataset['id']}").get_data(as_text=True)
    assert "Open in viewer" in page
    assert logged_in.get(f"/datasets/{dataset['id']}/view").status_code == 200


def test_the_pyramid_opens_with_ome_zarr_py(settings, logged_in, project_id, tiff_bytes):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    dataset_id = upload(logged_in, project_id, tiff_bytes, "mosaic.tif").json["id"]
    run_worker_burst(settings)
    nodes = list(Reader(parse_url(str(settings.data_path / "pyramids" / f"{dataset_id}.ome.zarr")))())
    multiscales = [node for node in nodes if node.load(Multiscales)]
    assert multiscales, "ome-zarr-py found no multiscales image"
    level0 = numpy.asarray(multiscales[0].data[0])
    assert level0.shape[-2:] == (600, 900)


def test_tiles_are_served_with_etags_and_checked_access(app, settings, logged_in, project_id, tiff_bytes, make_user):
    dataset_id = upload(logged_in, project_id, tiff_bytes, "mosaic.tif").json["id"]
    run_worker_burst(settings)
    base = f"/api/v1/datasets/{dataset_id}"

    info = logged_in.get(f"{base}/info").json
    assert info["width"] == 900 and info["height"] == 600 and info["tile_size"] == 256
    last = len(info["levels"]) - 1

    tile = logged_in.get(f"{base}/tiles/0/0/0.jpg")
    assert tile.status_code == 200 and tile.mimetype == "image/jpeg"
    image = Image.open(io.BytesIO(tile.data))
    assert image.size == (256, 256)
    assert numpy.asarray(image).std() > 1, "tile is blank"
    edge = Image.open(io.BytesIO(logged_in.get(f"{base}/tiles/0/2/3.png").data))
    assert edge.size == (900 - 3 * 256, 600 - 2 * 256)
    assert logged_in.get(f"{base}/tiles/{last}/0/0.webp").mimetype == "image/webp"

    again = logged_in.get(f"{base}/tiles/0/0/0.jpg", headers={"If-None-Match": tile.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert "max-age" in tile.headers["Cache-Control"]

    assert logged_in.get(f"{base}/thumbnail.png").mimetype == "image/png"

    for bad, status in [(f"{base}/tiles/99/0/0.jpg", 404), (f"{base}/tiles/0/0/99.jpg", 404),
                        (f"{base}/tiles/0/-1/0.jpg", 404), (f"{base}/tiles/0/0/0.gif", 400),
                        ("/api/v1/datasets/nope/tiles/0/0/0.jpg", 404)]:
        response = logged_in.get(bad)
        assert response.status_code == status, (bad, response.status_code)
        assert response.is_json and response.json["error"], bad

    make_user("eve@example.org")
    eve = app.test_client()
    log_in(eve, "eve@example.org")
    assert eve.get(f"{base}/tiles/0/0/0.jpg").status_code == 404
    assert eve.get(f"{base}/info").status_code == 404
    assert eve.get(f"/datasets/{dataset_id}/view").status_code == 404


def test_a_non_image_is_refused_at_once_and_leaves_nothing(settings, logged_in, project_id):
    response = upload(logged_in, project_id, b"%PDF-1.7 not an image at all", "scan.tif")
    assert response.status_code == 415
    assert "is not a supported image" in response.json["error"]
    assert list((settings.data_path / "uploads").iterdir()) == []
    assert logged_in.get(f"/api/v1/projects/{project_id}/datasets").json["datasets"] == []


def test_an_empty_upload_is_refused(logged_in, project_id):
    response = upload(logged_in, project_id, b"", "empty.tif")
    assert response.status_code == 400 and "empty" in response.json["error"]


def test_a_corrupt_tiff_fails_with_a_reason_and_the_worker_carries_on(settings, logged_in, project_id, tiff_bytes):
    broken = upload(logged_in, project_id, tiff_bytes[: len(tiff_bytes) // 3], "truncated.tif").json["id"]
    good = upload(logged_in, project_id, tiff_bytes, "good.tif").json["id"]
    run_worker_burst(settings)

    failed = logged_in.get(f"/api/v1/datasets/{broken}").json
    assert failed["status"] == "failed"
    assert failed["status_reason"] and "Traceback" not in failed["status_reason"]
    assert failed["job"]["status"] == "failed"
    assert failed["status_reason"] in logged_in.get(f"/datasets/{broken}").get_data(as_text=True)
    assert logged_in.get(f"/api/v1/datasets/{good}").json["status"] == "ready"
    assert logged_in.get(f"/datasets/{broken}/view").status_code == 409
    subjects = sorted(line for eml in (settings.data_path / "outbox").glob("*.eml")
                      for line in eml.read_text().splitlines() if line.startswith("Subject:"))
    assert subjects == ["Subject: Conversion failed: truncated.tif", "Subject: Ready to view: good.tif"]


def test_png_and_jpeg_uploads_convert(settings, logged_in, project_id):
    rgb = (numpy.indices((300, 400)).sum(axis=0) % 256).astype(numpy.uint8)
    for fmt, name in [("PNG", "photo.png"), ("JPEG", "photo.jpg")]:
        buffer = io.BytesIO()
        Image.fromarray(numpy.stack([rgb, rgb[::-1], 255 - rgb], axis=-1)).save(buffer, fmt)
        assert upload(logged_in, project_id, buffer.getvalue(), name).status_code == 202
    run_worker_burst(settings)
    datasets = logged_in.get(f"/api/v1/projects/{project_id}/datasets").json["datasets"]
    assert sorted((d["format"], d["status"], d["channels"]) for d in datasets) == [("JPEG", "ready", 3), ("PNG", "ready", 3)]


def test_the_form_upload_works_without_javascript(settings, logged_in, project_id, tiff_bytes):
    response = post_multipart(logged_in, f"/projects/{project_id}/datasets", {
        "file": (io.BytesIO(tiff_bytes), "form.tif"), "name": "From the form", "csrf_token": csrf_token(logged_in, "/")})
    assert response.status_code == 302 and "/datasets/" in response.headers["Location"]
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "From the form" in page and "uploaded" in page


def test_identical_uploads_share_one_original(settings, logged_in, project_id, tiff_bytes):
    first = upload(logged_in, project_id, tiff_bytes, "a.tif").json
    second = upload(logged_in, project_id, tiff_bytes, "b.tif").json
    assert first["id"] != second["id"] and first["original_sha256"] == second["original_sha256"]
    assert len(list((settings.data_path / "originals").rglob("*"))) == 2  # one folder, one file


def test_when_the_queue_is_down_the_dataset_fails_with_a_reason(settings, tiff_bytes, make_user):
    import dataclasses

    from portal.app import create_app
    from portal.embedded_redis import free_port

    app = create_app(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    client = app.test_client()
    make_user()
    log_in(client)
    project_id = client.post("/api/v1/projects", json={"name": "p"}, headers={"X-CSRFToken": csrf_token(client, "/")}).json["id"]
    response = upload(client, project_id, tiff_bytes, "m.tif")
    assert response.status_code == 503 and "could not queue" in response.json["error"]
    [dataset] = client.get(f"/api/v1/projects/{project_id}/datasets").json["datasets"]
    assert dataset["status"] == "failed" and "could not queue" in dataset["status_reason"]
    assert dataset["job"]["status"] == "failed"
