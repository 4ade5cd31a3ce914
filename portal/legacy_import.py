"""Legacy bulk import, Flask-free: walk a drive, recognise datasets, plan (hash, find duplicates), then import."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from redis import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import audit
from portal.export import folder_entries, write_zip, zip_sha256
from portal.jobs import QueueUnavailable, enqueue, redis_connection
from portal.models import Dataset, DatasetStatus, ImportRecord, Job, JobStatus, MetadataEntry, Subject, Tag, Visit
from tiler.checksum import CHUNK_BYTES
from tiler.readers import open_image, sniff_format
from tiler.readers.slices import HEAD_BYTES, slice_kind
from tiler.readers.volume_base import natural_sort_key

#: Names (lower case) never imported nor reported: operating-system and backup litter.
SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "__macosx", "$recycle.bin", "system volume information", "lost+found"}
#: Formats whose folder of 2D slices becomes one volume.
SLICE_KINDS = ("TIFF", "PNG", "JPEG")
#: What a candidate is: one file, a folder of 2D slices, or a folder holding a DICOM series.
FILE, SLICES, SERIES = "file", "slices", "series"
SIDECAR_COLUMNS = ("path", "subject", "visit", "visit_date", "modality", "name", "description", "tags")

Progress = Callable[[int], None]


@dataclass
class Candidate:
    """A file or folder that will become one dataset (or is a duplicate of one)."""

    source: Path
    relative: str
    kind: str
    format: str
    files: list[Path]
    size: int
    row: dict = field(default_factory=dict)
    sha256: str = ""
    state: str = "new"  # new | duplicate | already imported
    duplicate_of: str = ""


@dataclass
class ImportPlan:
    root: Path
    candidates: list[Candidate] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)
    unmatched_rows: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def by_state(self, state: str) -> list[Candidate]:
        return [c for c in self.candidates if c.state == state]

    @property
    def new_bytes(self) -> int:
        return sum(c.size for c in self.by_state("new"))


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in SYSTEM_NAMES


def folder_members(folder: Path) -> list[Path]:
    """The visible files directly in `folder`, in natural order (what a slice folder or series is made of)."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.is_symlink() and not is_hidden(p)]
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def _kind(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return slice_kind(handle.read(HEAD_BYTES))
    except OSError:
        return None


def _same_plane(first: Path, last: Path) -> bool:
    """Two files are slices of one volume when both are single 2D images of the same shape and type."""
    try:
        with open_image(first) as a, open_image(last) as b:
            return len(a.shape) == 3 and a.shape == b.shape and str(a.dtype) == str(b.dtype)
    except Exception:  # noqa: BLE001 — unreadable slices make the folder a set of single files, reported one by one
        return False


def _folder_candidate(root: Path, folder: Path, files: list[Path]) -> Candidate | None:
    """The folder as one volume when it holds only files, at least two, all DICOM or all same-kind 2D slices."""
    if len(files) < 2:
        return None
    kinds = {_kind(p) for p in files}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    relative = folder.relative_to(root).as_posix()
    size = sum(p.stat().st_size for p in files)
    if kind == "DICOM":
        return Candidate(folder, relative, SERIES, "DICOM", files, size)
    if kind in SLICE_KINDS and sniff_format(files[0]) == kind and _same_plane(files[0], files[-1]):
        return Candidate(folder, relative, SLICES, "STACK", files, size)
    return None


def walk_drive(root: Path, exclude: set[Path] = frozenset()) -> ImportPlan:  # type: ignore[assignment]
    """Recognise datasets under `root` (a folder or one file); skip hidden/system files, list unknown ones."""
    root = root.resolve()
    plan = ImportPlan(root)
    if root.is_file():
        plan.root = root.parent
        _add_file(plan, root, root.name)
        return plan
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted((d for d in subfolders if not is_hidden(here / d) and not (here / d).is_symlink()),
                               key=natural_sort_key)
        files = sorted((here / n for n in names if not is_hidden(here / n) and (here / n) not in exclude
                        and not (here / n).is_symlink()), key=lambda p: natural_sort_key(p.name))
        volume = None if subfolders else _folder_candidate(root, here, files)
        if volume is not None:
            plan.candidates.append(volume)
            continue
        for path in files:
            _add_file(plan, path, path.relative_to(root).as_posix())
    return plan


def _add_file(plan: ImportPlan, path: Path, relative: str) -> None:
    image_format = sniff_format(path)
    if image_format is None:
        plan.unrecognised.append(relative)
    else:
        plan.candidates.append(Candidate(path, relative, FILE, image_format, [path], path.stat().st_size))


def read_sidecar(path: Path) -> dict[str, dict]:
    """Rows of the sidecar CSV by normalised `path` (relative to the drive)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "path" not in [f.strip().lower() for f in reader.fieldnames]:
            raise ValueError(f"{path}: the sidecar CSV needs a 'path' column (relative to the imported folder)")
        rows = {}
        for row in reader:
            clean = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
            rows[normalise_relative(clean.pop("path"))] = clean
    return rows


def normalise_relative(path: str) -> str:
    return re.sub(r"^(\./)+", "", path.replace("\\", "/").strip()).strip("/")


def _blocks(path: Path, progress: Progress | None):
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            yield block
            if progress:
                progress(len(block))


def candidate_sha256(candidate: Candidate, progress: Progress | None = None) -> str:
    """A file's SHA-256; for a folder, that of the deterministic zip of its files (what copy mode stores)."""
    if candidate.kind == FILE:
        digest = hashlib.sha256()
        for block in _blocks(candidate.source, progress):
            digest.update(block)
        return digest.hexdigest()
    return zip_sha256(folder_entries(candidate.source, candidate.files), progress)[0]


def plan_import(session: Session, project_id: int, root: Path, sidecar: Path | None = None,
                progress: Progress | None = None) -> ImportPlan:
    """Walk, attach sidecar rows, skip what earlier runs imported, hash the rest and mark duplicates."""
    exclude = {sidecar.resolve()} if sidecar else set()
    plan = walk_drive(Path(root), exclude)
    rows = read_sidecar(sidecar) if sidecar else {}
    for candidate in plan.candidates:
        candidate.row = rows.get(candidate.relative, {})
    plan.unmatched_rows = sorted(set(rows) - {c.relative for c in plan.candidates})
    records = {r.source_path: r for r in
               session.scalars(select(ImportRecord).where(ImportRecord.project_id == project_id))}
    known = {sha: dataset_id for sha, dataset_id in session.execute(
        select(Dataset.original_sha256, Dataset.id).where(Dataset.project_id == project_id))}
    first_by_sha: dict[str, str] = {}
    for candidate in plan.candidates:
        record = records.get(str(candidate.source))
        if record is not None and record.status in ("imported", "duplicate") and record.size == candidate.size:
            candidate.state, candidate.sha256 = "already imported", record.sha256
            if progress:
                progress(candidate.size)
            continue
        try:
            candidate.sha256 = candidate_sha256(candidate, progress)
        except OSError as exc:
            plan.warnings.append(f"{candidate.relative}: cannot be read ({exc}); it will be reported as failed")
            continue
        if candidate.sha256 in known:
            candidate.state, candidate.duplicate_of = "duplicate", f"dataset {known[candidate.sha256]}"
        elif candidate.sha256 in first_by_sha:
            candidate.state, candidate.duplicate_of = "duplicate", first_by_sha[candidate.sha256]
        else:
            first_by_sha[candidate.sha256] = candidate.relative
    return plan


@dataclass
class ImportReport:
    """What an import did, path by path."""

    imported: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    already: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)
    conversions: str = ""  # queued | waiting: <reason> | not requested

    def as_dict(self) -> dict:
        return asdict(self)


