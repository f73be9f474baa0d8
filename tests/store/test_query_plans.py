"""The lookups that run once per row of a national job use an index, on both engines.

At 10^7 certificates a lookup that reads the whole table costs seconds; run once per phone by
the mobile sweep, it made the sweep take 27 minutes (docs/scale.md, "What the curves showed").
The planners are asked for their plan with sequential scans priced out of reach, so an empty
test table still shows whether an index *can* serve the query.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from jpki.store import create_store_engine
from jpki.store.expiry_notices import SqlNoticeSource
from jpki.store.repositories import SqlCertificates, SqlOcspResponses
from jpki.store.tables import map_entities


def _plan(url: str, call: Any, drop: str | None = None,
          repository: Any = SqlCertificates) -> tuple[str, str]:
    """The plan of the one statement ``call`` runs through a ``repository`` (a SqlCertificates
    by default); with ``drop``, the plan without that index (dropped inside a transaction that
    is rolled back)."""
    map_entities()
    engine = create_store_engine(url)
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):  # not the engine's own setup
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            call(repository(session))
        event.remove(engine, "before_cursor_execute", capture)
        (statement, parameters), = seen
        with engine.connect() as conn:
            if drop is not None:
                conn.exec_driver_sql(f"DROP INDEX {drop}")
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET enable_seqscan = off")
                rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
            else:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            conn.rollback()
        return engine.dialect.name, "\n".join(str(r[-1]) for r in rows)
    finally:
        engine.dispose()


def test_a_phones_certificates_are_found_through_the_device_index(database_url):
    _, plan = _plan(database_url, lambda certificates: certificates.for_device("d" * 32))
    assert "ix_certificates_device_id" in plan, plan


def test_without_that_index_the_same_lookup_reads_the_whole_table(database_url):
    # The check above would pass vacuously if the plan never named what it reads.
    dialect, plan = _plan(database_url, lambda certificates: certificates.for_device("d" * 32),
                          drop="ix_certificates_device_id")
    if dialect == "postgresql":  # every row read and filtered, by whichever path
        assert "Filter: ((device_id)" in plan and "Index Cond" not in plan, plan
    else:
        assert "SCAN certificates" in plan, plan


def test_the_presign_selection_looks_each_response_up_instead_of_joining_them_all(database_url):
    # One page of the pre-signer's selection (SqlOcspResponses.missing) walks certificates in
    # id order and probes each one's response by key. As an anti-join, PostgreSQL read and
    # hashed every stored response for every page of 500 (docs/scale.md).
    at = datetime(2030, 1, 1, tzinfo=UTC)
    dialect, plan = _plan(database_url, lambda responses: responses.missing(
        "sha1", at, at, 500, 0), repository=SqlOcspResponses)
    if dialect == "postgresql":
        assert "SubPlan" in plan and "Anti Join" not in plan, plan
    else:  # SQLite runs either form as a lookup per certificate; the plan says so
        assert "CORRELATED SCALAR SUBQUERY" in plan, plan


def test_the_expiry_export_plans_its_cursor_for_every_row(database_url):
    # The export streams through a server-side cursor, which PostgreSQL plans for its first
    # tenth of rows unless told otherwise: at 10^7 certificates that plan walked the whole
    # table for the largest municipality (26 s against 0.5 s, docs/scale.md).
    at = datetime(2030, 1, 1, tzinfo=UTC)
    engine = create_store_engine(database_url)
    try:
        with SqlNoticeSource(engine).snapshot() as snapshot:
            assert list(snapshot.rows("131016", at, at, at)) == []
            if engine.dialect.name == "postgresql":
                fraction = snapshot._c.exec_driver_sql(
                    "SELECT current_setting('cursor_tuple_fraction')").scalar()
                assert float(fraction) == 1.0
    finally:
        engine.dispose()
