"""Types of request fields that pydantic's strict mode alone does not get right.

Request models are strict (api.schemas.Strict): JSON ``0`` is not a date, ``true`` is not a sex
code and ``"yes"`` is not a boolean. FastAPI validates a body as Python objects parsed from JSON,
where strict mode would also refuse what JSON can only carry as text — a date, an enum value —
so those fields say here exactly which text they take. And strict mode still lets ``true`` and
``1.0`` through an integer ``Literal`` (they compare equal to 1): codes get a type check of their
own.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Strict

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date_text(value: Any) -> Any:
    # The calendar check (1990-02-30) is pydantic's, after this one.
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("a date is YYYY-MM-DD text")
    return value


def _integer(value: Any) -> Any:
    if type(value) is not int:  # bool is a subclass of int, 1.0 == 1: neither is a code
        raise ValueError("a code is an integer")
    return value


# A calendar date as JSON text, YYYY-MM-DD (RFC 3339 full-date) and nothing else: no number
# of seconds since 1970, no date-time.
IsoDate = Annotated[date, Strict(False), BeforeValidator(_date_text)]

# The sex code of the basic 4 information (reference §1.3): 1 male, 2 female, 3 not known.
SexCode = Annotated[Literal[1, 2, 3], BeforeValidator(_integer)]


# On an enum field: its values as JSON strings (strict mode would want the Python enum member
# itself, which JSON cannot carry). ``Annotated[EventKind, AS_TEXT]``.
AS_TEXT = Strict(False)
