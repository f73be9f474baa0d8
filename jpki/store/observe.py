"""Read-only queries for monitoring (api.probes): what the service's tables say about its health.

Each is one statement on a connection of the read engine; none reads a personal-data column.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, exists, func, select, text

from jpki.model import CertStatus
from jpki.store.tables import certificates, crl_numbers, crl_publications, ocsp_responses

_C = certificates.c
_O = ocsp_responses.c
_P = crl_publications.c


def ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1")).scalar_one()


def presign_backlog(conn: Connection, algorithm: str, fresh_from: datetime, now: datetime,
                    cap: int) -> int:
    """Unexpired certificates with no response for ``algorithm`` signed since ``fresh_from``
    (what ``OcspResponder.presign_missing`` would sign), counted up to ``cap`` so that a huge
    backlog costs a bounded read."""
    fresh = select(_O.serial).where(_O.ca_generation_id == _C.ca_generation_id,
                                    _O.serial == _C.serial, _O.hash_algorithm == algorithm,
                                    _O.this_update >= fresh_from)
    missing = (select(_C.id).where(_C.status != CertStatus.PENDING, _C.not_after >= now,
                                   ~exists(fresh)).limit(cap).subquery())
    return int(conn.execute(select(func.count()).select_from(missing)).scalar_one())


def oldest_unrefreshed_change(conn: Connection, since: datetime,
                              now: datetime) -> datetime | None:
    """The oldest status change (revocation, hold, release: each sets revocation_recorded_at,
    see jpki.revocation) that a stored response still within its validity does not reflect:
    signed in or before the second of the change (the refresh re-signs those, jpki.ocsp)."""
    stmt = (select(func.min(_C.revocation_recorded_at))
            .select_from(certificates.join(ocsp_responses, (_O.serial == _C.serial)
                                           & (_O.ca_generation_id == _C.ca_generation_id)))
            .where(_C.revocation_recorded_at >= since,
                   _O.this_update <= _C.revocation_recorded_at, _O.next_update > now))
    value: datetime | None = conn.execute(stmt).scalar_one()
    return value


def latest_crl_next_updates(conn: Connection) -> dict[tuple[int, str, str], datetime]:
    """(generation id, scope, kind) → nextUpdate of that scope's newest CRL of that kind, for
    every scope and kind ever published. Driven by the small crl_numbers table (one row per
    scope), each newest found by a seek on ix_crl_publications_latest: the cost does not grow
    with the history of publications."""
    out: dict[tuple[int, str, str], datetime] = {}
    n = crl_numbers.c
    newest = {kind: (select(_P.next_update)
                     .where(_P.ca_generation_id == n.ca_generation_id, _P.scope == n.scope,
                            _P.kind == kind)
                     .order_by(_P.number.desc()).limit(1).scalar_subquery())
              for kind in ("full", "delta")}
    stmt = select(n.ca_generation_id, n.scope, newest["full"], newest["delta"])
    for gid, scope, full, delta in conn.execute(stmt):
        for kind, next_update in (("full", full), ("delta", delta)):
            if next_update is not None:
                out[(int(gid), str(scope), kind)] = next_update
    return out
