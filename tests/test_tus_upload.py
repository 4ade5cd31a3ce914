"""Resumable tus uploads: the protocol (offsets, checksums, termination, expiry, quotas, access), tuspy over real
HTTP (interrupted and resumed, converted by a real worker), and `tilescope upload` of a folder as one volume."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import numpy
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select, update

from portal import tus
from portal.cli_upload import KeptOpen, items_for, log_in, upload_command, upload_items
from portal.db import session_scope
from portal.models import Dataset, Membership, Project, Role, Upload
from portal.storage import Storage
from tests.conftest import PASSWORD, csrf_token, run_worker_burst
from tests.conftest import log_in as client_log_in
from tiler.synthetic import write_synthetic_tiff
from tiler.synthetic_volume import write_synthetic_stack

TUS = {"Tus-Resumable": "1.0.0"}


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@pytest.fixture
def project_id(logged_in):
    headers = {"X-CSRFToken": csrf_token(logged_in, "/")}
    return logged_in.post("/api/v1/projects", json={"name": "Uploads"}, headers=headers).json["id"]


@pytest.fixture
def headers(logged_in):
    return TUS | {"X-CSRFToken": csrf_token(logged_in, "/")}


def create(client, project_id, headers, length, **metadata):
    metadata.setdefault("filename", "image.tif")
    return client.post(f"/api/v1/projects/{project_id}/uploads", headers=headers | {
        "Upload-Length": str(length), "Upload-Metadata": meta(**metadata)})


def patch(client, url, headers, data: bytes, offset: int, checksum: str | None = None):
    extra = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    if checksum:
        extra["Upload-Checksum"] = checksum
    return client.patch(url, data=data, headers=headers | extra)


def sha1_header(data: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()


def test_the_protocol_offsets_checksums_termination_and_expiry(settings, logged_in, project_id, headers):
    base = f"/api/v1/projects/{project_id}/uploads"
    options = logged_in.options(base)
    assert options.status_code == 204 and options.headers["Tus-Version"] == "1.0.0"
    assert set(options.headers["Tus-Extension"].split(",")) >= {"creation", "termination", "checksum", "expiration"}
    assert "sha256" in options.headers["Tus-Checksum-Algorithm"]

    assert logged_in.post(base, headers={"X-CSRFToken": headers["X-CSRFToken"], "Upload-Length": "10",
                                         "Upload-Metadata": meta(filename="a.tif")}).status_code == 412
    assert logged_in.post(base, headers=TUS | {"Upload-Length": "10", "Upload-Metadata": meta(filename="a.tif")}
                          ).status_code == 400  # no CSRF token
    created = create(logged_in, project_id, headers, 10)
    assert created.status_code == 201 and created.headers["Tus-Resumable"] == "1.0.0", created.json
    url = created.headers["Location"]
    assert "GMT" in created.headers["Upload-Expires"]
    head = logged_in.head(url, headers=TUS)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", "10")
    assert head.headers["Cache-Control"] == "no-store"

    assert patch(logged_in, url, headers, b"abcd", 3).status_code == 409  # wrong offset
    wrong = patch(logged_in, url, headers, b"abcd", 0, sha1_header(b"abcX"))
    assert wrong.status_code == 460 and "checksum" in wrong.json["error"].lower()
    assert logged_in.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    good = patch(logged_in, url, headers, b"abcd", 0, sha1_header(b"abcd"))
    assert good.status_code == 204 and good.headers["Upload-Offset"] == "4"
    assert patch(logged_in, url, headers, b"efgh", 4, "crc32 AAAA").status_code == 400
    assert logged_in.patch(url, data=b"efgh", headers=headers | {"Upload-Offset": "4"}).status_code == 415
    assert patch(logged_in, url, headers, b"e" * 7, 4).status_code == 413  # past Upload-Length
    upload_id = url.rsplit("/", 1)[1]
    partial = Path(settings.data_path) / "uploads" / upload_id
    assert partial.read_bytes() == b"abcd"
    assert logged_in.get(url).json["offset"] == 4

    deleted = logged_in.delete(url, headers=headers)
    assert deleted.status_code == 204 and not partial.exists()
    assert logged_in.head(url, headers=TUS).status_code == 404

    # an upload untouched for more than a day is expired, file and record
    stale = create(logged_in, project_id, headers, 10).headers["Location"].rsplit("/", 1)[1]
    storage = Storage(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(update(Upload).where(Upload.id == stale).values(updated_at=tus.utcnow() - timedelta(days=2)))
        session.commit()
        assert tus.expire_uploads(session, storage) == 1
        assert session.get(Upload, stale) is None
    assert not (storage.area("uploads") / stale).exists()


def test_creation_with_upload_and_duplicates_stored_once(settings, logged_in, project_id, headers, tmp_path):
    png = tmp_path / "tiny.png"
    Image.fromarray(numpy.arange(64 * 48, dtype=numpy.uint8).reshape(48, 64)).save(png)
    data = png.read_bytes()
    dataset_ids = []
    for _ in range(2):  # creation-with-upload: the whole file in the POST
        response = logged_in.post(f"/api/v1/projects/{project_id}/uploads", data=data, headers=headers | {
            "Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="tiny.png"), "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream"})
        assert response.status_code == 201 and response.headers["Upload-Offset"] == str(len(data)), response.json
        dataset_ids.append(response.headers["Tilescope-Dataset-Id"])
        body = logged_in.get(response.headers["Location"]).json
        assert body["complete"] and body["dataset_id"] == dataset_ids[-1] and body["dataset_url"]
    assert dataset_ids[0] != dataset_ids[1]
    storage = Storage(settings)
    digest = hashlib.sha256(data).hexdigest()
    assert [p.name for p in storage.area("originals").rglob("*") if p.is_file()] == [digest]
    with session_scope(settings.sqlalchemy_url) as session:
        assert {session.get(Dataset, i).original_sha256 for i in dataset_ids} == {digest}
        assert tus.project_usage(session, project_id) == len(data)  # the shared original counts once

    # a file that is no image: the bytes were accepted, the reason is told, nothing is kept
    junk = b"just some text, no image" * 10
    url = create(logged_in, project_id, headers, len(junk), filename="notes.txt").headers["Location"]
    done = patch(logged_in, url, headers, junk, 0)
    assert done.status_code == 204 and "not a supported image" in done.headers["Tilescope-Upload-Error"]
    assert "not a supported image" in logged_in.get(url).json["error"]
    assert not (storage.area("uploads") / url.rsplit("/", 1)[1]).exists()


def test_bad_names_limits_quotas_and_other_users(settings, logged_in, project_id, headers, make_user, app):
    assert create(logged_in, project_id, headers, 10, filename="../../etc/passwd").status_code == 400
    assert create(logged_in, project_id, headers, 10, filename="/etc/passwd").status_code == 400
    bad = create(logged_in, project_id, headers, 10, filename="a.tif", relativePath="slices/../../x.tif",
                 group="g", groupSize="2")
    assert bad.status_code == 400 and "relativePath" in bad.json["error"]
    assert create(logged_in, project_id, headers, 0).status_code == 400
    too_big = create(logged_in, project_id, headers, settings.max_upload_bytes + 1)
    assert too_big.status_code == 413 and "TILESCOPE_MAX_UPLOAD_BYTES" in too_big.json["error"]

    with session_scope(settings.sqlalchemy_url) as session:
        session.get(Project, project_id).quota_bytes = 1000
        session.commit()
    url = create(logged_in, project_id, headers, 600).headers["Location"]
    over = create(logged_in, project_id, headers, 600)  # 600 in progress + 600 > 1000
    assert over.status_code == 413 and "quota" in over.json["error"]
    assert create(logged_in, project_id, headers, 400).status_code == 201

    # another analyst of the project does not see the upload; a viewer cannot upload; a stranger sees nothing
    bob, eve, vic = make_user("bob@example.org"), make_user("eve@example.org"), make_user("vic@example.org")
    with session_scope(settings.sqlalchemy_url) as session:
        session.add_all([Membership(user_id=bob, project_id=project_id, role=Role.ANALYST.value),
                         Membership(user_id=vic, project_id=project_id, role=Role.VIEWER.value)])
        session.commit()
    for email, status in (("bob@example.org", 404), ("eve@example.org", 404), ("vic@example.org", 403)):
        other = app.test_client()
        client_log_in(other, email)
        other_headers = TUS | {"X-CSRFToken": csrf_token(other, "/")}
        assert other.head(url, headers=TUS).status_code == status, email
        assert patch(other, url, other_headers, b"x", 0).status_code == status, email
        assert other.delete(url, headers=other_headers).status_code == status, email
    assert eve and create(app.test_client(), project_id, TUS, 10).status_code == 401


def test_tuspy_resumes_and_a_folder_becomes_one_volume_converted_by_a_worker(settings, live_url, project_id,
                                                                             tmp_path):
    from tusclient import client as tus_client
    from tusclient.storage.filestorage import FileStorage

    source = Path(write_synthetic_tiff(tmp_path / "mosaic.tif", (700, 900), "uint16", tile=256))
    session, csrf = log_in(live_url, "ana@example.org", PASSWORD, project_id)
    cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    client = tus_client.TusClient(f"{live_url}/api/v1/projects/{project_id}/uploads",
                                  headers={"Cookie": cookies, "X-CSRFToken": csrf, "User-Agent": "tilescope-upload/1"})
    state = FileStorage(str(tmp_path / "urls.json"))
    with open(source, "rb") as stream:
        options = {"file_stream": KeptOpen(stream), "chunk_size": 256 * 1024, "upload_checksum": True,
                   "metadata": {"filename": source.name, "name": "mosaic"}, "store_url": True, "url_storage": state}
        first = client.uploader(**options)
        first.upload(stop_at=256 * 1024)  # interrupted after the first chunk
        assert first.offset == 256 * 1024
        resumed = client.uploader(**options)  # a new process: the URL comes from the storage, the offset from HEAD
        assert resumed.url == first.url and resumed.offset == 256 * 1024
        resumed.upload()
    state._db.close()
    done = session.get(resumed.url).json()
    assert done["complete"] and done["dataset_id"], done

    # a folder of slices, interrupted by the CLI after two chunks, then finished by `tilescope upload`
    folder = tmp_path / "ct-scan"
    write_synthetic_stack(folder, (6, 120, 160), "uint16", fmt="tiff")
    state_file = tmp_path / "cli-urls.json"
    assert upload_items(session, csrf, live_url, project_id, items_for([folder]), state_file=state_file,
                        chunk_size=16 * 1024, stop_after_chunks=2, progress=False) == []
    result = CliRunner().invoke(upload_command, [str(folder), "--project", str(project_id), "--url", live_url,
                                                 "--email", "ana@example.org", "--password", PASSWORD,
                                                 "--state-file", str(state_file), "--chunk-mb", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("dataset ") == 1, result.output

    run_worker_burst(settings)
    storage = Storage(settings)
    with session_scope(settings.sqlalchemy_url) as db:
        datasets = {d.name: d for d in db.scalars(select(Dataset).where(Dataset.project_id == project_id))}
        assert set(datasets) == {"mosaic", "ct-scan"}, datasets
        mosaic, volume = datasets["mosaic"], datasets["ct-scan"]
        assert mosaic.status == "ready" and (mosaic.width, mosaic.height) == (900, 700), mosaic.status_reason
        original = storage.original(mosaic.original_sha256)
        assert hashlib.sha256(original.read_bytes()).hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()
        assert volume.status == "ready" and volume.depth == 6, volume.status_reason
        assert volume.format == "ZIP-STACK"
        parts = list(db.scalars(select(Upload).where(Upload.dataset_id == volume.id)))
        assert len(parts) == 6
    assert not [p for p in storage.area("uploads").iterdir() if not p.name.endswith((".db", ".json"))]
