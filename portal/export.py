"""Getting data out again: deterministic zips of folders (streamed), project manifests, and a whole-project export."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import Dataset, MetadataEntry, Project, Tag
from portal.storage import Storage
from tiler.storage import Location
from tiler.readers.volume_base import natural_sort_key

#: Bytes copied at a time while zipping, hashing or exporting.
BLOCK_BYTES = 1 << 20
#: Every zip entry gets this timestamp, so a folder always zips to the same bytes (and the same SHA-256).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
MANIFEST_FIELDS = ("dataset_id", "name", "subject", "visit", "visit_date", "modality", "original_filename",
                   "original_size", "original_sha256", "storage_mode", "original_location", "format", "status",
                   "pyramid_checksum", "metadata", "tags", "export_path")

Entry = tuple[str, Path | Location]  # (name inside the zip, file on disk or in the store)


class _Unseekable:
    """A write-only stream zipfile cannot seek in (so it writes data descriptors): same bytes everywhere."""

    def __init__(self, write: Callable[[bytes], object]):
        self._write = write

    def write(self, data: bytes) -> int:
        self._write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def folder_entries(folder: Path, files: Iterable[Path] | None = None, prefix: str = "") -> list[Entry]:
    """(zip name, path) of every file under `folder` (or just `files`), in natural name order."""
    paths = list(files) if files is not None else [p for p in folder.rglob("*") if p.is_file()]
    entries = [(prefix + path.relative_to(folder).as_posix(), path) for path in paths]
    return sorted(entries, key=lambda entry: natural_sort_key(entry[0]))


def stored_folder_entries(folder: Location, prefix: str = "") -> list[Entry]:
    """(zip name, Location) of every file under a stored folder (local or in an object store), in natural order."""
    entries = [(prefix + name, folder / name) for name, _ in folder.files()]
    return sorted(entries, key=lambda entry: natural_sort_key(entry[0]))


def open_binary(source: Path | Location):
    """A file on disk or in the store, open for reading bytes."""
    return source.open() if isinstance(source, Location) else open(source, "rb")


def _zip_entry(archive: zipfile.ZipFile, name: str, path: Path | Location) -> Iterator[int]:
    """Add one file to the archive a block at a time, yielding each block's size after it is written."""
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.external_attr = 0o644 << 16
    # the size decides ZIP64 up front, so the bytes depend only on the files
    info.file_size = path.size() if isinstance(path, Location) else path.stat().st_size
    with open_binary(path) as source, archive.open(info, "w") as target:
        while block := source.read(BLOCK_BYTES):
            target.write(block)
            yield len(block)


def write_zip(entries: Iterable[Entry], write: Callable[[bytes], object],
              progress: Callable[[int], None] | None = None) -> None:
    """Zip the entries (stored, fixed timestamps) through `write`, one block at a time: never the whole zip in memory."""
    with zipfile.ZipFile(_Unseekable(write), "w", compression=zipfile.ZIP_STORED) as archive:
        for name, path in entries:
            for size in _zip_entry(archive, name, path):
                if progress:
                    progress(size)