def typed_value(value: str) -> dict:
    """A sidecar cell as MetadataEntry fields: numbers as number, ISO dates as date, else text."""
    try:
        number = float(value)
        if math.isfinite(number):
            return {"value_type": "number", "value_number": number}
    except ValueError:
        pass
    try:
        return {"value_type": "date", "value_date": date.fromisoformat(value)}
    except ValueError:
        return {"value_type": "text"}


def _subject_and_visit(session: Session, project_id: int, row: dict, user, warnings: list[str]):
    """The row's Subject and Visit, created on first use (audited)."""
    subject = visit = None
    if row.get("subject"):
        subject = session.scalar(select(Subject).where(Subject.project_id == project_id,
                                                       Subject.code == row["subject"]))
        if subject is None:
            subject = Subject(project_id=project_id, code=row["subject"][:100], created_by_id=user.id)
            session.add(subject)
            session.flush()
            audit.record(session, "create", user=user, actor="import", target_type="subject", target_id=subject.id,
                         project_id=project_id, new={"code": subject.code})
    if row.get("visit") and subject is None:
        warnings.append(f"visit {row['visit']!r} given without a subject; ignored")
    elif row.get("visit"):
        visit = session.scalar(select(Visit).where(Visit.subject_id == subject.id, Visit.code == row["visit"]))
        if visit is None:
            try:
                visit_date = date.fromisoformat(row["visit_date"]) if row.get("visit_date") else None
            except ValueError:
                warnings.append(f"visit_date {row.get('visit_date')!r} is not a date (YYYY-MM-DD); ignored")
                visit_date = None
            visit = Visit(project_id=project_id, subject_id=subject.id, code=row["visit"][:100],
                          visit_date=visit_date, created_by_id=user.id)
            session.add(visit)
            session.flush()
            audit.record(session, "create", user=user, actor="import", target_type="visit", target_id=visit.id,
                         project_id=project_id, new={"code": visit.code, "subject": subject.code,
                                                     "visit_date": visit_date})
    return subject, visit


