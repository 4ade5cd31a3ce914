"""Who may do what in a project: viewers read, analysts upload and run jobs, owners manage; admins do all."""

from __future__ import annotations

from flask import abort
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import Dataset, Membership, Project, Role, User


def role_in(session: Session, user: User, project_id: int) -> Role | None:
    """The user's role in the project (admins count as owners), or None for non-members."""
    if user.is_admin:
        return Role.OWNER
    role = session.scalar(select(Membership.role).where(Membership.user_id == user.id, Membership.project_id == project_id))
    return Role(role) if role else None


def can(session: Session, user: User, project_id: int, needed: Role) -> bool:
    role = role_in(session, user, project_id)
    return role is not None and role.rank >= needed.rank


def visible_projects(session: Session, user: User) -> list[Project]:
    query = select(Project).order_by(Project.name)
    if not user.is_admin:
        query = query.join(Membership).where(Membership.user_id == user.id)
    return list(session.scalars(query))


def project_or_404(session: Session, user: User, project_id: int, needed: Role = Role.VIEWER) -> Project:
    """The project if the user may act on it with `needed`; 404 when they cannot see it, 403 when they only can't act."""
    project = session.get(Project, project_id)
    role = role_in(session, user, project_id) if project else None
    if project is None or role is None:
        abort(404, f"no project {project_id} visible to you")
    if role.rank < needed.rank:
        abort(403, f"your role in this project is {role.value}; this needs {needed.value}")
    return project


def dataset_or_404(session: Session, user: User, dataset_id: str, needed: Role = Role.VIEWER) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or role_in(session, user, dataset.project_id) is None:
        abort(404, f"no dataset {dataset_id} visible to you")
    project_or_404(session, user, dataset.project_id, needed)
    return dataset