def zip_sha256(entries: list[Entry], progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """SHA-256 and size of the zip `write_zip` makes of the entries, without writing it anywhere."""
    digest, size = hashlib.sha256(), 0

    def feed(data: bytes) -> None:
        nonlocal size
        digest.update(data)
        size += len(data)

    write_zip(entries, feed, progress)
    return digest.hexdigest(), size


def stream_zip(entries: list[Entry]) -> Iterator[bytes]:
    """The same zip as `write_zip`, as an iterator of about BLOCK_BYTES chunks for a streamed HTTP response."""
    pending: list[bytes] = []
    archive = zipfile.ZipFile(_Unseekable(pending.append), "w", compression=zipfile.ZIP_STORED)
    try:
        for name, path in entries:
            for _ in _zip_entry(archive, name, path):
                if pending:
                    yield b"".join(pending)
                    pending.clear()
        archive.close()
        yield b"".join(pending)
    finally:
        if archive.fp is not None:
            archive.close()


def original_entries(storage: Storage, dataset: Dataset) -> tuple[Path | Location, list[Entry] | None]:
    """Where a dataset's original is: (file, None) for a single file, (folder, zip entries) for an in-place folder."""
    if dataset.storage_mode == "in-place":
        location = Path(dataset.original_location)
        if location.is_dir():
            from portal.legacy_import import folder_members

            return location, folder_entries(location, folder_members(location))
        return location, None
    return storage.original(dataset.original_sha256), None


def original_download_name(dataset: Dataset, entries: list[Entry] | None) -> str:
    name = dataset.original_filename or dataset.id
    return f"{name}.zip" if entries is not None and not name.lower().endswith(".zip") else name


def manifest_rows(session: Session, project: Project) -> list[dict]:
    """One row per dataset of the project: where it came from, checksums, status, metadata and tags."""
    datasets = list(session.scalars(select(Dataset).where(Dataset.project_id == project.id)
                                    .order_by(Dataset.created_at, Dataset.id)))
    ids = [d.id for d in datasets]
    metadata: dict[str, dict] = {i: {} for i in ids}
    tags: dict[str, list] = {i: [] for i in ids}
    for entry in session.scalars(select(MetadataEntry).where(MetadataEntry.target_type == "dataset",
                                                             MetadataEntry.target_id.in_(ids))):
        metadata[entry.target_id][entry.key] = (entry.value_number if entry.value_type == "number"
                                                else entry.value_text)
    for tag in session.scalars(select(Tag).where(Tag.target_type == "dataset", Tag.target_id.in_(ids))
                               .order_by(Tag.name)):
        tags[tag.target_id].append(tag.name)
    return [{
        "dataset_id": d.id, "name": d.name, "subject": d.subject.code if d.subject else "",
        "visit": d.visit.code if d.visit else "",
        "visit_date": d.visit.visit_date.isoformat() if d.visit and d.visit.visit_date else "",
        "modality": d.modality, "original_filename": d.original_filename, "original_size": d.original_size,
        "original_sha256": d.original_sha256, "storage_mode": d.storage_mode,
        "original_location": d.original_location, "format": d.format, "status": d.status,
        "pyramid_checksum": (d.pyramid_info or {}).get("checksum", ""), "metadata": metadata[d.id],
        "tags": tags[d.id],
    } for d in datasets]


def manifest_csv(rows: list[dict]) -> str:
    """The manifest as CSV: metadata as JSON, tags semicolon-separated."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row | {"metadata": json.dumps(row["metadata"], sort_keys=True),
                               "tags": ";".join(row["tags"])})
    return out.getvalue()


def manifest_json(project: Project, rows: list[dict]) -> str:
    return json.dumps({"project": {"id": project.id, "name": project.name}, "datasets": rows}, indent=2)


def export_project(session: Session, storage: Storage, project: Project, dest: Path,
                   progress: Callable[[int], None] | None = None) -> dict:
    """Write every original (verified against its SHA-256) and manifest.csv/.json to `dest`; returns counts."""
    rows = manifest_rows(session, project)
    folder = dest / "originals"
    folder.mkdir(parents=True, exist_ok=True)
    written, problems = 0, []
    for row in rows:
        dataset = session.get(Dataset, row["dataset_id"])
        source, entries = original_entries(storage, dataset)
        target = folder / f"{dataset.id}_{Path(original_download_name(dataset, entries)).name}"
        row["export_path"] = target.relative_to(dest).as_posix()
        try:
            digest = _copy_out(source, entries, target, progress)
        except OSError as exc:
            problems.append(f"{dataset.name}: cannot read the original at {source}: {exc}")
            continue
        if digest != dataset.original_sha256:
            problems.append(f"{dataset.name}: checksum mismatch (expected {dataset.original_sha256}, read {digest})")
        written += 1
    (dest / "manifest.csv").write_text(manifest_csv(rows), encoding="utf-8")
    (dest / "manifest.json").write_text(manifest_json(project, rows), encoding="utf-8")
    return {"datasets": len(rows), "written": written, "problems": problems}


def _copy_out(source: Path | Location, entries: list[Entry] | None, target: Path, progress: Callable[[int], None] | None) -> str:
    """Copy a file (or zip a folder) to `target` via a temporary name; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".part")
    try:
        with open(partial, "wb") as out:
            def put(data: bytes) -> None:
                digest.update(data)
                out.write(data)
            if entries is not None:
                write_zip(entries, put, progress)
            else:
                with open_binary(source) as handle:
                    while block := handle.read(BLOCK_BYTES):
                        put(block)
                        if progress:
                            progress(len(block))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return digest.hexdigest()


def total_original_bytes(session: Session, project: Project) -> int:
    return sum(session.scalars(select(Dataset.original_size).where(Dataset.project_id == project.id)))


