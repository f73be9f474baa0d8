"""Read-only queries for monitoring (api.probes): what the service's tables say about its health.

Each is one statement on a connection of the read engine; none reads a personal-data column.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, text

from jpki.store.tables import crl_numbers, crl_publications

_P = crl_publications.c


def ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1")).scalar_one()


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
