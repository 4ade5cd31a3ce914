"""Access to a dataset's pyramid for tile-like requests: a signed viewer token, or the session with a short cache.

A viewer asks once (info endpoint, full permission check) and gets a token naming the dataset and its
pyramid, signed with the secret key and valid for VIEW_TOKEN_SECONDS; tiles carrying it are served
without touching the database. Without a token, the session's user is checked, and that check is
reused for GRANT_SECONDS.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from flask import abort, current_app, request
from flask_login import current_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.exceptions import NotFound

from portal.context import db, storage
from portal.models import Dataset, DatasetStatus
from portal.permissions import dataset_or_404
from portal.shares import holds_share_links, shared_dataset_ids
from tiler.storage import Location

GRANT_SECONDS = 10
VIEW_TOKEN_SECONDS = 15 * 60
TOKEN_PARAMETER = "t"
#: The only endpoints where a viewer token stands in for the session: pixels, never metadata or new tokens.
TOKEN_ENDPOINTS = frozenset({"tiles.tile", "tiles.thumbnail", "tiles.histogram", "iiif.iiif_image",
                             "iiif.dzi_image_tile", "result_tiles.label_tile"})
_TOKEN_SALT = "tilescope-view-token"


@dataclass(frozen=True)
class Grant:
    dataset_id: str
    pyramid: Location
    version: str  # changes whenever the pyramid does; part of every ETag
    expires: float


def grant_for(dataset: Dataset, ttl: float) -> Grant:
    if dataset.status != DatasetStatus.READY.value or not dataset.pyramid_path:
        abort(409, f"dataset {dataset.id} is {dataset.status}, it has no pyramid yet")
    version = hashlib.sha256(f"{dataset.pyramid_path}|{dataset.updated_at.isoformat()}".encode()).hexdigest()[:16]
    return Grant(dataset.id, storage().locate(dataset.pyramid_path), version, time.monotonic() + ttl)


class GrantCache:
    """Recently checked (user, dataset) grants, so a tile does not cost a permission query."""

    def __init__(self, ttl: float = GRANT_SECONDS, max_entries: int = 10_000):
        self.ttl, self.max_entries = ttl, max_entries
        self._grants: dict[tuple[int, str], Grant] = {}
        self._lock = threading.Lock()

    def get(self, dataset_id: str) -> Grant:
        key = (current_user.id, dataset_id)
        with self._lock:
            grant = self._grants.get(key)
        if grant is not None and grant.expires > time.monotonic():
            return grant
        grant = grant_for(dataset_or_404(db(), current_user, dataset_id), self.ttl)
        with self._lock:
            if len(self._grants) >= self.max_entries:
                self._grants.clear()
            self._grants[key] = grant
        return grant


grants = GrantCache()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_TOKEN_SALT)


def issue_view_token(grant: Grant) -> str:
    return _serializer().dumps({"d": grant.dataset_id, "p": grant.pyramid.key, "v": grant.version})


def grant_from_token(token: str, dataset_id: str) -> Grant:
    try:
        claims = _serializer().loads(token, max_age=VIEW_TOKEN_SECONDS)
    except SignatureExpired:
        abort(401, "the viewer token has expired; reload the page")
    except BadSignature:
        abort(403, "the viewer token is not valid")
    if claims.get("d") != dataset_id:
        abort(403, "the viewer token is for another dataset")
    return Grant(dataset_id, storage().locate(claims["p"]), claims["v"], time.monotonic() + VIEW_TOKEN_SECONDS)


def has_view_token() -> bool:
    """Whether this request may be served on the strength of a viewer token alone."""
    return request.endpoint in TOKEN_ENDPOINTS and bool(request.args.get(TOKEN_PARAMETER))


def current_grant(dataset_id: str) -> Grant:
    """The grant of this request: its viewer token on the token endpoints, else the logged-in user, else a share link."""
    if has_view_token():
        return grant_from_token(request.args[TOKEN_PARAMETER], dataset_id)
    if current_user.is_authenticated:
        try:
            return grants.get(dataset_id)
        except NotFound:
            if not holds_share_links():
                raise
    if holds_share_links() and dataset_id in shared_dataset_ids():
        dataset = db().get(Dataset, dataset_id)
        return grant_for(dataset, GRANT_SECONDS)
    if not current_user.is_authenticated:
        abort(401, "login required")
    abort(404, f"no dataset {dataset_id} visible to you")


def signed_claims(token: str, salt: str, max_age: int) -> dict:
    """The claims of a token signed with the app's key and `salt`, or a 401/403 saying why not."""
    try:
        return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt).loads(token, max_age=max_age)
    except SignatureExpired:
        abort(401, "the viewer token has expired; reload the page")
    except BadSignature:
        abort(403, "the viewer token is not valid")


def sign_claims(claims: dict, salt: str) -> str:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt).dumps(claims)
