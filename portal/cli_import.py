"""The `tilescope import` (legacy drives) and `tilescope export` (originals + manifest) commands."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from portal.settings import Settings

if TYPE_CHECKING:
    from portal.legacy_import import ImportPlan, ImportReport


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def describe_plan(plan: ImportPlan) -> str:
    """The dry-run report: what would become which dataset, duplicates, unrecognised files."""
    from portal.legacy_import import FILE, SERIES, SLICES

    lines = [f"Import plan for {plan.root}"]
    for candidate in plan.candidates:
        row = candidate.row
        where = " / ".join(x for x in (row.get("subject", ""), row.get("visit", "")) if x) or "-"
        what = {FILE: candidate.format, SLICES: f"{len(candidate.files)} slices", SERIES:
                f"DICOM series of {len(candidate.files)} files"}[candidate.kind]
        note = {"new": "new dataset", "already imported": "already imported",
                "duplicate": f"duplicate of {candidate.duplicate_of}"}[candidate.state]
        name = row.get("name") or candidate.source.name
        lines.append(f"  [{note}] {candidate.relative} -> {name!r} ({what}, {format_size(candidate.size)}, "
                     f"subject/visit: {where})")
    for relative in plan.unrecognised:
        lines.append(f"  [unrecognised] {relative}")
    for relative in plan.unmatched_rows:
        lines.append(f"  [sidecar row matches nothing] {relative}")
    lines.extend(f"  [warning] {w}" for w in plan.warnings)
    lines.append(f"Summary: {len(plan.by_state('new'))} new datasets ({format_size(plan.new_bytes)}), "
                 f"{len(plan.by_state('duplicate'))} duplicates, {len(plan.by_state('already imported'))} already "
                 f"imported, {len(plan.unrecognised)} unrecognised files")
    return "\n".join(lines)


def _find_project(session, project: str):
    from sqlalchemy import select

    from portal.models import Project

    found = session.get(Project, int(project)) if project.isdigit() else None
    found = found or session.scalar(select(Project).where(Project.name == project))
    if found is None:
        raise click.ClickException(f"no project {project!r} (give its id or exact name)")
    return found


def _find_user(session, settings: Settings, email: str | None):
    """The --user, else the first admin (settings.admin_email, else any admin)."""
    from sqlalchemy import select

    from portal.models import User

    if email:
        user = session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise click.ClickException(f"no user {email}")
        return user
    user = session.scalar(select(User).where(User.email == settings.admin_email)) or session.scalar(
        select(User).where(User.is_admin.is_(True)).order_by(User.id))
    if user is None:
        raise click.ClickException("no admin user exists: create one with `tilescope create-user --admin`, or pass --user")
    return user


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=True)


def write_report(settings: Settings, report: ImportReport, root: Path, project_id: int) -> Path:
    """The report as imports/import-<time>.json plus a .csv beside it (one line per path and outcome)."""
    folder = settings.storage_dir("imports")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"import-{stamp}.json"
    path.write_text(json.dumps({"source": str(root), "project_id": project_id} | report.as_dict(), indent=2,
                               default=str), encoding="utf-8")
    with open(path.with_suffix(".csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "outcome", "dataset_id", "sha256", "reason"])
        for item in report.imported:
            writer.writerow([item["path"], "imported", item["dataset_id"], item["sha256"], ""])
        for item in report.duplicates:
            writer.writerow([item["path"], "duplicate", item["dataset_id"], item["sha256"], "same SHA-256"])
        for item in report.already:
            writer.writerow([item["path"], "already imported", "", "", ""])
        for item in report.failed:
            writer.writerow([item["path"], "failed", "", "", item["reason"]])
        for relative in report.unrecognised:
            writer.writerow([relative, "unrecognised", "", "", "not a supported image"])
    return path


def describe_report(report: ImportReport, report_path: Path) -> str:
    lines = [(f"Imported {len(report.imported)} datasets; {len(report.duplicates)} duplicates skipped; "
              f"{len(report.already)} already imported; {len(report.failed)} failed; "
              f"{len(report.unrecognised)} unrecognised files.")]
    lines += [f"  failed: {item['path']}: {item['reason']}" for item in report.failed]
    lines += [f"  warning: {item['path']}: {w}" for item in report.imported for w in item["warnings"]]
    lines.append(f"Conversions: {report.conversions}")
    lines.append(f"Report: {report_path} (and .csv)")
    return "\n".join(lines)


@click.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--project", "project_ref", required=True, help="Project id or exact name to import into.")
@click.option("--sidecar", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with path, subject, visit, visit_date, modality, name, description, tags and metadata columns.")
@click.option("--dry-run", is_flag=True, help="Only show what would be imported.")
@click.option("--in-place", is_flag=True, help="Reference the files where they are instead of copying them.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-convert", is_flag=True, help="Record the datasets but queue no conversions.")
@click.option("--user", "user_email", default=None, help="Who imports (default: the first admin).")
def import_command(path: Path, project_ref: str, sidecar: Path | None, dry_run: bool, in_place: bool, yes: bool,
                   no_convert: bool, user_email: str | None) -> None:
    """Import a legacy drive or folder at PATH: images, slice folders and DICOM series become datasets."""
    from portal.db import session_scope
    from portal.legacy_import import plan_import, run_import, walk_drive
    from portal.storage import Storage

    settings = Settings.from_env()
    with session_scope(settings.sqlalchemy_url) as session:
        project = _find_project(session, project_ref)
        user = _find_user(session, settings, user_email)
        try:
            total = sum(c.size for c in walk_drive(path).candidates)
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc}") from None
        with _bar(total, "checking") as bar:
            try:
                plan = plan_import(session, project.id, path, sidecar, bar.update)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
        click.echo(describe_plan(plan))
        if dry_run:
            return
        if plan.by_state("new") and not yes and not click.confirm(f"Import {len(plan.by_state('new'))} datasets "
                                         f"({'in place' if in_place else 'copying'} {format_size(plan.new_bytes)})?"):
            raise click.Abort()
        with _bar(sum(c.size for c in plan.candidates if c.state != "already imported"), "importing") as bar:
            report = run_import(session, settings, Storage(settings), plan, project.id, user, in_place=in_place,
                                convert=not no_convert, progress=bar.update)
        report_path = write_report(settings, report, plan.root, project.id)
        click.echo(describe_report(report, report_path))
        if report.failed:
            raise SystemExit(1)


@click.command("export")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--project", "project_ref", required=True, help="Project id or exact name.")
def export_command(dest: Path, project_ref: str) -> None:
    """Write every original of a project and manifest.csv/.json (with SHA-256 checksums) to the folder DEST."""
    from portal.db import session_scope
    from portal.export import export_project, total_original_bytes
    from portal.storage import Storage

    settings = Settings.from_env()
    with session_scope(settings.sqlalchemy_url) as session:
        project = _find_project(session, project_ref)
        with _bar(total_original_bytes(session, project), "exporting") as bar:
            outcome = export_project(session, Storage(settings), project, dest, bar.update)
    click.echo(f"exported {outcome['written']} of {outcome['datasets']} originals and manifest.csv/.json to {dest}")
    for problem in outcome["problems"]:
        click.echo(f"  problem: {problem}", err=True)
    if outcome["problems"]:
        raise SystemExit(1)
