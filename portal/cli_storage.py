"""`tilescope storage`: check that every file the database refers to is in storage; copy storage to another URL."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click
from sqlalchemy import select

from portal.db import session_scope
from portal.settings import Settings
from portal.storage import Storage, s3_options
from tiler.storage import Location, Store, open_store

#: The areas of the store that hold durable data (uploads in progress and scratch stay in the data folder).
DURABLE_AREAS = ("originals", "pyramids", "results")


@click.group("storage")
def storage_cli() -> None:
    """Where originals, pyramids and results live (TILESCOPE_STORAGE_URL)."""


def referenced_files(session, storage: Storage) -> list[tuple[str, str, Location | Path]]:
    """(what, name, file) for every original, pyramid, result and attachment the database refers to; a pyramid is
    checked by its zarr.json, a result by its provenance.json (the last file written)."""
    from portal.models import Attachment, Dataset, DatasetStatus, Result

    found: list[tuple[str, str, Location | Path]] = []
    for dataset in session.scalars(select(Dataset).order_by(Dataset.created_at)):
        label = f"dataset {dataset.id} ({dataset.name})"
        if dataset.storage_mode == "in-place":
            found.append(("original (in place)", label, Path(dataset.original_location)))
        elif dataset.original_sha256:
            found.append(("original", label, storage.original(dataset.original_sha256)))
        if dataset.status == DatasetStatus.READY.value and dataset.pyramid_path:
            found.append(("pyramid", label, storage.locate(dataset.pyramid_path) / "zarr.json"))
    for result in session.scalars(select(Result).order_by(Result.created_at)):
        found.append(("result", f"result {result.id}", storage.locate(result.path) / "provenance.json"))
    for attachment in session.scalars(select(Attachment).order_by(Attachment.id)):
        found.append(("attachment", f"attachment {attachment.id} ({attachment.filename})",
                      storage.original(attachment.sha256)))
    return found


def _present(where: Location | Path) -> bool:
    return where.exists() if isinstance(where, Path) else where.is_file()


@storage_cli.command("check")
def check_command() -> None:
    """Report every original, pyramid, result and attachment the database names that storage lacks (exit 1 if any)."""
    from tqdm import tqdm

    settings = Settings.from_env()
    storage = Storage(settings)
    click.echo(f"storage: {storage.store.url}")
    with session_scope(settings.sqlalchemy_url) as session:
        files = referenced_files(session, storage)
    missing = []
    for what, label, where in tqdm(files, desc="checking", unit="file", file=sys.stderr):
        if not _present(where):
            missing.append(f"{what} of {label}: missing at {where}")
    for line in missing:
        click.echo(line)
    click.echo(f"{len(files) - len(missing)} of {len(files)} present")
    if missing:
        raise SystemExit(1)


def copy_store(source: Store, dest: Store, progress=None) -> dict:
    """Copy every file of the durable areas from `source` to `dest`; a file already there with the same size is kept."""
    counts = {"copied": 0, "kept": 0, "bytes": 0}
    with tempfile.TemporaryDirectory(prefix="tilescope-copy-") as scratch:
        for area in DURABLE_AREAS:
            for name, size in source.location(area).files():
                key = f"{area}/{name}"
                target = dest.location(key)
                if target.is_file() and target.size() == size:
                    counts["kept"] += 1
                else:
                    origin = source.location(key)
                    local = origin.local_path or origin.copy_to(Path(scratch) / "file")
                    target.put_file(local)
                    counts["copied"] += 1
                    counts["bytes"] += size
                if progress:
                    progress(size)
    return counts


@storage_cli.command("copy")
@click.argument("dest_url")
def copy_command(dest_url: str) -> None:
    """Copy originals, pyramids and results to DEST_URL (a folder or s3://bucket/prefix; the TILESCOPE_S3_* settings
    apply to it). Resumable: files already there are kept. Then set TILESCOPE_STORAGE_URL=DEST_URL everywhere."""
    from tqdm import tqdm

    settings = Settings.from_env()
    source = Storage(settings).store
    dest = open_store(dest_url, s3_options(settings))
    if dest.url == source.url:
        raise click.ClickException("the destination is the current storage")
    total = sum(size for area in DURABLE_AREAS for _, size in source.location(area).files())
    click.echo(f"copying {total / 2**30:.2f} GiB from {source.url} to {dest.url}")
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="copying", file=sys.stderr) as bar:
        counts = copy_store(source, dest, bar.update)
    click.echo(f"{counts['copied']} files copied ({counts['bytes'] / 2**20:.1f} MiB), {counts['kept']} already there")
    click.echo(f"now set TILESCOPE_STORAGE_URL={dest_url} for every web and worker process, "
               "then run `tilescope storage check`")
