"""`tilescope upload`: resumable (tus) uploads of files and folders to a portal, logged in with the login form."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import click

#: Where upload URLs are remembered (by file fingerprint), so an interrupted upload resumes.
DEFAULT_STATE_FILE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tilescope" / "uploads.json"
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
USER_AGENT = "tilescope-upload/1"


class UploadFailed(click.ClickException):
    pass


@dataclass
class UploadItem:
    """One file to send: its path, and for a folder its group id, group size and path inside the folder."""

    path: Path
    metadata: dict[str, str]

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def items_for(paths: list[Path], name: str = "") -> list[UploadItem]:
    """A file becomes one dataset; a folder (slices, a DICOM series) becomes one group, i.e. one volume dataset."""
    items: list[UploadItem] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not files:
                raise UploadFailed(f"{path} holds no files")
            listing = "\n".join(f"{p.relative_to(path)}:{p.stat().st_size}" for p in files)
            group = hashlib.sha256(f"{path.resolve()}\n{listing}".encode()).hexdigest()[:32]
            for file in files:
                relative = f"{path.resolve().name}/{file.relative_to(path).as_posix()}"
                items.append(UploadItem(file, {"filename": file.name, "relativePath": relative, "group": group,
                                               "groupSize": str(len(files)), "name": name or path.resolve().name}))
        else:
            items.append(UploadItem(path, {"filename": path.name, **({"name": name} if name else {})}))
    return items


def log_in(base_url: str, email: str, password: str, project_id: int):
    """A requests session logged in through the portal's login form, and the CSRF token for the project's uploads."""
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    login = session.get(f"{base_url}/login", timeout=30)
    response = session.post(f"{base_url}/login", data={"email": email, "password": password,
                                                        "csrf_token": _csrf_token(login.text)},
                            allow_redirects=False, timeout=30)
    if response.status_code != 302:
        raise UploadFailed(f"login as {email} at {base_url} failed (HTTP {response.status_code})")
    page = session.get(f"{base_url}/projects/{project_id}/upload", timeout=30, allow_redirects=False)
    if page.status_code != 200:
        raise UploadFailed(f"you cannot upload to project {project_id} (HTTP {page.status_code})")
    return session, _csrf_token(page.text)


def _csrf_token(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    if not match:
        raise UploadFailed("the portal's page carries no CSRF token; is --url a Tilescope portal?")
    return match.group(1)


class KeptOpen:
    """A file that a `with` block does not close: tuspy closes the stream it fingerprints, then reads it again."""

    def __init__(self, file):
        self.file = file

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *_exc) -> None:
        return None


class ScopedFingerprint:
    """tuspy's content fingerprint, scoped to the target endpoint and the file's place in its group."""

    def __init__(self, scope: str):
        from tusclient.fingerprint.fingerprint import Fingerprint

        self.scope, self.inner = scope, Fingerprint()

    def get_fingerprint(self, stream) -> str:
        return f"{self.scope}--{self.inner.get_fingerprint(stream)}"


def upload_items(session, csrf: str, base_url: str, project_id: int, items: list[UploadItem], *,
                 state_file: Path = DEFAULT_STATE_FILE, chunk_size: int = DEFAULT_CHUNK_BYTES,
                 stop_after_chunks: int | None = None, progress: bool = True) -> list[dict]:
    """Send every item with tuspy, resuming where a stored URL exists; returns the uploads' JSON once done."""
    from tqdm import tqdm
    from tusclient import client as tus_client
    from tusclient.storage.filestorage import FileStorage

    endpoint = f"{base_url}/api/v1/projects/{project_id}/uploads"
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in session.cookies)
    client = tus_client.TusClient(endpoint, headers={"Cookie": cookies, "X-CSRFToken": csrf,
                                                     "User-Agent": USER_AGENT})
    state_file.parent.mkdir(parents=True, exist_ok=True)
    url_storage = FileStorage(str(state_file))
    urls, chunks = [], 0
    try:
        with tqdm(total=sum(item.size for item in items), unit="B", unit_scale=True, unit_divisor=1024,
                  disable=not progress, desc="upload") as bar:
            for item in items:
                with open(item.path, "rb") as stream:
                    uploader = _uploader(client, url_storage, endpoint, item, stream, chunk_size)
                    bar.set_postfix_str(item.path.name)
                    bar.update(uploader.offset)
                    if not uploader.url:
                        uploader.set_url(uploader.create_url())
                    while uploader.offset < item.size:
                        if stop_after_chunks is not None and chunks >= stop_after_chunks:
                            return []
                        before = uploader.offset
                        uploader.upload_chunk()
                        chunks += 1
                        bar.update(uploader.offset - before)
                    urls.append((uploader.url, uploader._get_fingerprint()))
    finally:
        url_storage._db.close()
    outcomes = []
    for url, fingerprint in urls:
        response = session.get(url, timeout=60)
        if response.status_code != 200:
            raise UploadFailed(f"{url}: HTTP {response.status_code} {response.text[:300]}")
        outcomes.append(response.json())
    if all(outcome.get("dataset_id") for outcome in outcomes):
        forget = FileStorage(str(state_file))
        for _url, fingerprint in urls:
            forget.remove_item(fingerprint)
        forget._db.close()
    return outcomes


