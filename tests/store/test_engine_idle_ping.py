"""PostgreSQL connections are pinged before use only after sitting idle (jpki.store.engine): no
round trip before every unit of work, and still no error for a request that gets a pooled
connection the server has dropped meanwhile."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

import jpki.store.engine as store_engine
from jpki.store import create_store_engine

pytestmark = pytest.mark.postgres


def test_connections_in_use_are_not_pinged_and_a_dropped_idle_one_is_replaced(
        postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_store_engine(postgres_database, pool_size=1)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    try:
        for _ in range(5):
            with engine.connect() as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert pings == []  # in steady use: no round trip before each checkout
        # The server drops the pooled connection while it sits idle (a restart, a timeout).
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                                {"pid": pid}).scalar_one()
        monkeypatch.setattr(store_engine, "IDLE_PING_SECONDS", 0.0)  # as if idle for long
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
        assert len(pings) == 1
    finally:
        admin.dispose()
        engine.dispose()
