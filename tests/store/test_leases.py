"""The maintenance lease in PostgreSQL (jpki.store.leases): one holder per database across every
process and host, given up when its session ends, taken over by another, and never an exception
when the database is away."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from jpki.store.engine import normalise_url
from jpki.store.leases import AdvisoryLease
from tests.conftest import empty_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def url() -> Iterator[str]:
    with empty_postgres_database("lease") as made:
        yield made


def _terminate_holder(url: str) -> None:
    """What a failover or a killed node does to the holder's session: the server ends it."""
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            ended = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())")).scalar_one()
        assert ended == 1
    finally:
        admin.dispose()


def test_one_holder_at_a_time_and_the_other_takes_over_on_release(url: str) -> None:
    first, second = AdvisoryLease(url, "maintenance"), AdvisoryLease(url, "maintenance")
    try:
        assert first.held()
        assert not second.held()
        assert first.held()  # asked again: still its own, not taken twice
        assert not second.held()
        first.release()
        assert second.held()
        assert not AdvisoryLease(url, "maintenance").held()
    finally:
        first.release()
        second.release()


def test_a_holder_whose_session_ended_loses_the_lease_to_whoever_takes_it(url: str) -> None:
    first, second = AdvisoryLease(url, "maintenance"), AdvisoryLease(url, "maintenance")
    try:
        assert first.held()
        _terminate_holder(url)
        assert second.held()  # the server dropped the lock with the session
        assert not first.held()  # and the old holder notices instead of carrying on
    finally:
        first.release()
        second.release()


def test_a_holder_whose_session_ended_takes_the_lease_again_when_it_is_free(url: str) -> None:
    lease = AdvisoryLease(url, "maintenance")
    try:
        assert lease.held()
        _terminate_holder(url)
        assert lease.held()
    finally:
        lease.release()


def test_an_unreachable_database_means_not_held_not_an_exception() -> None:
    lease = AdvisoryLease("postgresql://nobody@127.0.0.1:1/none", "maintenance")
    try:
        assert not lease.held()
    finally:
        lease.release()
