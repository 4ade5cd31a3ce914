"""What a worker tidies every hour: abandoned uploads, scratch no job can still use, the local cache over its budget."""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from portal.db import session_scope
from portal.models import Job, JobStatus
from portal.settings import Settings
from portal.storage import Storage, trim_cache
from portal.tus import expire_uploads

log = logging.getLogger(__name__)

#: Seconds between two tidy-ups of one worker (and one at its start).
HOUSEKEEPING_SECONDS = 3600
#: A job's scratch folder is named after the job; the job's own `finally` removes it unless its process was killed.
JOB_SCRATCH = re.compile(r"(?:convert|analysis)-(?P<job>[0-9a-f-]{36})")
#: Other scratch (an upload being assembled or checked) lives for one request; older than this it is left over.
OTHER_SCRATCH_SECONDS = 24 * 3600


def tidy(settings: Settings, storage: Storage | None = None, *, now: float | None = None) -> dict[str, int]:
    """One round of housekeeping; each part runs even if another fails (logged). How much each part removed."""
    storage = storage or Storage(settings)
    done = {}
    for name, part in (("uploads", _expire_uploads), ("scratch", _remove_stale_scratch),
                       ("cache", lambda _settings, store, _now: trim_cache(store, store.cache_bytes))):
        try:
            done[name] = part(settings, storage, now or time.time())
        except Exception:  # another worker tidying at the same moment, a database hiccup: the next round retries
            log.warning("housekeeping: %s failed", name, exc_info=True)
            done[name] = 0
    if any(done.values()):
        log.info("housekeeping: %s", ", ".join(f"{n} {c}" for n, c in done.items()))
    return done


def _expire_uploads(settings: Settings, storage: Storage, _now: float) -> int:
    with session_scope(settings.sqlalchemy_url) as session:
        return expire_uploads(session, storage)


def _remove_stale_scratch(settings: Settings, storage: Storage, now: float) -> int:
    """Scratch of jobs that ended (or never existed), and other scratch older than OTHER_SCRATCH_SECONDS."""
    entries = list(storage.area("scratch").iterdir())
    job_ids = {m["job"] for e in entries if (m := JOB_SCRATCH.fullmatch(e.name))}
    with session_scope(settings.sqlalchemy_url) as session:
        unfinished = set(session.scalars(select(Job.id).where(Job.id.in_(job_ids), Job.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)))))
    removed = 0
    for entry in entries:
        match = JOB_SCRATCH.fullmatch(entry.name)
        if match and match["job"] in unfinished:
            continue
        if not match and now - _modified(entry) < OTHER_SCRATCH_SECONDS:
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        removed += 1
    return removed


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
