"""Sending stored files: local files through send_file (ranges, conditional requests), object-store files streamed."""

from __future__ import annotations

from pathlib import Path

from flask import Response, send_file, stream_with_context

from tiler.storage import Location, iter_chunks


def send_stored(where: Location | Path, *, mimetype: str, download_name: str, as_attachment: bool = True,
                etag: str | bool = True, max_age: int = 0) -> Response:
    """The file at ``where`` as a download; an object-store file is streamed a block at a time, never held whole."""
    local = where if isinstance(where, Path) else where.local_path
    if local is not None:
        return send_file(local, mimetype=mimetype, as_attachment=as_attachment, download_name=download_name,
                         conditional=True, etag=etag, max_age=max_age)
    size = where.size()
    handle = where.open()

    def body():
        with handle:
            yield from iter_chunks(handle)

    response = Response(stream_with_context(body()), mimetype=mimetype)
    response.headers["Content-Length"] = str(size)
    disposition = "attachment" if as_attachment else "inline"
    response.headers.set("Content-Disposition", disposition, filename=download_name)
    if isinstance(etag, str):
        response.set_etag(etag)
    response.cache_control.max_age = max_age
    return response
