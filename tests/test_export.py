"""Export: original and pyramid downloads (streamed zips), project manifests, `tilescope export`, access checks."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile

import pytest
from sqlalchemy import select

from portal.db import session_scope
from portal.legacy_import import plan_import, run_import
from portal.models import AuditEvent, Dataset, Membership, Project, Role, User
from portal.storage import Storage
from tests.conftest import PASSWORD, log_in
from tests.test_legacy_import import make_drive, run_cli


@pytest.fixture
def imported(settings, logged_in, tmp_path):
    """A project of the logged-in user with a copied image (with sidecar data) and an in-place slice folder."""
    drive = make_drive(tmp_path / "drive")
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User))
        project = Project(name="Exported")
        project.memberships.append(Membership(user_id=user.id, role=Role.OWNER.value))
        session.add(project)
        session.flush()
        plan = plan_import(session, project.id, drive / "mosaic_a.tif")
        plan.candidates[0].row = {"subject": "S-001", "visit": "baseline", "modality": "SEM", "tags": "pilot",
                                  "magnification": "500"}
        run_import(session, settings, Storage(settings), plan, project.id, user, convert=False)
        run_import(session, settings, Storage(settings), plan_import(session, project.id, drive / "ct_slices"),
                   project.id, user, in_place=True, convert=False)
        ids = {d.name: d.id for d in session.scalars(select(Dataset).where(Dataset.project_id == project.id))}
        return project.id, ids, drive


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_originals_download_as_files_or_zips_matching_their_checksums(settings, imported, logged_in):
    _, ids, drive = imported
    copied = logged_in.get(f"/api/v1/datasets/{ids['mosaic_a.tif']}/original")
    assert copied.status_code == 200 and copied.data == (drive / "mosaic_a.tif").read_bytes()
    assert 'filename=mosaic_a.tif' in copied.headers["Content-Disposition"]
    copied.close()
    folder = logged_in.get(f"/api/v1/datasets/{ids['ct_slices']}/original")
    assert folder.status_code == 200 and folder.mimetype == "application/zip"
    with session_scope(settings.sqlalchemy_url) as session:
        in_place = session.get(Dataset, ids["ct_slices"])
        assert in_place.storage_mode == "in-place" and sha(folder.data) == in_place.original_sha256
        actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.target_id == in_place.id))]
        assert actions.count("download") == 1
    names = zipfile.ZipFile(io.BytesIO(folder.data)).namelist()
    assert names == [f"slice{i}.tif" for i in range(1, 7)]  # natural order
    assert logged_in.get("/api/v1/datasets/no-such-dataset/original").status_code == 404


def test_pyramid_streams_as_a_zip_of_the_ome_zarr_folder(settings, ready_dataset, logged_in):
    response = logged_in.get(f"/api/v1/datasets/{ready_dataset}/pyramid.zip")
    assert response.status_code == 200 and response.is_streamed
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    folder = settings.data_path / "pyramids" / f"{ready_dataset}.ome.zarr"
    on_disk = sorted(p.relative_to(folder.parent).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(archive.namelist()) == on_disk and f"{ready_dataset}.ome.zarr/zarr.json" in on_disk
    assert archive.read(f"{ready_dataset}.ome.zarr/zarr.json") == (folder / "zarr.json").read_bytes()
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.scalar(select(AuditEvent.new_values).where(AuditEvent.action == "download")) == {
            "file": "pyramid.zip"}


def test_manifest_lists_every_dataset_with_checksums(imported, logged_in):
    project_id, _, drive = imported
    data = logged_in.get(f"/api/v1/projects/{project_id}/manifest.json").get_json()
    rows = {row["name"]: row for row in data["datasets"]}
    mosaic = rows["mosaic_a.tif"]
    assert mosaic["original_sha256"] == sha((drive / "mosaic_a.tif").read_bytes())
    assert (mosaic["subject"], mosaic["visit"], mosaic["modality"], mosaic["tags"]) == ("S-001", "baseline", "SEM",
                                                                                        ["pilot"])
    assert mosaic["metadata"] == {"magnification": 500.0} and mosaic["status"] == "uploaded"
    assert rows["ct_slices"]["storage_mode"] == "in-place"
    text = logged_in.get(f"/api/v1/projects/{project_id}/manifest.csv").get_data(as_text=True)
    csv_rows = {row["name"]: row for row in csv.DictReader(io.StringIO(text))}
    assert csv_rows["mosaic_a.tif"]["original_sha256"] == mosaic["original_sha256"]
    assert json.loads(csv_rows["mosaic_a.tif"]["metadata"]) == {"magnification": 500.0}
    assert logged_in.get(f"/api/v1/projects/{project_id}/manifest.xml").status_code == 404


def test_export_command_writes_originals_and_a_manifest_that_checks(settings, imported, tmp_path):
    project_id, _, _ = imported
    dest = tmp_path / "export"
    result = run_cli(settings, "export", "--project", str(project_id), str(dest))
    assert "exported 2 of 2 originals" in result.stdout and "exporting: 100%" in result.stderr
    rows = list(csv.DictReader(io.StringIO((dest / "manifest.csv").read_text())))
    assert len(rows) == 2
    for row in rows:
        assert sha((dest / row["export_path"]).read_bytes()) == row["original_sha256"]
    assert json.loads((dest / "manifest.json").read_text())["project"]["id"] == project_id


def status(client, url: str) -> int:
    response = client.get(url)
    response.close()
    return response.status_code


def test_viewers_may_download_others_get_404_and_anonymous_401(app, imported, make_user, settings):
    project_id, ids, _ = imported
    make_user("vic@example.org")
    make_user("eve@example.org")
    with session_scope(settings.sqlalchemy_url) as session:
        vic = session.scalar(select(User).where(User.email == "vic@example.org"))
        session.add(Membership(user_id=vic.id, project_id=project_id, role=Role.VIEWER.value))
    urls = [f"/api/v1/datasets/{ids['mosaic_a.tif']}/original", f"/api/v1/datasets/{ids['ct_slices']}/original",
            f"/api/v1/projects/{project_id}/manifest.csv", f"/api/v1/projects/{project_id}/manifest.json"]
    anonymous = app.test_client()
    assert {anonymous.get(url).status_code for url in urls} == {401}
    viewer = app.test_client()
    log_in(viewer, "vic@example.org", PASSWORD)
    assert {status(viewer, url) for url in urls} == {200}
    assert viewer.get(f"/api/v1/datasets/{ids['mosaic_a.tif']}/pyramid.zip").status_code == 409  # not converted
    other = app.test_client()
    log_in(other, "eve@example.org", PASSWORD)
    assert {other.get(url).status_code for url in urls + [f"/api/v1/datasets/{ids['mosaic_a.tif']}/pyramid.zip"]} \
        == {404}
