"""Mail jobs: tell the requester (and the job's extra recipients) how a job ended, exactly once per job."""

from __future__ import annotations

import logging

from sqlalchemy import update

from portal.db import session_scope
from portal.jobs import queue_notification  # noqa: F401  (job functions queue their mail through this module)
from portal.mail import send_mail
from portal.models import DatasetStatus, Job, JobStatus, utcnow
from portal.settings import Settings

log = logging.getLogger(__name__)

#: Outcomes worth a mail; a cancelled job mails nothing (whoever cancelled it knows).
MAILED_STATES = (JobStatus.FINISHED.value, JobStatus.FAILED.value)


def job_link(settings: Settings, job: Job) -> str:
    return f"{settings.base_url.rstrip('/')}/jobs/{job.id}"


def conversion_message(settings: Settings, job: Job) -> tuple[str, str] | None:
    dataset = job.dataset
    if dataset is None:
        return None
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


def generic_message(settings: Settings, job: Job) -> tuple[str, str]:
    """For kinds without a message of their own: what ran, how it ended, and where to look."""
    about = f" on {job.dataset.name}" if job.dataset is not None else ""
    where = f" in project {job.dataset.project.name}" if job.dataset is not None else ""
    if job.status == JobStatus.FINISHED.value:
        return (f"Job finished: {job.kind}{about}",
                f"Your {job.kind} job{about}{where} has finished.\n\n  {job_link(settings, job)}\n")
    return (f"Job failed: {job.kind}{about}",
            f"Your {job.kind} job{about}{where} failed.\n\nReason: {job.error}\n\n  {job_link(settings, job)}\n")


def segment_message(settings: Settings, session, job: Job) -> tuple[str, str] | None:
    try:
        from workers.analysis_mail import analysis_message
    except ModuleNotFoundError as exc:
        if exc.name != "workers.analysis_mail":
            raise
        return generic_message(settings, job)
    return analysis_message(settings, session, job)


def outcome_message(settings: Settings, session, job: Job) -> tuple[str, str] | None:
    """(subject, body) about how the job ended, by kind; None when there is nothing to say."""
    if job.kind == "convert":
        return conversion_message(settings, job)
    if job.kind == "segment":
        return segment_message(settings, session, job)
    return generic_message(settings, job)


def recipients(job: Job) -> list[str]:
    """The requester, then the job's extra recipients (params["recipients"]), each once."""
    addresses = [job.user.email] if job.user is not None else []
    addresses += [str(a).strip() for a in (job.params or {}).get("recipients", []) or []]
    unique = []
    for address in addresses:
        if "@" in address and address.lower() not in (u.lower() for u in unique):
            unique.append(address)
    return unique


def mail_job_outcome(job_id: str, settings: Settings | None = None) -> str | None:
    """Mail how job `job_id` ended, once: the first run claims `notified_at`; a repeated or retried mail job,
    or a job attempt that ends again, finds it set and sends nothing. Returns where the mail went."""
    settings = settings or Settings.from_env()
    url = settings.sqlalchemy_url
    with session_scope(url) as session:
        claimed = session.execute(
            update(Job).where(Job.id == job_id, Job.notified_at.is_(None), Job.status.in_(MAILED_STATES))
            .values(notified_at=utcnow()).execution_options(synchronize_session=False)).rowcount
    if not claimed:
        log.info("job %s: not final, cancelled or already mailed; no mail", job_id)
        return None
    try:
        with session_scope(url) as session:  # rolled back, with e.g. a share link the message made, if sending fails
            job = session.get(Job, job_id)
            if (job.params or {}).get("notify", True) is False:
                return None
            to, message = recipients(job), outcome_message(settings, session, job)
            if not to or message is None:
                return None
            where = send_mail(settings, to, *message)
    except BaseException:
        with session_scope(url) as session:  # not sent: let a later run of this mail job try again
            session.execute(update(Job).where(Job.id == job_id).values(notified_at=None)
                            .execution_options(synchronize_session=False))
        raise
    log.info("mailed %s about job %s via %s", ", ".join(to), job_id, where)
    return where


mail_conversion_result = mail_job_outcome  # the name queued before job kinds other than convert existed
