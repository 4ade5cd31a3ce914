"""The Flask application factory."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Request, abort, g
from flask_login import current_user

import frontend
from portal.context import close_db, db, storage
from portal.errors import register_error_handlers
from portal.extensions import csrf, login_manager
from portal.logformat import log_handler
from portal.metrics import install_metrics
from portal.models import Role
from portal.permissions import can
from portal.policy import enforce_policy
from portal.settings import Settings
from portal.storage import Storage
from tiler.chunk_cache import configure_chunk_cache
from tiler.render import configure_tile_cache

FRONTEND_DIR = Path(frontend.__file__).resolve().parent
UPLOAD_ENDPOINTS = {"api.upload_dataset", "pages.upload", "research_api.upload_attachment"}


class StreamingUploadRequest(Request):
    """Streams multipart file parts straight into uploads/ while hashing them; nothing is held in memory.

    Only analysts and owners, on the upload endpoints, get anything written to disk: the check runs
    at the first file part, before a byte of it is stored.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        project_id = (self.view_args or {}).get("project_id")
        if not (self.endpoint in UPLOAD_ENDPOINTS and current_user.is_authenticated and project_id is not None
                and can(db(), current_user, project_id, Role.ANALYST)):
            abort(403, "files are accepted only by the upload endpoints, from analysts and owners of the project")
        upload = storage().new_upload(max_bytes=self.max_content_length)
        g.setdefault("uploads", []).append(upload)
        return upload


def _discard_unpublished_uploads(_exc=None) -> None:
    """A failed, truncated or rejected upload leaves nothing behind in uploads/."""
    for upload in g.pop("uploads", []):
        upload.close()
        upload.path.unlink(missing_ok=True)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__, template_folder=str(FRONTEND_DIR / "templates"), static_folder=str(FRONTEND_DIR / "static"))
    app.request_class = StreamingUploadRequest
    app.config.update(
        SECRET_KEY=settings.signing_key(),
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.extensions["tilescope.settings"] = settings
    configure_chunk_cache(settings.chunk_cache_bytes)
    configure_tile_cache(settings.tile_cache_bytes)
    app.extensions["tilescope.storage"] = Storage(settings)
    logging.basicConfig(level=settings.log_level.upper(), handlers=[log_handler(settings.log_format)])
    install_metrics(app)

    app.before_request(enforce_policy)  # before CSRF, whose check reads (and so receives) the request body
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    app.teardown_request(_discard_unpublished_uploads)
    app.teardown_appcontext(close_db)
    register_error_handlers(app)

    from portal import (
        account_views,
        analysis,
        api,
        auth,
        export_views,
        health,
        iiif,
        jobs_views,
        pages,
        research_api,
        research_pages,
        result_tiles,
        results,
        search_views,
        shares,
        tiles,
        tus_views,
    )

    for module in (auth, pages, api, tiles, iiif, analysis, results, result_tiles, shares, jobs_views, tus_views,
                   research_api, research_pages, export_views, search_views, health, account_views):
        app.register_blueprint(module.blueprint)

    app.add_template_filter(unit_symbol)
    app.after_request(_security_headers)
    return app


UNIT_SYMBOLS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m",
                "angstrom": "Å"}


def unit_symbol(unit: str | None) -> str:
    """NGFF unit names as people write them: micrometer → µm."""
    return UNIT_SYMBOLS.get(unit or "", unit or "")


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


#: Pages load scripts, styles and images from this site only (inline styles and data:/blob: images allowed).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                           "script-src 'self'; object-src 'none'; frame-ancestors 'self'")
