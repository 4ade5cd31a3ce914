"""`tilescope import`: recognising a legacy drive, dry run, copy and in-place imports, duplicates, resuming."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from PIL import Image
from sqlalchemy import func, select

from portal.db import session_scope
from portal.models import (
    AuditEvent, Dataset, DatasetStatus, ImportRecord, MetadataEntry, Project, Subject, Tag, User, Visit,
)
from tests.conftest import run_worker_burst, settings_env
from tiler.synthetic import write_synthetic_tiff
from tiler.synthetic_dicom import write_synthetic_dicom_series
from tiler.synthetic_volume import write_synthetic_stack

SIDECAR = """path,subject,visit,visit_date,modality,name,description,tags,magnification,acquired,operator
mosaic_a.tif,S-001,baseline,2020-03-04,SEM,Mosaic A,first mosaic,pilot;sem,500,2020-03-04,Ann
photo_b.png,S-001,week 4,2020-04-01,light microscopy,,,,20,,Bob
ct_slices,S-002,baseline,2021-01-02,CT,,,,,,
patient/series1/,S-003,V1,,CT,,,clinical,,,
"""


def make_drive(root: Path) -> Path:
    """2 single images, a slice folder, a DICOM series, an unknown file, hidden litter, a duplicate, a sidecar."""
    root.mkdir(parents=True)
    write_synthetic_tiff(root / "mosaic_a.tif", (300, 400), "uint8", seed=1)
    Image.fromarray((numpy.arange(200 * 300) % 251).astype("uint8").reshape(200, 300)).save(root / "photo_b.png")
    write_synthetic_stack(root / "ct_slices", (6, 64, 80), "uint16", fmt="tiff")
    write_synthetic_dicom_series(root / "patient" / "series1", (5, 32, 40))
    (root / "notes.xyz").write_bytes(b"lab notes, not an image")
    (root / ".DS_Store").write_bytes(b"finder litter")
    (root / "backup").mkdir()
    shutil.copy(root / "mosaic_a.tif", root / "backup" / "mosaic_a copy.tif")
    (root / "sidecar.csv").write_text(SIDECAR)
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def project_id(settings, make_user):
    make_user("admin@localhost", admin=True)
    with session_scope(settings.sqlalchemy_url) as session:
        project = Project(name="Legacy drives")
        session.add(project)
        session.flush()
        return project.id


def run_cli(settings, *args: str, check: bool = True, answer: str = "") -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "portal.cli", *args], env=settings_env(settings), check=False,
                            capture_output=True, text=True, timeout=180, input=answer)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def count(settings, model, *where) -> int:
    with session_scope(settings.sqlalchemy_url) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_dry_run_lists_the_plan_and_changes_nothing(settings, project_id, tmp_path):
    drive = make_drive(tmp_path / "drive")
    before = tree_hashes(drive)
    result = run_cli(settings, "import", str(drive), "--project", str(project_id), "--sidecar",
                     str(drive / "sidecar.csv"), "--dry-run")
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "[new dataset] mosaic_a.tif -> 'Mosaic A' (TIFF, 82.1 KB, subject/visit: S-001 / baseline)" in lines
    assert any(line.startswith("[new dataset] photo_b.png -> 'photo_b.png' (PNG") for line in lines)
    assert any(line.startswith("[new dataset] ct_slices -> 'ct_slices' (6 slices") for line in lines)
    assert any(line.startswith("[new dataset] patient/series1 -> 'series1' (DICOM series of 5 files") and
               "S-003 / V1" in line for line in lines)
    assert any(line.startswith("[duplicate of mosaic_a.tif] backup/mosaic_a copy.tif") for line in lines)
    assert "[unrecognised] notes.xyz" in lines
    assert not any(".DS_Store" in line or "sidecar.csv" in line for line in lines)
    assert "Summary: 4 new datasets" in result.stdout and "1 duplicates" in result.stdout
    assert "1 unrecognised files" in result.stdout
    assert count(settings, Dataset) == count(settings, ImportRecord) == count(settings, Subject) == 0
    declined = run_cli(settings, "import", str(drive), "--project", str(project_id), answer="n\n", check=False)
    assert "Import 4 datasets (copying 162.2 KB)? [y/N]" in declined.stdout and "Aborted" in declined.stderr  # asked first
    assert declined.returncode == 1 and count(settings, Dataset) == count(settings, ImportRecord) == 0
    assert not (settings.data_path / "originals").exists() or not any((settings.data_path / "originals").rglob("*"))
    assert tree_hashes(drive) == before


def test_import_copies_records_everything_and_a_rerun_imports_nothing(settings, project_id, tmp_path):
    drive = make_drive(tmp_path / "drive")
    before = tree_hashes(drive)
    args = ("import", str(drive), "--project", "Legacy drives", "--sidecar", str(drive / "sidecar.csv"), "--yes",
            "--no-convert")
    result = run_cli(settings, *args)
    assert "Imported 4 datasets; 1 duplicates skipped; 0 already imported; 0 failed; 1 unrecognised" in result.stdout
    assert "importing: 100%" in result.stderr  # the progress bar over bytes
    with session_scope(settings.sqlalchemy_url) as session:
        datasets = {d.name: d for d in session.scalars(select(Dataset))}
        assert set(datasets) == {"Mosaic A", "photo_b.png", "ct_slices", "series1"}
        mosaic = datasets["Mosaic A"]
        assert (mosaic.subject.code, mosaic.visit.code, str(mosaic.visit.visit_date)) == ("S-001", "baseline",
                                                                                         "2020-03-04")
        assert mosaic.modality == "SEM" and mosaic.description == "first mosaic" and mosaic.storage_mode == "copy"
        assert mosaic.original_sha256 == before["mosaic_a.tif"] and mosaic.status == DatasetStatus.UPLOADED.value
        assert datasets["photo_b.png"].subject_id == mosaic.subject_id  # subjects are created once per project
        assert datasets["ct_slices"].format == "ZIP-STACK" and datasets["series1"].format == "DICOM"
        assert {s.code for s in session.scalars(select(Subject))} == {"S-001", "S-002", "S-003"}
        assert session.scalar(select(func.count()).select_from(Visit)) == 4
        entries = {e.key: e for e in session.scalars(select(MetadataEntry).where(MetadataEntry.target_id == mosaic.id))}
        assert (entries["magnification"].value_type, entries["magnification"].value_number) == ("number", 500.0)
        assert (entries["acquired"].value_type, str(entries["acquired"].value_date)) == ("date", "2020-03-04")
        assert (entries["operator"].value_type, entries["operator"].value_text) == ("text", "Ann")
        assert {t.name for t in session.scalars(select(Tag).where(Tag.target_id == mosaic.id))} == {"pilot", "sem"}
        records = {Path(r.source_path).name: r for r in session.scalars(select(ImportRecord))}
        assert records["mosaic_a copy.tif"].status == "duplicate" and records["mosaic_a copy.tif"].dataset_id == mosaic.id
        assert sum(r.status == "imported" for r in records.values()) == 4
        for dataset in datasets.values():  # published, read-only, content-addressed
            original = settings.data_path / "originals" / dataset.original_sha256[:2] / dataset.original_sha256
            assert hashlib.sha256(original.read_bytes()).hexdigest() == dataset.original_sha256
            assert original.stat().st_mode & 0o222 == 0
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.actor == "import")))
        assert sorted(e.action for e in events).count("dataset.create") == 4
        assert {e.actor_id for e in events} == {session.scalar(select(User.id).where(User.email == "admin@localhost"))}
    report_path = Path(result.stdout.split("Report: ")[1].split(" (and .csv)")[0])
    report = json.loads(report_path.read_text())
    assert len(report["imported"]) == 4 and report["unrecognised"] == ["notes.xyz"]
    assert report["duplicates"][0]["path"] == "backup/mosaic_a copy.tif"
    assert "unrecognised" in report_path.with_suffix(".csv").read_text()
    assert tree_hashes(drive) == before  # the sources are never moved or modified

    again = run_cli(settings, *args)
    assert "Imported 0 datasets; 0 duplicates skipped; 5 already imported" in again.stdout
    assert count(settings, Dataset) == 4 and count(settings, ImportRecord) == 5


def test_an_interrupted_or_failing_import_resumes(settings, project_id, tmp_path):
    from portal.legacy_import import plan_import, run_import
    from portal.storage import Storage

    drive = make_drive(tmp_path / "drive")
    (drive / "sidecar.csv").unlink()

    class Interrupted(BaseException):
        pass

    def stop_after_first(dataset):
        raise Interrupted

    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User))
        plan = plan_import(session, project_id, drive)
        with pytest.raises(Interrupted):  # e.g. Ctrl-C right after the first dataset was registered
            run_import(session, settings, Storage(settings), plan, project_id, user, convert=False,
                       after_dataset=stop_after_first)
    assert count(settings, Dataset) == 1 and count(settings, ImportRecord) == 1

    with session_scope(settings.sqlalchemy_url) as session:  # a file vanishing mid-import fails alone, with a reason
        user = session.scalar(select(User))
        plan = plan_import(session, project_id, drive)
        assert len(plan.by_state("already imported")) == 1
        (drive / "photo_b.png").rename(tmp_path / "photo_b.png")
        report = run_import(session, settings, Storage(settings), plan, project_id, user, convert=False)
    assert [f["path"] for f in report.failed] == ["photo_b.png"] and "No such file" in report.failed[0]["reason"]
    assert len(report.imported) == 2 and len(report.duplicates) == 1
    assert count(settings, ImportRecord, ImportRecord.status == "failed") == 1
    assert not any((settings.data_path / "uploads").iterdir())  # no half-copied original left behind

    (tmp_path / "photo_b.png").rename(drive / "photo_b.png")
    result = run_cli(settings, "import", str(drive), "--project", str(project_id), "--yes", "--no-convert")
    assert "Imported 1 datasets; 0 duplicates skipped; 4 already imported; 0 failed" in result.stdout
    assert count(settings, Dataset) == 4 and count(settings, ImportRecord, ImportRecord.status == "failed") == 0


def test_in_place_import_copies_nothing_and_converts_where_the_files_are(settings, project_id, tmp_path):
    drive = make_drive(tmp_path / "drive")
    before = tree_hashes(drive)
    result = run_cli(settings, "import", str(drive), "--project", str(project_id), "--sidecar",
                     str(drive / "sidecar.csv"), "--in-place", "--yes")
    assert "Imported 4 datasets" in result.stdout and "Conversions: queued 4" in result.stdout
    assert not (settings.data_path / "originals").exists() or not any((settings.data_path / "originals").rglob("*"))
    run_worker_burst(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        datasets = {d.name: d for d in session.scalars(select(Dataset))}
        assert {d.status for d in datasets.values()} == {DatasetStatus.READY.value}, \
            [(d.name, d.status_reason) for d in datasets.values()]
        assert {d.storage_mode for d in datasets.values()} == {"in-place"}
        assert datasets["Mosaic A"].original_location == str(drive / "mosaic_a.tif")
        assert datasets["Mosaic A"].original_sha256 == before["mosaic_a.tif"]
        assert datasets["ct_slices"].original_location == str(drive / "ct_slices")
        assert (datasets["ct_slices"].depth, datasets["series1"].depth) == (6, 5)
        assert (datasets["Mosaic A"].width, datasets["Mosaic A"].height) == (400, 300)
    assert tree_hashes(drive) == before
