"""The store's engines: a value the database refuses to take is the request's fault.

PostgreSQL cannot hold a NUL in a text column, neither database takes text that is not Unicode
(a lone surrogate, which a JSON escape can produce), and SQLite's integers stop at 2**63 - 1.
Each is raised as UnstorableValue — invalid input, HTTP 400 — never as an internal error.
"""

from __future__ import annotations

import pytest

from jpki.errors import UnstorableValue
from jpki.store import UnitOfWorkFactory, create_store_engine


def test_values_no_database_stores_are_invalid_input(database_url: str) -> None:
    engine = create_store_engine(database_url)
    uow = UnitOfWorkFactory(engine)
    postgres = engine.dialect.name == "postgresql"
    try:
        for value in ("\x00", "0123456789abcdef\x000123456789abcde"):
            with uow() as u:
                if postgres:
                    with pytest.raises(UnstorableValue) as caught:
                        u.residents.get(value)
                    assert caught.value.code == "request.unstorable"
                    assert value not in caught.value.detail
                else:  # SQLite stores a NUL like any other character: there is no such row
                    assert u.residents.get(value) is None
        with uow() as u, pytest.raises(UnstorableValue):
            u.residents.get("\ud800")
        with uow() as u, pytest.raises(UnstorableValue):
            u.certificates.get(2**70)
        with uow() as u:  # the connection is still good for the next request
            assert u.residents.get("0" * 32) is None
    finally:
        engine.dispose()