def _uploader(client, url_storage, endpoint: str, item: UploadItem, stream, chunk_size: int):
    """A tuspy uploader that resumes from a stored URL when there is one, or starts afresh when it is gone."""
    from tusclient.exceptions import TusCommunicationError

    fingerprinter = ScopedFingerprint(f"{endpoint}|{item.metadata.get('group', '')}|"
                                      f"{item.metadata.get('relativePath', '')}")
    options = {"file_stream": KeptOpen(stream), "chunk_size": chunk_size, "metadata": item.metadata,
               "store_url": True, "url_storage": url_storage, "fingerprinter": fingerprinter, "upload_checksum": True,
               "retries": 3, "retry_delay": 2}
    try:
        return client.uploader(**options)
    except TusCommunicationError:  # the stored upload expired or was terminated: start again
        url_storage.remove_item(fingerprinter.get_fingerprint(stream))
        return client.uploader(**options)


@click.command("upload")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--project", "project_id", type=int, required=True, help="Project id to upload into.")
@click.option("--url", "base_url", required=True, envvar="TILESCOPE_URL", help="The portal, e.g. https://tiles.lab.org")
@click.option("--email", required=True, help="Your login.")
@click.option("--password", default=None, envvar="TILESCOPE_PASSWORD", help="Prompted for when omitted.")
@click.option("--name", default="", help="Dataset name (default: the file or folder name).")
@click.option("--chunk-mb", default=8, show_default=True, help="Bytes sent per request, in MiB.")
@click.option("--state-file", type=click.Path(path_type=Path), default=DEFAULT_STATE_FILE, show_default=True,
              help="Where upload URLs are kept so that an interrupted upload resumes.")
def upload_command(paths: tuple[Path, ...], project_id: int, base_url: str, email: str, password: str | None,
                   name: str, chunk_mb: int, state_file: Path) -> None:
    """Upload files (one dataset each) and folders (one volume each) to a project, resumably."""
    from tusclient.exceptions import TusCommunicationError

    password = password or click.prompt("Password", hide_input=True)
    base_url = base_url.rstrip("/")
    session, csrf = log_in(base_url, email, password, project_id)
    try:
        outcomes = upload_items(session, csrf, base_url, project_id, items_for(list(paths), name),
                                state_file=state_file, chunk_size=chunk_mb * 1024 * 1024)
    except TusCommunicationError as exc:
        detail = (exc.response_content or b"").decode(errors="replace")[:300]
        raise UploadFailed(f"upload failed (HTTP {exc.status_code}): {detail or exc}") from None
    seen, failed = set(), []
    for outcome in outcomes:
        if outcome.get("error"):
            failed.append(f"{outcome['filename']}: {outcome['error']}")
        if outcome.get("dataset_id") and outcome["dataset_id"] not in seen:
            seen.add(outcome["dataset_id"])
            click.echo(f"dataset {outcome['dataset_id']}: {base_url}{outcome.get('dataset_url', '')}")
    if failed:
        raise UploadFailed("\n".join(failed))
