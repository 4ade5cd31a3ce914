"""Who may read a result: project members, or a browser holding an active share link to it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import abort, request
from flask_login import current_user

from portal.access import TOKEN_PARAMETER, VIEW_TOKEN_SECONDS, sign_claims, signed_claims
from portal.context import db, storage
from portal.models import Result, Role
from portal.permissions import role_in
from portal.shares import holds_share_links, shared_result_ids
from tiler.storage import Location

_LABEL_TOKEN_SALT = "tilescope-label-token"


@dataclass(frozen=True)
class ResultAccess:
    result: Result
    via_share: bool  # read through a share link, not through project membership
    can_manage: bool  # may share, revoke and reproduce (analysts and owners of the project)


def result_access(result_id: str) -> ResultAccess:
    """The result if this request may read it, else 401 (anonymous, no share) or 404 (not visible)."""
    result = db().get(Result, result_id)
    if result is not None and current_user.is_authenticated:
        role = role_in(db(), current_user, result.project_id)
        if role is not None:
            return ResultAccess(result, False, role.rank >= Role.ANALYST.rank)
    if result is not None and holds_share_links() and result.id in shared_result_ids():
        return ResultAccess(result, True, False)
    if not current_user.is_authenticated and not holds_share_links():
        abort(401, "login required")
    abort(404, f"no result {result_id} visible to you")


def result_folder(result: Result) -> Location:
    return storage().locate(result.path)


def labels_version(result: Result) -> str:
    return hashlib.sha256(f"labels|{result.id}|{result.path}".encode()).hexdigest()[:16]


def issue_label_token(result: Result) -> str:
    return sign_claims({"r": result.id, "p": result.path, "v": labels_version(result)}, _LABEL_TOKEN_SALT)


def labels_grant(result_id: str) -> tuple[Location, str]:
    """(label pyramid folder, version) of this request: from its label token, else from a full access check."""
    token = request.args.get(TOKEN_PARAMETER)
    if token:
        claims = signed_claims(token, _LABEL_TOKEN_SALT, VIEW_TOKEN_SECONDS)
        if claims.get("r") != result_id:
            abort(403, "the viewer token is for another result")
        return storage().locate(claims["p"]) / "labels.ome.zarr", claims["v"]
    result = result_access(result_id).result
    return result_folder(result) / "labels.ome.zarr", labels_version(result)
