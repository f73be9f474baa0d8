"""Types of request fields: identifiers with their real alphabet and length, and what pydantic's
strict mode alone does not get right.

Identifiers are checked here, at the edge, before anything looks them up: each is what the service
itself makes (a resident id is ``uuid4().hex``, a relying party's ``rp_`` and 16 hex digits …), so
a NUL, a control character, an overlong or undecodable value is refused with 422
``request.invalid`` naming the field — it never reaches the database, where PostgreSQL cannot even
hold a NUL in a text column. Serial numbers are the exception: ``jpki.serials.parse_serial``
accepts the spellings people use (``0x``, colons, any case) and answers ``serial.invalid``.

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

from pydantic import BeforeValidator, Strict, StringConstraints

from jpki.clients import CLIENT_ID
from jpki.consents import CONSENT_ID
from jpki.relying_parties import PURPOSE, RP_ID

# --- identifiers ---------------------------------------------------------------------------
# The patterns are anchored for pydantic's regex engine, where "$" is the end of the text (in
# Python's re it also matches before a final line feed).

# uuid4().hex: jpki.residents, jpki.counter (proofings), jpki.mobile (devices).
ResidentId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
ProofingId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
# jpki.cards: 8 to 32 of A-Z and 0-9, taken in either case.
CardNumber = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{8,32}$")]
# The ids the relying-party services make, and the purpose codes relying parties declare.
RelyingPartyId = Annotated[str, StringConstraints(pattern=RP_ID.pattern)]
ClientId = Annotated[str, StringConstraints(pattern=CLIENT_ID.pattern)]
ConsentId = Annotated[str, StringConstraints(pattern=CONSENT_ID.pattern)]
Purpose = Annotated[str, StringConstraints(pattern=PURPOSE.pattern)]
# A local government code (全国地方公共団体コード): 5 digits and a check digit.
MunicipalityCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
# Parsed by jpki.serials.parse_serial; bounded here so that a list of them is.
SerialText = Annotated[str, StringConstraints(min_length=1, max_length=64)]


# --- dates and codes ------------------------------------------------------------------------

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
