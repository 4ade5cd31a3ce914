"""tus uploads when storage is S3 (moto on loopback): uploads in progress are part objects in the bucket, so web
replicas with different data folders share one upload; nothing is written to `<data>/uploads`."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from portal import tus, upload_store
from portal.cli_upload import KeptOpen
from portal.cli_upload import log_in as cli_log_in
from portal.db import session_scope
from portal.models import Dataset, Upload
from portal.settings import Settings
from portal.storage import Storage
from tests.conftest import PASSWORD, csrf_token, log_in, run_burst, serving
from tiler.synthetic import write_synthetic_tiff
from tiler.synthetic_volume import write_synthetic_stack

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


@pytest.fixture
def s3_settings(settings, s3_storage_env):
    env = s3_storage_env
    return replace(settings, storage_url=env["TILESCOPE_STORAGE_URL"], s3_endpoint_url=env["TILESCOPE_S3_ENDPOINT_URL"],
                   s3_access_key_id=env["TILESCOPE_S3_ACCESS_KEY_ID"],
                   s3_secret_access_key=env["TILESCOPE_S3_SECRET_ACCESS_KEY"], s3_region=env["TILESCOPE_S3_REGION"])


def web_app(settings):
    from portal.app import create_app

    app = create_app(settings)
    app.config.update(TESTING=True)
    return app


def logged_in_client(app):
    client = app.test_client()
    log_in(client)
    return client, TUS | {"X-CSRFToken": csrf_token(client, "/")}


@pytest.fixture
def replicas(s3_settings, make_user, tmp_path):
    """Two web apps on one database, Redis and bucket, each with a data folder of its own; A's client made a project."""
    make_user()
    a_settings, b_settings = s3_settings, replace(s3_settings, data_dir=tmp_path / "replica-b")
    (a, a_headers), (b, b_headers) = logged_in_client(web_app(a_settings)), logged_in_client(web_app(b_settings))
    project_id = a.post("/api/v1/projects", json={"name": "On S3"}, headers=a_headers).json["id"]
    return project_id, (a, a_headers, a_settings), (b, b_headers, b_settings)


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(client, project_id, headers, length, **metadata):
    metadata.setdefault("filename", "image.tif")
    return client.post(f"/api/v1/projects/{project_id}/uploads", headers=headers | {
        "Upload-Length": str(length), "Upload-Metadata": meta(**metadata)})


def patch(client, url, headers, data: bytes, offset: int, checksum: str | None = None):
    extra = {"Upload-Offset": str(offset), "Content-Type": OCTETS} | ({"Upload-Checksum": checksum} if checksum else {})
    return client.patch(url, data=data, headers=headers | extra)


