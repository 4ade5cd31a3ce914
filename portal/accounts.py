"""Creating users and the first admin, new passwords, (de)activation and admin rights, with the last-admin guards."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.login_sessions import end_user_sessions
from portal.models import LoginSession, User

MIN_PASSWORD_LENGTH = 8


class AccountError(ValueError):
    pass


class AccountConflict(AccountError):
    """The change is well formed but not allowed now (a taken email, the last admin, yourself): HTTP 409."""


def create_user(session: Session, email: str, password: str, *, name: str = "", is_admin: bool = False) -> User:
    email = email.strip().lower()
    if not email or " " in email:
        raise AccountError(f"not a valid login: {email!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise AccountConflict(f"a user {email} already exists")
    user = User(email=email, name=name, is_admin=is_admin)
    user.set_password(password)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: User, password: str, *, keep: LoginSession | None = None) -> int:
    """Give USER a new password and end its login sessions, all but KEEP (the browser that changed it); how many ended."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    user.set_password(password)
    if keep is not None:
        keep.password_fingerprint = user.session_fingerprint
    return end_user_sessions(session, user.id, "password", keep=keep)


def deactivate_user(session: Session, user: User) -> int:
    """USER can no longer log in, and every browser logged in as USER is logged out; how many sessions ended."""
    user.is_active = False
    return end_user_sessions(session, user.id, "deactivated")


def reactivate_user(user: User) -> None:
    """USER may log in again (with the password they had, or a new one an admin sets)."""
    user.is_active = True


def check_rights_change(session: Session, actor: User, user: User, *, is_admin: bool | None = None,
                        is_active: bool | None = None) -> None:
    """Refuse (AccountConflict) what could lock admins out: removing yourself, or the last active admin."""
    demote, deactivate = is_admin is False and user.is_admin, is_active is False and user.is_active
    if not (demote or deactivate):
        return
    if user.id == actor.id:
        what = "deactivate" if deactivate else "remove admin rights from"
        raise AccountConflict(f"you cannot {what} yourself; ask another admin")
    if user.is_admin and user.is_active:
        # FOR UPDATE (PostgreSQL) serialises two admins demoting each other at once; SQLite serialises writes anyway
        admins = session.scalars(select(User.id).where(User.is_admin.is_(True), User.is_active.is_(True))
                                 .with_for_update()).all()
        if set(admins) <= {user.id}:
            raise AccountConflict(f"{user.email} is the last active admin; make someone else an admin first")


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def ensure_first_admin(session: Session, email: str) -> str | None:
    """On an empty database create an admin and return its generated password (shown once); else None."""
    if session.scalar(select(func.count(User.id))):
        return None
    password = generate_password()
    create_user(session, email, password, name="Administrator", is_admin=True)
    return password
