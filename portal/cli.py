"""The `tilescope` command: database, users, the whole portal (`up`), a worker, conversion, reproduce, audit."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

from portal.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tilescope: huge scientific images as OME-Zarr pyramids, viewed and analysed in the browser."""


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from portal.migrations import upgrade

    settings = Settings.from_env()
    upgrade(settings.sqlalchemy_url, revision)
    click.echo(f"database at revision {revision}: {_redact(settings.sqlalchemy_url)}")


@main.command("create-user")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the user every right in every project.")
@click.option("--name", default="", help="Display name.")
@click.option("--password", default=None, help="Password (prompted for when omitted).")
def create_user_command(email: str, admin: bool, name: str, password: str | None) -> None:
    """Create a user who logs in with EMAIL."""
    from portal.accounts import AccountError, create_user
    from portal.db import session_scope

    password = password or click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with session_scope(Settings.from_env().sqlalchemy_url) as session:
            create_user(session, email, password, name=name, is_admin=admin)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {'admin ' if admin else ''}user {email.strip().lower()}")


@main.command("set-password")
@click.argument("email")
@click.option("--password", default=None, help="New password (prompted for when omitted).")
def set_password(email: str, password: str | None) -> None:
    """Set a new password for EMAIL and log out every browser logged in as EMAIL."""
    from sqlalchemy import select

    from portal.accounts import MIN_PASSWORD_LENGTH
    from portal.accounts import set_password as change_password
    from portal.db import session_scope
    from portal.models import User

    password = password or click.prompt("New password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    with session_scope(Settings.from_env().sqlalchemy_url) as session:
        user = session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise click.ClickException(f"no user {email}")
        ended = change_password(session, user, password)
    click.echo(f"password of {email} changed; {ended} login session(s) ended")


@main.command()
def up() -> None:
    """Run everything on this machine: migrations, first admin, embedded Redis, web server and a worker."""
    from portal.accounts import ensure_first_admin
    from portal.db import session_scope
    from portal.migrations import upgrade
    from portal.supervisor import run_everything, wait_for_http

    settings = Settings.from_env()
    upgrade(settings.sqlalchemy_url)
    with session_scope(settings.sqlalchemy_url) as session:
        password = ensure_first_admin(session, settings.admin_email)
    settings.signing_key()  # generate the session key before several web workers race for it
    url = f"http://{settings.host}:{settings.port}"
    if password:
        login = f"  login: {settings.admin_email}\n  password: {password}   (shown once; change it under your name at /account)"
    else:
        login = f"  log in with your account (first admin: {settings.admin_email}; reset: `tilescope set-password EMAIL`)"
    storage = f"  storage: {settings.storage_url}\n" if settings.storage_url else ""
    banner = f"\n{'=' * 72}\n  Tilescope is running at {url}\n{login}\n  data folder: {settings.data_path}\n{storage}  Ctrl-C stops web, worker and redis.\n{'=' * 72}\n"

    def announce() -> None:
        if wait_for_http(f"{url}/healthz", timeout=60):
            click.echo(banner)

    threading.Thread(target=announce, daemon=True).start()
    sys.exit(run_everything(settings))


@main.command()
@click.option("--queue", "queues", multiple=True, help="Queue to work on (repeatable); default: all.")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker(queues: tuple[str, ...], burst: bool) -> None:
    """Run one RQ worker (on any host that reaches the database, Redis and storage)."""
    from portal.jobs import ALL_QUEUES
    from workers.worker import run_worker

    run_worker(Settings.from_env(), queues or ALL_QUEUES, burst=burst)


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--tile-size", default=256, show_default=True, help="Chunk and tile edge in pixels.")
def convert(source: Path, dest: Path, tile_size: int) -> None:
    """Convert SOURCE into the OME-Zarr pyramid DEST, like `vips`.

    SOURCE: a 2D image (TIFF/BigTIFF/OME-TIFF, PNG, JPEG) or a volume (multi-page TIFF, DICOM file,
    folder or zip, a folder or zip of slices, an OME-Zarr)."""
    from tqdm import tqdm

    from tiler.convert import build_pyramid
    from tiler.errors import TilerError
    from tiler.readers import open_image

    settings = Settings.from_env()
    with tqdm(total=1000, unit="‰", desc=source.name, bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:
        def progress(fraction: float, message: str = "") -> None:
            bar.update(int(fraction * 1000) - bar.n)

        try:
            with open_image(source, max_pixels=settings.max_image_pixels) as image:
                summary = build_pyramid(image, dest, tile_size=tile_size, progress=progress, name=source.stem,
                                        memory_budget=settings.volume_memory_budget)
        except (TilerError, FileExistsError) as exc:
            raise click.ClickException(str(exc)) from None
    c, *zyx = summary.shape
    size = " × ".join(str(n) for n in reversed(zyx))
    click.echo(f"{dest}: {size}, {c} channel(s), {summary.dtype}, {len(summary.levels)} levels, "
               f"{summary.nbytes / 1e6:.1f} MB")


@main.command()
@click.argument("result_id")
def reproduce(result_id: str) -> None:
    """Re-run the analysis of RESULT_ID here, now, with the same inputs and parameters; exit 1 if outputs differ."""
    from portal.db import session_scope
    from portal.models import Job, Result
    from workers.analyze import analyze_dataset

    settings = Settings.from_env()
    with session_scope(settings.sqlalchemy_url) as session:
        original = session.get(Result, result_id)
        if original is None:
            raise click.ClickException(f"no result {result_id}")
        job = Job(kind="segment", queue="analysis", dataset_id=original.dataset_id, user_id=None, message="queued",
                  params={"analysis": original.params, "reproduces": original.id, "notify": False,
                          "recipients": []})
        session.add(job)
        session.flush()
        job_id = job.id
    click.echo(f"re-running {original.method} on dataset {original.dataset_id} as job {job_id} …")
    status = analyze_dataset(job_id, settings)
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        if status != "finished" or job.result is None:
            raise click.ClickException(f"the rerun failed: {job.error}")
        comparison = job.result.reproduction
        for name, row in comparison["outputs"].items():
            mark = "match" if row["match"] else "DIFFER"
            click.echo(f"  {name:20} {mark:6} {row['original'][:16] if row['original'] else '-'} "
                       f"→ {row['reproduced'][:16] if row['reproduced'] else '-'}")
        click.echo(f"new result {job.result.id}: outputs {'match' if comparison['matches'] else 'DIFFER'}")
    sys.exit(0 if comparison["matches"] else 1)


@main.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
def audit_verify() -> None:
    """Walk the hash chain of audit events; exit 1 if any was edited or removed in the database."""
    from portal.audit import verify_chain
    from portal.db import session_scope
    from portal.models import AuditEvent

    with session_scope(Settings.from_env().sqlalchemy_url) as session:
        problems = verify_chain(session)
        count = session.query(AuditEvent).count()
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) in {count} audit events")
    click.echo(f"audit trail intact: {count} events, every hash checks")


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's settings table.")
def show_settings(markdown: bool) -> None:
    """List every TILESCOPE_* setting with its default and help."""
    if markdown:
        click.echo("| variable | default | meaning |\n|---|---|---|")
    for name, default, help_text in Settings.documentation():
        if markdown:
            click.echo(f"| `{name}` | {f'`{default}`' if default else '_(empty)_'} | {help_text} |")
        else:
            click.echo(f"{name}\n    default: {default or '(empty)'}\n    {help_text}")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url


from portal.cli_import import export_command, import_command  # noqa: E402  (legacy import and export, own module)

main.add_command(import_command)
main.add_command(export_command)
from portal.cli_upload import upload_command  # noqa: E402  (resumable tus uploads, own module)
main.add_command(upload_command)
from portal.search_index import search_cli  # noqa: E402  (search index: `tilescope search reindex`, own module)
main.add_command(search_cli)
from portal.cli_storage import storage_cli  # noqa: E402  (`tilescope storage check|copy`, own module)
main.add_command(storage_cli)

if __name__ == "__main__":
    main()