def _record(session: Session, project_id: int, candidate: Candidate, status: str, reason: str = "",
            dataset_id: str | None = None) -> None:
    record = session.scalar(select(ImportRecord).where(ImportRecord.project_id == project_id,
                                                       ImportRecord.source_path == str(candidate.source)))
    if record is None:
        record = ImportRecord(project_id=project_id, source_path=str(candidate.source))
        session.add(record)
    record.sha256, record.size, record.status = candidate.sha256, candidate.size, status
    record.reason, record.dataset_id = reason[:2000], dataset_id


def _publish_copy(storage, candidate: Candidate, progress: Progress | None) -> None:
    """Copy (never move) the source into originals/ while hashing; refuse it when it changed since the plan."""
    writer = storage.new_upload()
    try:
        if candidate.kind == FILE:
            for block in _blocks(candidate.source, progress):
                writer.write(block)
        else:
            write_zip(folder_entries(candidate.source, candidate.files), writer.write, progress)
        writer.close()
        if writer.hexdigest != candidate.sha256:
            raise OSError(f"the source changed while it was imported (SHA-256 {writer.hexdigest}, "
                          f"planned {candidate.sha256})")
        storage.publish_original(writer.path, writer.hexdigest)
    finally:
        writer.close()
        writer.path.unlink(missing_ok=True)


