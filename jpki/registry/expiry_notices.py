"""Expiry notices (有効期限通知書): who a municipality's notice run must write to.

J-LIS mails an expiry notice 2-3 months before a card certificate expires (reference §1.4). The
run needs, per municipality, one row per holder whose card certificates expire in a window of
JST dates ``[start, end)``: whom to write to (name and address — personal data, so no more than
that: no date of birth, no sex, no card number), and when and what expires.

Which certificates: **both** card certificates. The auth certificate is every holder's (a child
under 15 has no signing certificate, reference §1.4), and the signing certificate may end
earlier than it (capped by the auth certificate, and issued or renewed on its own). A holder
appears once, with the earliest expiry in the window and the kinds that expire in it; what is
valid now counts — a certificate already renewed (superseded), revoked or on hold is not
noticed. The mobile certificates follow the card's (reference §2) and get no notice of their
own. The municipality is the resident's current one, where the notice is mailed from.

Who may read it is the authorisation table's (``Operation.EXPIRY_NOTICES``): the
municipality's own operators for their municipality, national operators for any. The address
of a resident under DV support measures goes only to callers scoped to the resident's
municipality (architecture §4.7: the address is shown only to the resident's own counters); a
national caller gets the row with the address withheld.

Every export is audited **before** the first row leaves, as an event with the municipality, the
window, the format and the number of rows — never a name, an address or a resident id
(architecture §9.7). The rows are read from one snapshot, counted and streamed from it, so the
audited count is the number of rows sent, however large the municipality.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal, Protocol

from jpki.access.authz import Grant, Operation
from jpki.audit import AuditLog
from jpki.errors import InvalidInput, MunicipalityNotFound
from jpki.model import CertKind
from jpki.municipalities import validate_municipality_code
from jpki.ports import Clock
from jpki.registry.ports import ExpiryNoticesUnitOfWorkFactory
from jpki.validity import JST, jst_date

# A notice run looks months ahead, not years: a window longer than this is a mistake (and a
# mailing list of most of a municipality).
MAX_WINDOW_DAYS = 366
FORMATS = ("csv", "json")
CSV_COLUMNS = ("resident_id", "name", "address", "address_withheld", "expires_on",
               "certificates")
_KIND_NAMES = {CertKind.CARD_SIGN: "sign", CertKind.CARD_AUTH: "auth"}


class WindowInvalid(InvalidInput):
    code = "notices.window_invalid"
    title = "The window of expiry dates is empty or too long"


@dataclass(frozen=True)
class NoticeRow:
    """One card certificate of a holder, as the source reads it (ordered by resident)."""

    resident_id: str
    kind: CertKind
    not_after: datetime
    dv_support: bool
    name: str = field(repr=False)
    address: str = field(repr=False)


@dataclass(frozen=True)
class ExpiryNotice:
    """One holder to write to. Personal data: kept out of repr (architecture §10.9)."""

    resident_id: str
    expires_on: date  # the JST date of the earliest expiry in the window
    certificates: tuple[str, ...]  # "sign", "auth": the kinds expiring in the window
    address_withheld: bool  # DV support measures, and the caller is not the municipality's
    name: str = field(repr=False)
    address: str | None = field(repr=False)


class NoticeSnapshot(Protocol):
    """One consistent read of the card certificates valid at ``at`` whose notAfter lies in
    ``[start, end)``, for residents of ``municipality``."""

    def count(self, municipality: str, start: datetime, end: datetime, at: datetime) -> int:
        """How many distinct holders."""
        ...

    def rows(self, municipality: str, start: datetime, end: datetime,
             at: datetime) -> Iterator[NoticeRow]:
        """Their certificates, ordered by resident, streamed."""
        ...


class NoticeSource(Protocol):
    def snapshot(self) -> AbstractContextManager[NoticeSnapshot]: ...


@dataclass(frozen=True)
class Window:
    municipality: str
    start: date
    end: date

    @property
    def start_instant(self) -> datetime:
        return datetime.combine(self.start, time(0), JST)

    @property
    def end_instant(self) -> datetime:
        return datetime.combine(self.end, time(0), JST)


def check_window(municipality: str, start: date, end: date) -> Window:
    """The window, or a precise InvalidInput naming the field."""
    validate_municipality_code(municipality)
    if end <= start:
        raise WindowInvalid("the window is empty: 'to' must be after 'from'", field="to")
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise WindowInvalid(f"the window is at most {MAX_WINDOW_DAYS} days", field="to")
    return Window(municipality, start, end)


@dataclass
class NoticeExport:
    """An export ready to stream: ``count`` notices (audited already) in ``notices``, which
    must be consumed or closed (it holds the snapshot open)."""

    window: Window
    count: int
    notices: Iterator[ExpiryNotice]

    def close(self) -> None:
        close = getattr(self.notices, "close", None)
        if close is not None:
            close()


def _grouped(rows: Iterator[NoticeRow], show_protected: bool) -> Iterator[ExpiryNotice]:
    current: list[NoticeRow] = []

    def notice(group: list[NoticeRow]) -> ExpiryNotice:
        first = group[0]
        withheld = first.dv_support and not show_protected
        return ExpiryNotice(
            resident_id=first.resident_id,
            expires_on=jst_date(min(r.not_after for r in group)),
            certificates=tuple(sorted({_KIND_NAMES[r.kind] for r in group}, reverse=True)),
            address_withheld=withheld, name=first.name,
            address=None if withheld else first.address)

    for row in rows:
        if current and row.resident_id != current[0].resident_id:
            yield notice(current)
            current = []
        current.append(row)
    if current:
        yield notice(current)


class ExpiryNotices:
    def __init__(self, source: NoticeSource, uow_factory: ExpiryNoticesUnitOfWorkFactory,
                 clock: Clock, audit: AuditLog) -> None:
        self._source = source
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit

    def export(self, grant: Grant[Literal[Operation.EXPIRY_NOTICES]], municipality: str,
               start: date, end: date, fmt: str) -> NoticeExport:
        """The notices of ``municipality`` for certificates expiring in ``[start, end)`` (JST
        dates), audited, ready to stream. Refuses a malformed or unknown municipality, a
        municipality outside the caller's scopes and an empty or over-long window before
        reading anything."""
        principal = grant.require(Operation.EXPIRY_NOTICES)
        if fmt not in FORMATS:
            raise InvalidInput("format is csv or json", field="format")
        window = check_window(municipality, start, end)
        grant.require_municipality(window.municipality)
        with self._uow() as uow:
            if uow.municipalities.get(window.municipality) is None:
                raise MunicipalityNotFound("no such municipality",
                                           municipality=window.municipality)
        # DV support measures: the address only to the resident's own municipality's callers.
        show_protected = window.municipality in principal.municipalities
        now = self._clock.now()
        snapshot_cm = self._source.snapshot()
        snapshot = snapshot_cm.__enter__()
        try:
            count = snapshot.count(window.municipality, window.start_instant,
                                   window.end_instant, now)
            with self._uow() as uow:
                # Before the first row leaves: who took which list, and how long it was.
                self._audit.record(uow, actor=principal.actor, action="notices.expiry_exported",
                                   subject=window.municipality,
                                   payload={"from": window.start.isoformat(),
                                            "to": window.end.isoformat(), "format": fmt,
                                            "count": count})
                uow.commit()
        except BaseException as exc:
            snapshot_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise

        def stream() -> Iterator[ExpiryNotice]:
            with _closing(snapshot_cm):
                rows = snapshot.rows(window.municipality, window.start_instant,
                                     window.end_instant, now)
                yield from _grouped(rows, show_protected)

        return NoticeExport(window=window, count=count, notices=stream())


@contextmanager
def _closing(cm: AbstractContextManager[NoticeSnapshot]) -> Iterator[None]:
    """Exit an already entered context manager when the block ends, however it ends."""
    try:
        yield
    except BaseException as exc:
        if not cm.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        cm.__exit__(None, None, None)


# --- encodings ------------------------------------------------------------------------------


def _csv_line(values: tuple[object, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)  # RFC 4180: CRLF
    return buffer.getvalue()


def as_csv(notices: Iterator[ExpiryNotice], batch: int = 500) -> Iterator[str]:
    """RFC 4180 CSV (UTF-8, CRLF, a header line), in chunks of ``batch`` rows."""
    yield _csv_line(CSV_COLUMNS)
    chunk: list[str] = []
    for n in notices:
        chunk.append(_csv_line((n.resident_id, n.name, n.address or "",
                                "true" if n.address_withheld else "false",
                                n.expires_on.isoformat(), " ".join(n.certificates))))
        if len(chunk) >= batch:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def as_json(export: NoticeExport, batch: int = 500) -> Iterator[str]:
    """One JSON object — the municipality, the window, the count and the notices — written as
    it is read."""
    w = export.window
    head = json.dumps({"municipality": w.municipality, "from": w.start.isoformat(),
                       "to": w.end.isoformat(), "count": export.count}, ensure_ascii=False)
    yield head[:-1] + ', "notices": ['
    chunk: list[str] = []
    first = True
    for n in export.notices:
        item = json.dumps({"resident_id": n.resident_id, "name": n.name,
                           "address": n.address, "address_withheld": n.address_withheld,
                           "expires_on": n.expires_on.isoformat(),
                           "certificates": list(n.certificates)}, ensure_ascii=False)
        chunk.append(item if first else "," + item)
        first = False
        if len(chunk) >= batch:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk) + "]}"
