"""SQLAlchemy 2.x models: users, login sessions, projects, subjects, visits, datasets, jobs, results, measures, shares, audit."""

from portal.models.base import (FINAL_JOB_STATES, Base, DatasetStatus, JobStatus, Role, UTCDateTime, new_uuid,
                                utcnow)
from portal.models.core import Dataset, Job, Membership, Project, User
from portal.models.research import (ANNOTATABLE_TYPES, Attachment, ImportRecord, MetadataEntry, Note, Subject, Tag,
                                    Upload, Visit)
from portal.models.results import AuditEvent, DerivedMeasure, Result, ShareLink
from portal.models.sessions import LoginSession

__all__ = ["ANNOTATABLE_TYPES", "FINAL_JOB_STATES", "Attachment", "AuditEvent", "Base", "Dataset", "DatasetStatus",
           "DerivedMeasure", "ImportRecord", "Job", "JobStatus", "LoginSession", "Membership", "MetadataEntry", "Note",
           "Project", "Result", "Role", "ShareLink", "Subject", "Tag", "UTCDateTime", "Upload", "User", "Visit",
           "new_uuid", "utcnow"]
