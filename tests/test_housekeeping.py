"""Workers tidy up: abandoned uploads expire, scratch that no job can still use goes, the S3 file cache keeps its budget."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select, update

from portal.db import session_scope
from portal.models import Job, Project, Upload, User, utcnow
from portal.storage import CACHE_TOUCH_SECONDS, Storage, trim_cache
from portal.tus import create_upload
from tests.conftest import add_search_fixture_project, run_burst
from workers.housekeeping import OTHER_SCRATCH_SECONDS, tidy


def add_upload(settings, project_id: int, *, idle: timedelta) -> str:
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User))
        upload = create_upload(session, Storage(settings), session.get(Project, project_id), user, 10,
                               {"filename": "a.tif"}, max_bytes=100)
        session.execute(update(Upload).where(Upload.id == upload.id).values(updated_at=utcnow() - idle))
        return upload.id


def add_job(settings, status: str) -> str:
    with session_scope(settings.sqlalchemy_url) as session:
        job = Job(kind="convert", queue="convert", status=status)
        session.add(job)
        session.flush()
        return job.id


def scratch(settings, name: str, *, age: float = 0) -> str:
    folder = Storage(settings).area("scratch") / name
    folder.mkdir()
    (folder / "part.bin").write_bytes(b"x" * 10)
    when = time.time() - age
    os.utime(folder, (when, when))
    return name


def test_tidy_expires_abandoned_uploads_and_removes_only_scratch_no_job_can_use(settings, make_user):
    make_user()
    project_id = add_search_fixture_project(settings)
    abandoned = add_upload(settings, project_id, idle=timedelta(days=2))
    active = add_upload(settings, project_id, idle=timedelta(minutes=5))
    running, finished = add_job(settings, "running"), add_job(settings, "finished")
    keep = {scratch(settings, f"convert-{running}"), scratch(settings, "upload-fresh", age=60)}
    gone = {scratch(settings, f"analysis-{finished}"), scratch(settings, f"convert-{uuid.uuid4()}"),
            scratch(settings, "upload-old", age=OTHER_SCRATCH_SECONDS + 60)}

    assert tidy(settings) == {"uploads": 1, "scratch": 3, "cache": 0}
    assert {p.name for p in Storage(settings).area("scratch").iterdir()} == keep
    uploads = Storage(settings).area("uploads")
    assert not (uploads / abandoned).exists() and (uploads / active).exists()
    with session_scope(settings.sqlalchemy_url) as session:
        assert set(session.scalars(select(Upload.id))) == {active}
    assert tidy(settings) == {"uploads": 0, "scratch": 0, "cache": 0}, "nothing left to do"
    assert gone.isdisjoint(p.name for p in Storage(settings).area("scratch").iterdir())


def test_a_starting_worker_tidies(settings, make_user):
    make_user()
    left_over = scratch(settings, f"convert-{add_job(settings, 'failed')}")
    run_burst(settings)
    assert not (Storage(settings).area("scratch") / left_over).exists()


def test_the_cache_keeps_its_budget_least_recently_used_first(settings, tmp_path):
    storage = Storage(replace(settings, local_cache_bytes=2500))
    cache, now = storage.area("cache"), time.time()
    for i, hours in enumerate((9, 5, 3, 1)):  # the last was used an hour ago: in use, never removed
        folder = cache / f"result{i}"
        folder.mkdir()
        (folder / "objects.npy").write_bytes(b"x" * 1000)
        os.utime(folder / "objects.npy", (now - hours * 3600, now - hours * 3600))
    assert trim_cache(storage, storage.cache_bytes) == 2
    assert sorted(p.name for p in cache.iterdir()) == ["result2", "result3"], "oldest two went, with their folders"
    assert trim_cache(storage, 500) == 1, "what was used within two touch intervals stays even over budget"
    assert [p.name for p in cache.iterdir()] == ["result3"] and CACHE_TOUCH_SECONDS * 2 > 3600


def test_finished_parts_of_a_folder_still_uploading_wait_a_week(settings, make_user):
    make_user()
    project_id = add_search_fixture_project(settings)
    waiting, forgotten = (add_upload(settings, project_id, idle=idle) for idle in (timedelta(days=2), timedelta(days=8)))
    with session_scope(settings.sqlalchemy_url) as session:
        for upload_id, idle in ((waiting, timedelta(days=2)), (forgotten, timedelta(days=8))):
            session.execute(update(Upload).where(Upload.id == upload_id)
                            .values(completed_at=utcnow() - idle, updated_at=utcnow() - idle))
    assert tidy(settings)["uploads"] == 1
    with session_scope(settings.sqlalchemy_url) as session:
        assert set(session.scalars(select(Upload.id))) == {waiting}


def test_an_original_a_finished_upload_is_about_to_use_is_not_discarded(settings, make_user, tmp_path):
    """Deleting the last attachment with the same bytes while a finished upload of them is becoming a dataset."""
    import hashlib

    from portal.annotations import discard_unreferenced

    make_user()
    upload_id = add_upload(settings, add_search_fixture_project(settings), idle=timedelta(0))
    storage, data = Storage(settings), b"the same bytes"
    sha256 = hashlib.sha256(data).hexdigest()
    (tmp_path / "original").write_bytes(data)
    storage.publish_original(tmp_path / "original", sha256)
    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(update(Upload).where(Upload.id == upload_id).values(sha256=sha256, completed_at=utcnow()))
        discard_unreferenced(session, storage, [sha256])
    assert storage.original(sha256).exists()
    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(update(Upload).where(Upload.id == upload_id).values(sha256=""))
        discard_unreferenced(session, storage, [sha256])
    assert not storage.original(sha256).exists(), "unreferenced originals still go"
