"""The request id of the work in progress: what ties a log line to the audit records it caused.

The API binds one for every HTTP request (taken from a well-formed ``X-Request-ID`` or made
here), the job runner one for every job run; :class:`jpki.audit.AuditLog` stamps it on each
record staged while it is bound, and the chain's MAC covers it. A context variable, so it follows
the request into the thread pool (Starlette copies the context) and never leaks between
concurrent requests. Work with no request behind it (the CLI) has none.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Bounded and from a safe alphabet: it is written into logs, headers and the audit chain
# (whose column holds 64 characters). Anything else a client sends is replaced, not echoed.
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

_current: ContextVar[str | None] = ContextVar("jpki_request_id", default=None)


def current_request_id() -> str | None:
    return _current.get()


def new_request_id(prefix: str = "") -> str:
    """128 random bits in hex (``prefix`` first, e.g. ``job-``)."""
    return prefix + secrets.token_hex(16)


def acceptable(value: str | None) -> bool:
    """Whether a client-supplied id may be used as it is."""
    return value is not None and REQUEST_ID.fullmatch(value) is not None


@contextmanager
def bound(request_id: str | None) -> Iterator[str | None]:
    """Make ``request_id`` the current one for the block (None: no request)."""
    token = _current.set(request_id)
    try:
        yield request_id
    finally:
        _current.reset(token)
