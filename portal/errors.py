"""One table from exceptions to HTTP statuses; JSON for API and tile routes, a page for the rest."""

from __future__ import annotations

from flask import jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from tiler.errors import CorruptImage, ImageTooLarge, OutOfRange, StorageUnavailable, TilerError, UnsupportedFormat

STATUS_FOR_EXCEPTION: list[tuple[type[Exception], int]] = [
    (OutOfRange, 404),
    (UnsupportedFormat, 415),
    (ImageTooLarge, 413),
    (CorruptImage, 422),
    (StorageUnavailable, 503),
    (TilerError, 400),
]


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/iiif/", "/dzi/")) or request.accept_mimetypes.best == "application/json"


def error_response(status: int, message: str):
    if wants_json():
        return jsonify(error=message, status=status), status
    return render_template("error.html", status=status, message=message), status


def register_error_handlers(app) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(TilerError)
    def _tiler_error(exc: TilerError):
        status = next(code for cls, code in STATUS_FOR_EXCEPTION if isinstance(exc, cls))
        return error_response(status, str(exc))
