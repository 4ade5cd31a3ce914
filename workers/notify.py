"""Mail jobs: tell the uploader that their dataset is ready to view, or why its conversion failed."""

from __future__ import annotations

import logging

from portal.db import session_scope
from portal.mail import send_mail
from portal.models import DatasetStatus, Job
from portal.settings import Settings

log = logging.getLogger(__name__)


def conversion_message(settings: Settings, job: Job) -> tuple[str, str] | None:
    dataset = job.dataset
    link = f"{settings.base_url.rstrip('/')}/datasets/{dataset.id}"
    if dataset.status == DatasetStatus.READY.value:
        return (f"Ready to view: {dataset.name}",
                f"Your image {dataset.name} ({dataset.width} × {dataset.height} px) in project "
                f"{dataset.project.name} is converted and ready to view:\n\n  {link}\n")
    if dataset.status == DatasetStatus.FAILED.value:
        return (f"Conversion failed: {dataset.name}",
                f"Your image {dataset.name} in project {dataset.project.name} could not be converted.\n\n"
                f"Reason: {dataset.status_reason}\n\nThe original file is kept unchanged:\n\n  {link}\n")
    return None


def mail_conversion_result(job_id: str, settings: Settings | None = None) -> str | None:
    """Mail the person who queued conversion `job_id` about its outcome; returns where the mail went."""
    settings = settings or Settings.from_env()
    with session_scope(settings.sqlalchemy_url) as session:
        job = session.get(Job, job_id)
        if job is None or job.user is None or job.dataset is None:
            return None
        message = conversion_message(settings, job)
        recipient = job.user.email
    if message is None or "@" not in recipient:
        return None
    where = send_mail(settings, [recipient], *message)
    log.info("mailed %s about job %s via %s", recipient, job_id, where)
    return where
