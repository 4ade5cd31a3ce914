"""The mail about a finished or failed analysis: headline numbers and a share link that opens the result without an account."""

from __future__ import annotations

from sqlalchemy.orm import Session

from portal.models import Job, JobStatus
from portal.settings import Settings
from portal.shares import create_share_link


def _headline(summary: dict, unit: str) -> list[str]:
    lines = [f"  objects: {summary.get('object_count', 0):,}"]
    if summary.get("foreground_fraction") is not None:
        lines.append(f"  foreground fraction: {100 * summary['foreground_fraction']:.2f} %")
    if summary.get("mean_equivalent_diameter") is not None:
        lines.append(f"  mean equivalent diameter: {summary['mean_equivalent_diameter']:.3g} {unit or 'px'}")
    return lines


def analysis_message(settings: Settings, session: Session, job: Job) -> tuple[str, str] | None:
    """(subject, body) for the outcome of segment job `job`; a finished one gets a new share link (audited)."""
    dataset = job.dataset
    name = dataset.name if dataset is not None else "a deleted dataset"
    method = job.params.get("analysis", {}).get("method", "analysis")
    base = settings.base_url.rstrip("/")
    if job.status == JobStatus.FINISHED.value and job.result is not None:
        recipients = [job.user.email] if job.user else []
        recipients += job.params.get("recipients", [])
        link, url = create_share_link(session, settings, job.result, None,
                                      label=f"mailed to {', '.join(recipients)}"[:200])
        return (f"Results ready: {method} on {name}",
                f"The {method} analysis of {name} (project {dataset.project.name}) has finished.\n\n"
                + "\n".join(_headline(job.result.summary, dataset.unit)) + "\n\n"
                f"Open the result (no account needed, works on a phone) until {link.expires_at:%Y-%m-%d}:\n\n  {url}\n\n"
                f"Members of the project can also find it at {base}/results/{job.result.id}\n")
    if job.status == JobStatus.FAILED.value:
        return (f"Analysis failed: {method} on {name}",
                f"The {method} analysis of {name} could not be completed.\n\nReason: {job.error}\n\n"
                f"Details and a retry button: {base}/jobs/{job.id}\n")
    return None
