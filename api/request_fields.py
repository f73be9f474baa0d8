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

Some rules the service checks are beyond what pydantic checks here but not beyond a JSON schema:
:class:`Documented` states them in the OpenAPI document (api.openapi), so that a client sees the
rule it will be held to, while the service keeps answering with its own precise error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, GetJsonSchemaHandler, Strict, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from jpki.access.clients import CLIENT_ID
from jpki.protocol.consent import CONSENT_ID, PURPOSE, RP_ID


@dataclass(frozen=True)
class Documented:
    """JSON-schema keywords added to a type's schema and checked by the service, not by pydantic
    (``Annotated[str, Documented.of(pattern=...)]``). Hashable, as type metadata must be."""

    keywords: tuple[tuple[str, str | int], ...]

    @classmethod
    def of(cls, **keywords: str | int) -> Documented:
        return cls(tuple(keywords.items()))

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.keywords)
        return schema


# --- identifiers ---------------------------------------------------------------------------
# The patterns are anchored for pydantic's regex engine, where "$" is the end of the text (in
# Python's re it also matches before a final line feed).

# uuid4().hex: jpki.registry.residents, jpki.registry.counter (proofings), jpki.mobile.service
# (devices).
ResidentId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
ProofingId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
DvRequestId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]  # dv_support
StationTaskId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]  # station_tasks
# jpki.registry.cards: 8 to 32 of A-Z and 0-9, taken in either case.
CardNumber = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{8,32}$")]
# The ids the relying-party services make, and the purpose codes relying parties declare.
RelyingPartyId = Annotated[str, StringConstraints(pattern=RP_ID.pattern)]
ClientId = Annotated[str, StringConstraints(pattern=CLIENT_ID.pattern)]
ConsentId = Annotated[str, StringConstraints(pattern=CONSENT_ID.pattern)]
Purpose = Annotated[str, StringConstraints(pattern=PURPOSE.pattern)]
# A local government code (全国地方公共団体コード): 5 digits and a check digit. Six digits here
# (422); the prefecture (01-47, JIS X 0401) and the check digit (JIS X 0402) are
# jpki.municipalities' (400 municipality.invalid); the document states the prefecture too — a
# check digit is beyond a pattern.
PREFECTURE_PATTERN = r"^(?:0[1-9]|[1-3][0-9]|4[0-7])[0-9]{4}$"
MunicipalityCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$"),
                             Documented.of(pattern=PREFECTURE_PATTERN)]

# jpki.serials.parse_serial's rule, which answers 400 serial.invalid: a positive integer of at
# most 40 significant hexadecimal digits, any case, after an optional 0x, with colons or spaces
# anywhere (as `openssl x509 -text` prints them), in at most 128 characters.
SERIAL_PATTERN = (r"^ *(?:0[xX])?[: ]*(?:0[: ]*)*[1-9a-fA-F](?:[: ]*[0-9a-fA-F]){0,39}[: ]*$")
SERIAL_DESCRIPTION = ("A certificate serial number: hexadecimal, any case, with or without 0x, "
                      "colons or spaces")
# In a path.
Serial = Annotated[str, Documented.of(pattern=SERIAL_PATTERN, maxLength=128,
                                      description=SERIAL_DESCRIPTION)]
# In a body: bounded here so that a list of them is.
SerialText = Annotated[str, StringConstraints(min_length=1, max_length=64),
                       Documented.of(pattern=SERIAL_PATTERN, description=SERIAL_DESCRIPTION)]

# A SubjectPublicKeyInfo in PEM (RFC 7468 §13), ASCII; whether it is a key the CA certifies
# (RSA, 2048 bits, not weak) is jpki.public_keys' (400 public_key.invalid, .algorithm, .weak).
PEM_PUBLIC_KEY_PATTERN = (r"^\s*-----BEGIN PUBLIC KEY-----[A-Za-z0-9+/=\r\n]+"
                          r"-----END PUBLIC KEY-----\s*$")
PemPublicKey = Annotated[str, StringConstraints(min_length=1, max_length=8192),
                         Documented.of(pattern=PEM_PUBLIC_KEY_PATTERN,
                                       description="SubjectPublicKeyInfo, PEM")]

# A CMS SignedData (RFC 5652), DER, in base64 (RFC 4648 §4, padded). Decoded and verified by the
# service (400 cms.invalid), which also takes some non-canonical padding; clients send this.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
# Long enough for any signed document a holder sends, short enough that a body holding one (and
# the other fields beside it) stays within the default body limit (Settings.max_body_bytes,
# 64 KiB): a longer one could only ever be answered 413.
SIGNED_DATA_MAX = 65_000
SignedData = Annotated[str, StringConstraints(min_length=16, max_length=SIGNED_DATA_MAX),
                       Documented.of(pattern=BASE64_PATTERN, contentEncoding="base64",
                                     contentMediaType="application/pkcs7-mime")]


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
