"""Structured logs: one JSON object per line, on stderr, for the server and uvicorn alike.

Every line has ``ts`` (UTC, milliseconds), ``level``, ``logger`` and ``message``, the
``request_id`` of the request or job run it belongs to (jpki.correlation) when there is one, and
the structured ``fields`` a caller passes with ``extra={"fields": {...}}`` (the request and job
lines, api.request_log and api.jobs).

No line may carry personal data (architecture §9.7), and a formatter cannot know what a message
means, so the rules are about what reaches it:

- the request line names the route *template*, never the path as sent or the query, and no body;
- uvicorn's access log (``jpki serve --access-log``) is reduced to method, path without its query
  string, and status;
- an exception is logged as its type and the frames it went through — never its text, which may
  quote a request or an SQL parameter (the API's own logs already report types only).
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime
from typing import Any

from jpki.correlation import current_request_id

_STACK_FRAMES = 12


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id current where it was logged (a handler that
    formats later, in another thread or context, would no longer see it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) \
                and len(record.args) == 5:
            # uvicorn passes (client address, method, path with query, HTTP version, status).
            _client, method, path, _version, status = record.args
            doc.update(message="access", method=str(method),
                       path=str(path).split("?", 1)[0], status=status)
        else:
            doc["message"] = record.getMessage()
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id is not None:
            doc["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _exc, tb = record.exc_info
            doc["exception"] = f"{exc_type.__module__}.{exc_type.__qualname__}"
            doc["stack"] = [f"{f.filename}:{f.lineno} {f.name}"
                            for f in traceback.extract_tb(tb)[-_STACK_FRAMES:]]
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)


def log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``: every logger — uvicorn's,
    the service's, the root — writes JSON lines to stderr. Each worker process applies it."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "api.logs.JsonFormatter"}},
        "filters": {"request_id": {"()": "api.logs.RequestIdFilter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "filters": ["request_id"], "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "jpki": {"handlers": ["stderr"], "level": upper, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
