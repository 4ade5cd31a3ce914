"""Log line formats: the classic text line, or one JSON object a line (TILESCOPE_LOG_FORMAT=json) for log shippers."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: LogRecord attributes every record has; anything else was passed with `extra=` and is logged as a field.
STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, process, then any `extra=` fields, and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        entry.update(request_fields())
        for key, value in vars(record).items():
            if key not in STANDARD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def request_fields() -> dict:
    """The request being answered when the line was logged (method, path, endpoint, client), if any."""
    try:
        from flask import has_request_context, request
    except ImportError:  # workers and the CLI log without Flask
        return {}
    if not has_request_context():
        return {}
    return {"method": request.method, "path": request.path, "endpoint": request.endpoint,
            "remote_addr": request.remote_addr}


def log_handler(log_format: str) -> logging.Handler:
    """A stderr handler writing `text` or `json` lines."""
    if log_format.strip().lower() not in {"text", "json"}:
        raise ValueError(f"TILESCOPE_LOG_FORMAT: expected text or json, got {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format.strip().lower() == "json" else logging.Formatter(TEXT_FORMAT))
    return handler