def _register(session: Session, project_id: int, candidate: Candidate, user, in_place: bool,
              warnings: list[str]) -> Dataset:
    """Dataset, subject/visit, metadata, tags, import record and audit events, in one transaction."""
    row = candidate.row
    subject, visit = _subject_and_visit(session, project_id, row, user, warnings)
    dataset = Dataset(project_id=project_id, name=(row.get("name") or candidate.source.name)[:300],
                      original_filename=(candidate.source.name + (".zip" if candidate.kind != FILE else ""))[:500], original_sha256=candidate.sha256,
                      original_size=candidate.size, created_by_id=user.id,
                      format="ZIP-STACK" if candidate.kind == SLICES and not in_place else candidate.format,
                      subject_id=subject.id if subject else None, visit_id=visit.id if visit else None,
                      modality=row.get("modality", "")[:60], description=row.get("description", ""),
                      storage_mode="in-place" if in_place else "copy",
                      original_location=str(candidate.source) if in_place else "")
    session.add(dataset)
    session.flush()
    extra = {k: v for k, v in row.items() if k not in SIDECAR_COLUMNS and v}
    for key, value in extra.items():
        session.add(MetadataEntry(project_id=project_id, target_type="dataset", target_id=dataset.id, key=key[:200],
                                  value_text=value, created_by_id=user.id, **typed_value(value)))
    tags = sorted({t.strip()[:100] for t in row.get("tags", "").split(";") if t.strip()})
    for name in tags:
        session.add(Tag(project_id=project_id, target_type="dataset", target_id=dataset.id, name=name,
                        created_by_id=user.id))
    _record(session, project_id, candidate, "imported", dataset_id=dataset.id)
    audit.record(session, "dataset.create", user=user, actor="import", target_type="dataset", target_id=dataset.id,
                 project_id=project_id, new={"name": dataset.name, "source": str(candidate.source),
                                             "original_sha256": candidate.sha256, "original_size": candidate.size,
                                             "format": candidate.format, "storage_mode": dataset.storage_mode,
                                             "metadata": extra, "tags": tags})
    session.commit()
    return dataset


def run_import(session: Session, settings, storage, plan: ImportPlan, project_id: int, user, *, in_place: bool = False,
               convert: bool = True, progress: Progress | None = None,
               after_dataset: Callable[[Dataset], None] | None = None) -> ImportReport:
    """Import the new candidates one dataset at a time (each committed whole), record duplicates, queue conversions."""
    report = ImportReport(unrecognised=list(plan.unrecognised))
    report.already = [{"path": c.relative} for c in plan.by_state("already imported")]
    for candidate in plan.candidates:
        if candidate.state == "already imported":
            continue
        existing = session.scalar(select(Dataset.id).where(Dataset.project_id == project_id,
                                                           Dataset.original_sha256 == candidate.sha256).limit(1))
        if candidate.sha256 and existing:
            _record(session, project_id, candidate, "duplicate", f"same SHA-256 as dataset {existing}", existing)
            session.commit()
            report.duplicates.append({"path": candidate.relative, "sha256": candidate.sha256, "dataset_id": existing})
            if progress:
                progress(candidate.size)
            continue
        warnings: list[str] = []
        try:
            if not candidate.sha256:
                raise OSError("it could not be read while planning")
            if in_place:
                if progress:
                    progress(candidate.size)
            else:
                _publish_copy(storage, candidate, progress)
            dataset = _register(session, project_id, candidate, user, in_place, warnings)
        except Exception as exc:  # noqa: BLE001 — one bad file must not stop a drive's import; it is reported
            session.rollback()
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
            _record(session, project_id, candidate, "failed", reason)
            session.commit()
            report.failed.append({"path": candidate.relative, "reason": reason})
            continue
        report.imported.append({"path": candidate.relative, "dataset_id": dataset.id, "name": dataset.name,
                                "sha256": candidate.sha256, "size": candidate.size, "warnings": warnings})
        if after_dataset:
            after_dataset(dataset)
    report.conversions = queue_conversions(session, settings, project_id, user) if convert else "not requested"
    return report


def queue_conversions(session: Session, settings, project_id: int, user) -> str:
    """Queue a conversion for every imported dataset still waiting for one (also those of earlier runs)."""
    waiting = list(session.scalars(
        select(Dataset).join(ImportRecord, ImportRecord.dataset_id == Dataset.id)
        .where(ImportRecord.project_id == project_id, ImportRecord.status == "imported",
               Dataset.status == DatasetStatus.UPLOADED.value,
               ~Dataset.jobs.any((Job.kind == "convert") & (Job.status != JobStatus.FAILED.value)))))
    if not waiting:
        return "queued 0"
    try:
        redis_connection(settings).ping()
        for dataset in waiting:
            enqueue(session, settings, "convert", dataset_id=dataset.id, user_id=user.id)
    except (QueueUnavailable, RedisError) as exc:  # datasets stay recorded; conversions wait for a re-run
        return f"waiting: {len(waiting)} conversions could not be queued ({exc}); re-run the import to queue them"
    return f"queued {len(waiting)}"