def sha1_header(data: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode()


class Dropped:
    """A request body whose client goes away after sending `data`."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self, size: int = -1) -> bytes:
        if not self.data:
            raise ConnectionResetError("the client went away")
        sent, self.data = self.data[:size], self.data[size:]
        return sent


def offset_of(client, url) -> str:
    return client.head(url, headers=TUS).headers["Upload-Offset"]


def part_objects(settings, upload_id: str = "") -> list[tuple[str, int]]:
    """(name, size) of the part objects of one upload, or of every upload ("<id>/<offset>")."""
    folder = Storage(settings).locate(f"uploads/{upload_id}" if upload_id else "uploads")
    return folder.files() if folder.exists() else []


def local_upload_files(*settings_list) -> list[Path]:
    return [p for s in settings_list for p in (s.data_path / "uploads").rglob("*") if p.is_file()]


def test_tuspy_uploads_in_chunks_into_the_bucket_and_the_dataset_converts(s3_settings, make_user, tmp_path):
    from tusclient import client as tus_client
    from tusclient.storage.filestorage import FileStorage

    make_user()
    app = web_app(s3_settings)
    client, headers = logged_in_client(app)
    project_id = client.post("/api/v1/projects", json={"name": "On S3"}, headers=headers).json["id"]
    source = Path(write_synthetic_tiff(tmp_path / "mosaic.tif", (300, 400), "uint16", tile=256))
    size, chunk = source.stat().st_size, 64 * 1024
    assert size > 3 * chunk
    with serving(app) as live_url:
        session, csrf = cli_log_in(live_url, "ana@example.org", PASSWORD, project_id)
        cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        tus = tus_client.TusClient(f"{live_url}/api/v1/projects/{project_id}/uploads",
                                   headers={"Cookie": cookies, "X-CSRFToken": csrf,
                                            "User-Agent": session.headers["User-Agent"]})
        state = FileStorage(str(tmp_path / "urls.json"))
        with open(source, "rb") as stream:
            options = {"file_stream": KeptOpen(stream), "chunk_size": chunk, "upload_checksum": True,
                       "metadata": {"filename": source.name, "name": "mosaic"}, "store_url": True,
                       "url_storage": state}
            first = tus.uploader(**options)
            first.upload(stop_at=2 * chunk)  # interrupted after two chunks
            upload_id = first.url.rsplit("/", 1)[1]
            assert part_objects(s3_settings, upload_id) == [(f"{0:020d}", chunk), (f"{chunk:020d}", chunk)]
            resumed = tus.uploader(**options)  # the offset comes from HEAD
            assert resumed.url == first.url and resumed.offset == 2 * chunk
            resumed.upload()
        state._db.close()
        done = session.get(resumed.url).json()
    assert done["complete"] and done["dataset_id"], done
    assert done["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert local_upload_files(s3_settings) == [], "uploads in progress were written to the data folder"
    assert part_objects(s3_settings) == [], "the parts outlived the dataset"
    assert not [p for p in (s3_settings.data_path / "scratch").rglob("*") if p.is_file()], "scratch left behind"

    run_burst(s3_settings)
    with session_scope(s3_settings.sqlalchemy_url) as db:
        dataset = db.get(Dataset, done["dataset_id"])
        assert dataset.status == "ready" and (dataset.width, dataset.height) == (400, 300), dataset.status_reason
        original = Storage(s3_settings).original(dataset.original_sha256)
        assert original.url.startswith("s3://")
        assert hashlib.sha256(original.read_bytes()).hexdigest() == done["sha256"]


def test_two_replicas_with_their_own_data_folders_share_uploads_and_groups(replicas, tmp_path):
    project_id, (a, a_headers, a_settings), (b, b_headers, b_settings) = replicas
    data = Path(write_synthetic_tiff(tmp_path / "disks.tif", (200, 300), "uint8", tile=256)).read_bytes()
    half = len(data) // 2
    url = create(a, project_id, a_headers, len(data), filename="disks.tif").headers["Location"]
    first = patch(b, url, b_headers, data[:half], 0)
    assert first.status_code == 204 and first.headers["Upload-Offset"] == str(half), first.json
    assert offset_of(a, url) == str(half)
    stale = patch(a, url, a_headers, data[half:], 0)
    assert stale.status_code == 409 and "offset" in stale.json["error"]

    upload_id = url.rsplit("/", 1)[1]
    with upload_store.redis_lock(a_settings, f"upload:{upload_id}"):  # a PATCH in flight on some replica
        busy = patch(b, url, b_headers, data[half:], half)
    assert busy.status_code == 409 and "another request" in busy.json["error"]
    last = patch(a, url, a_headers, data[half:], half)
    assert last.status_code == 204 and last.headers["Upload-Offset"] == str(len(data)), last.json
    assert "Tilescope-Upload-Error" not in last.headers, last.headers["Tilescope-Upload-Error"]
    single_id = last.headers["Tilescope-Dataset-Id"]
    assert b.get(url).json["dataset_id"] == single_id

    # a folder of slices sent part by part to alternating replicas becomes one volume
    folder = tmp_path / "ct-scan"
    slices = write_synthetic_stack(folder, (3, 40, 50), "uint16", fmt="tiff")
    group = {"group": "g-1", "groupSize": str(len(slices)), "name": "ct-scan"}
    answers = []
    for index, path in enumerate(slices):
        client, headers = (a, a_headers) if index % 2 == 0 else (b, b_headers)
        body = path.read_bytes()
        part_url = create(client, project_id, headers, len(body), filename=path.name,
                          relativePath=f"ct-scan/{path.name}", **group).headers["Location"]
        other, other_headers = (b, b_headers) if client is a else (a, a_headers)
        assert patch(other, part_url, other_headers, body[:100], 0).status_code == 204
        answers.append(patch(client, part_url, headers, body[100:], 100))
    assert [r.status_code for r in answers] == [204] * len(slices)
    assert [("Tilescope-Dataset-Id" in r.headers) for r in answers] == [False] * (len(slices) - 1) + [True]
    volume_id = answers[-1].headers["Tilescope-Dataset-Id"]
    assert part_objects(a_settings) == [], "the parts outlived the dataset"
    assert local_upload_files(a_settings, b_settings) == []

    run_burst(a_settings)
    with session_scope(a_settings.sqlalchemy_url) as db:
        single, volume = db.get(Dataset, single_id), db.get(Dataset, volume_id)
        assert single.status == "ready" and single.original_sha256 == hashlib.sha256(data).hexdigest()
        assert volume.status == "ready" and volume.depth == 3 and volume.format == "ZIP-STACK", volume.status_reason
        assert volume.name == "ct-scan"
        assert len(list(db.scalars(select(Upload).where(Upload.dataset_id == volume_id)))) == 3


def test_checksums_stale_offsets_lost_data_termination_and_expiry_on_s3(replicas, tmp_path):
    project_id, (a, a_headers, a_settings), (b, b_headers, _) = replicas
    created = create(a, project_id, a_headers, 10)
    assert created.status_code == 201 and "GMT" in created.headers["Upload-Expires"]
    url = created.headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    head = a.head(url, headers=TUS)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", "10")

    assert patch(a, url, a_headers, b"abcd", 3).status_code == 409
    wrong = patch(b, url, b_headers, b"abcd", 0, sha1_header(b"abcX"))
    assert wrong.status_code == 460 and "checksum" in wrong.json["error"].lower()
    assert offset_of(a, url) == "0"
    assert part_objects(a_settings, upload_id) == [(f"{0:020d}", 0)]  # only the empty part of a new upload
    good = patch(b, url, b_headers, b"abcd", 0, sha1_header(b"abcd"))
    assert good.status_code == 204 and good.headers["Upload-Offset"] == "4"
    assert patch(a, url, a_headers, b"e" * 7, 4).status_code == 413  # past Upload-Length
    assert patch(a, url, a_headers, b"efgh", 4, "crc32 AAAA").status_code == 400

    # parts left at or past the offset by attempts that died before committing are ignored, or replaced
    storage = Storage(a_settings)
    junk = tmp_path / "junk"
    junk.write_bytes(b"XXXXXX")
    upload_store.put_part(storage, upload_id, 4, junk)
    upload_store.put_part(storage, upload_id, 8, junk)
    assert offset_of(a, url) == "4"
    assert patch(a, url, a_headers, b"ef", 4).status_code == 204
    assert part_objects(a_settings, upload_id)[:2] == [(f"{0:020d}", 4), (f"{4:020d}", 2)]
    assert a.get(url).json["offset"] == 6
    finished = patch(b, url, b_headers, b"ghij", 6)  # complete: no image, but its bytes were summed in order
    assert finished.status_code == 204 and "not a supported image" in finished.headers["Tilescope-Upload-Error"]
    assert a.get(url).json["sha256"] == hashlib.sha256(b"abcdefghij").hexdigest()
    assert part_objects(a_settings, upload_id) == [], "a refused upload's parts are kept"

    # a client that disconnects mid-body keeps what arrived, unless it sent a checksum
    dropped_url = create(a, project_id, a_headers, 10).headers["Location"]
    dropped_id = dropped_url.rsplit("/", 1)[1]
    with session_scope(a_settings.sqlalchemy_url) as session:
        upload = session.get(Upload, dropped_id)
        kept = tus.append_chunk(session, storage, upload, Dropped(b"abc"), 0, 10, None,
                                disconnect_errors=(ConnectionResetError,), settings=a_settings)
        assert (kept.offset, kept.disconnected) == (3, True)
        lost = tus.append_chunk(session, storage, upload, Dropped(b"de"), 3, 7, sha1_header(b"defghij"),
                                disconnect_errors=(ConnectionResetError,), settings=a_settings)
        assert (lost.offset, lost.disconnected) == (3, True)
    assert part_objects(a_settings, dropped_id) == [(f"{0:020d}", 3)]
    assert offset_of(b, dropped_url) == "3"

    # termination removes the part objects
    deleted = b.delete(dropped_url, headers=b_headers)
    assert deleted.status_code == 204 and part_objects(a_settings, dropped_id) == []
    assert a.head(dropped_url, headers=TUS).status_code == 404

    # the data gone while the row stays: 404, as for a local file
    gone_url = create(a, project_id, a_headers, 10).headers["Location"]
    upload_store.parts_folder(storage, gone_url.rsplit("/", 1)[1]).delete()
    gone = patch(b, gone_url, b_headers, b"abc", 0)
    assert gone.status_code == 404 and "gone" in gone.json["error"]

    # an upload untouched for more than a day is expired, parts and record
    stale = create(a, project_id, a_headers, 10).headers["Location"].rsplit("/", 1)[1]
    assert patch(a, f"{url.rsplit('/', 1)[0]}/{stale}", a_headers, b"abc", 0).status_code == 204
    with session_scope(a_settings.sqlalchemy_url) as session:
        session.execute(update(Upload).where(Upload.id == stale).values(updated_at=tus.utcnow() - timedelta(days=2)))
        session.commit()
        assert tus.expire_uploads(session, storage) == 1
        assert session.get(Upload, stale) is None
    assert part_objects(a_settings, stale) == []
    assert local_upload_files(a_settings) == []


def test_the_redis_lock_is_renewed_while_held_and_freed_when_its_holder_dies(redis_server, tmp_path, monkeypatch):
    from redis import Redis

    monkeypatch.setattr(upload_store, "LOCK_SECONDS", 0.4)
    settings = Settings(data_dir=tmp_path, redis_url=redis_server.url)
    with upload_store.redis_lock(settings, "test:renewed") as check_lock:
        time.sleep(0.8)  # twice its lifetime: the holder's thread renewed it
        with pytest.raises(upload_store.LockBusy), upload_store.redis_lock(settings, "test:renewed"):
            pass
        check_lock(force=True)
    with upload_store.redis_lock(settings, "test:renewed"):  # released
        pass

    with Redis.from_url(redis_server.url) as redis:
        assert redis.lock("tilescope:test:died", timeout=0.4).acquire(blocking=False)  # a holder that then died
        with pytest.raises(upload_store.LockBusy), upload_store.redis_lock(settings, "test:died"):
            pass
        with upload_store.redis_lock(settings, "test:died", wait=1):  # freed within LOCK_SECONDS
            pass
        with pytest.raises(upload_store.LockLost), upload_store.redis_lock(settings, "test:lost") as check_lock:
            redis.delete("tilescope:test:lost")  # Redis lost it (restarted without its data)
            check_lock(force=True)


def test_a_delete_waits_for_the_patch_in_flight_and_then_leaves_nothing(replicas):
    import threading

    project_id, (a, a_headers, a_settings), _ = replicas
    url = create(a, project_id, a_headers, 8).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    writing, released = threading.Event(), threading.Event()

    def a_patch_in_flight():  # holds the upload's lock as a PATCH on another replica does while it streams
        with upload_store.redis_lock(a_settings, f"upload:{upload_id}"):
            writing.set()
            time.sleep(1.0)
            released.set()

    holder = threading.Thread(target=a_patch_in_flight)
    holder.start()
    writing.wait(10)
    deleted = a.delete(url, headers=a_headers)
    holder.join()
    assert deleted.status_code == 204 and released.is_set(), "the DELETE went ahead while the PATCH was writing"
    assert part_objects(a_settings, upload_id) == []


def test_parts_stay_when_the_original_could_not_be_stored(replicas, monkeypatch, tmp_path):
    from tiler.errors import StorageUnavailable

    project_id, (a, a_headers, a_settings), _ = replicas
    data = Path(write_synthetic_tiff(tmp_path / "kept.tif", (100, 120), "uint8", tile=256)).read_bytes()
    url = create(a, project_id, a_headers, len(data)).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]

    def store_down(self, upload, sha256):
        raise StorageUnavailable("the object store did not answer (injected)")

    monkeypatch.setattr(Storage, "publish_original", store_down)
    patch(a, url, a_headers, data, 0)
    assert sum(size for _, size in part_objects(a_settings, upload_id)) == len(data), "the bytes were thrown away"
    with session_scope(a_settings.sqlalchemy_url) as session:
        upload = session.get(Upload, upload_id)
        assert upload.dataset_id is None and "did not answer" in upload.upload_metadata["error"]
