"""Client credentials kept in memory (jpki.access.kept_clients, jpki.access.clients): two service
instances on
one database stand for two server processes (or a server and the operator CLI). A change made
by the other instance reaches the serving one at its next poll (within a second); a change made
by the serving one at once; a secret rotated anywhere works at once everywhere, the replaced one
until its deadline only; a failed poll leaves the window where it was and what is kept unused; a
clock moved back forgets everything; a read racing a change keeps nothing; what is kept and what
is remembered are bounded; an unknown id costs what a wrong secret of a known one does.

Each test runs on SQLite and on PostgreSQL (the ``services`` fixture), on the real HSM.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from api.composition import Services, build_services
from jpki.access.authz import Operation, authorize
from jpki.access.clients import Authenticated, ClientService
from jpki.access.kept_clients import MAX_STALE_SECONDS, REFRESH_SECONDS, KeptClients
from jpki.access.principals import Principal
from jpki.errors import BadCredentials, ClientSuspended
from jpki.model import ClientRole, ClientStatus
from jpki.store import UnitOfWorkFactory
from tests.conftest import FixedClock, make_settings

pytestmark = pytest.mark.hsm

OPERATOR = Principal.local_operator("pytest")
CREATE_CLIENT = authorize(OPERATOR, Operation.CLIENT_CREATE)
REGISTER_RP = authorize(OPERATOR, Operation.RP_REGISTER)
ROTATE_RP_SECRET = authorize(OPERATOR, Operation.RP_ROTATE_SECRET)
SET_CLIENT_STATUS = authorize(OPERATOR, Operation.CLIENT_SET_STATUS)
SET_RP_STATUS = authorize(OPERATOR, Operation.RP_SET_STATUS)


class Ticks:
    """A monotonic clock the test moves: when a poll is due is decided here, not by sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def pass_refresh(self) -> None:
        self.t += REFRESH_SECONDS + 0.01


class Reads:
    """A unit-of-work factory that counts the units of work opened, can be made to fail, and can
    run ``hook`` once after the next one closes (between a read and its keeping)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self.opened = 0
        self.failing = False
        self.hook: Any = None

    def __call__(self) -> AbstractContextManager[Any]:
        outer = self
        if self.failing:
            raise ConnectionError("the database is down")
        self.opened += 1

        class _Wrapped:
            def __enter__(self) -> Any:
                self._uow = outer._factory()
                return self._uow.__enter__()

            def __exit__(self, *exc: Any) -> Any:
                result = self._uow.__exit__(*exc)
                hook, outer.hook = outer.hook, None
                if hook is not None:
                    hook()
                return result

        return _Wrapped()


class CountingKeys:
    """The key store, counting HMACs (the HSM calls a check makes)."""

    def __init__(self, keys: Any) -> None:
        self._keys = keys
        self.hmacs = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._keys, name)

    def hmac_sha256(self, label: str, data: bytes) -> bytes:
        self.hmacs += 1
        result: bytes = self._keys.hmac_sha256(label, data)
        return result


class Serving:
    """The serving instance's view: its kept credentials on a moved clock and counted reads."""

    def __init__(self, services: Services, **kept: Any) -> None:
        self.ticks = Ticks()
        self.reads = Reads(UnitOfWorkFactory(services.read_engine))
        self.kept = KeptClients(self.reads, services.clock, monotonic=self.ticks, **kept)
        services.clients.kept = self.kept
        self.keys = CountingKeys(services.clients.hasher._keys)
        services.clients.hasher._keys = self.keys  # type: ignore[assignment]
        self.clients = services.clients


@pytest.fixture
def other(database_url: str, tmp_path: Path, keystore: Any,
          clock: FixedClock) -> Iterator[Services]:
    """A second service instance on the same database: another worker, or the operator CLI."""
    svc = build_services(make_settings(tmp_path / "other", database_url), keys=keystore,
                         clock=clock)
    yield svc
    svc.uow.engine.dispose()
    svc.read_engine.dispose()


def new_rp(services: Services, *, parent: str | None = None) -> tuple[str, str, str]:
    """(relying party id, client id, secret) of a newly registered relying party."""
    made = services.relying_parties.register(
        REGISTER_RP, name="RP", kind="service_provider" if parent else "platform_operator",
        purposes=["test"], scopes=["status"], parent_id=parent)
    return made.relying_party.id, made.client_id, made.client_secret


def test_a_kept_client_is_decided_from_memory_without_a_read_or_an_hmac(services) -> None:
    serving = Serving(services)
    _, client_id, secret = new_rp(services)
    assert isinstance(serving.clients.check(client_id, secret), Authenticated)
    reads, hmacs = serving.reads.opened, serving.keys.hmacs
    for _ in range(5):
        verdict = serving.clients.remembered(client_id, secret)
        assert verdict is not None and verdict.principal.actor == f"client:{client_id}"
        assert isinstance(serving.clients.check(client_id, secret), Authenticated)
    assert (serving.reads.opened, serving.keys.hmacs) == (reads, hmacs)
    # Memory never decides a wrong secret: that goes to the check, which reads and budgets it.
    assert serving.clients.remembered(client_id, "wrong" * 9) is None


def test_a_suspension_by_another_instance_is_in_every_answer_after_one_poll(
        services, other) -> None:
    serving = Serving(services)
    rp_id, client_id, secret = new_rp(services)
    serving.clients.check(client_id, secret)
    other.relying_parties.set_status(SET_RP_STATUS, rp_id, ClientStatus.SUSPENDED)
    # Until the next poll (at most REFRESH_SECONDS away) this process still answers from memory:
    # the documented window, which never exceeds MAX_STALE_SECONDS.
    assert serving.clients.remembered(client_id, secret) is not None
    serving.ticks.pass_refresh()
    with pytest.raises(ClientSuspended):
        serving.clients.check(client_id, secret)
    with pytest.raises(ClientSuspended):  # kept as read again: suspended
        serving.clients.remembered(client_id, secret)
    other.relying_parties.set_status(SET_RP_STATUS, rp_id, ClientStatus.ACTIVE)
    serving.ticks.pass_refresh()
    assert isinstance(serving.clients.check(client_id, secret), Authenticated)


def test_a_platform_operators_suspension_elsewhere_takes_its_providers_along(
        services, other) -> None:
    serving = Serving(services)
    pf, pf_client, pf_secret = new_rp(services)
    _, sp_client, sp_secret = new_rp(services, parent=pf)
    for client_id, secret in ((pf_client, pf_secret), (sp_client, sp_secret)):
        serving.clients.check(client_id, secret)
    other.relying_parties.set_status(SET_RP_STATUS, pf, ClientStatus.SUSPENDED)
    serving.ticks.pass_refresh()
    serving.clients.kept.refresh()
    # The provider's own row did not change: its standing did, through its platform operator.
    assert serving.clients.remembered(sp_client, sp_secret) is None
    verdict = serving.clients.check(sp_client, sp_secret)
    assert isinstance(verdict, Authenticated) and verdict.standing is not None
    assert verdict.standing.parent_status is ClientStatus.SUSPENDED


def test_a_suspension_made_by_this_instance_refuses_at_once(services) -> None:
    serving = Serving(services)
    rp_id, client_id, secret = new_rp(services)
    operator = services.clients.create(CREATE_CLIENT, name="ops", role=ClientRole.OPERATOR)
    for cid, sec in ((client_id, secret), (operator.client.client_id, operator.client_secret)):
        serving.clients.check(cid, sec)
    services.relying_parties.set_status(SET_RP_STATUS, rp_id, ClientStatus.SUSPENDED)
    services.clients.set_status(SET_CLIENT_STATUS, operator.client.client_id,
                                ClientStatus.SUSPENDED)
    for cid, sec in ((client_id, secret), (operator.client.client_id, operator.client_secret)):
        assert serving.clients.remembered(cid, sec) is None  # no poll happened
        with pytest.raises(ClientSuspended):
            serving.clients.check(cid, sec)


def test_a_secret_rotated_elsewhere_works_at_once_and_the_old_one_until_its_deadline(
        services, other, clock) -> None:
    serving = Serving(services)
    rp_id, client_id, old = new_rp(services)
    serving.clients.check(client_id, old)
    rotated = other.relying_parties.rotate_secret(ROTATE_RP_SECRET, rp_id,
                                                  overlap=timedelta(hours=1))
    # No poll yet: the new secret matches nothing kept, so the row is read again.
    assert isinstance(serving.clients.check(client_id, rotated.client_secret), Authenticated)
    assert isinstance(serving.clients.check(client_id, old), Authenticated)
    clock.advance(hours=1, seconds=1)
    # Remembered as verified, kept, and no poll since: the deadline refuses it all the same.
    assert serving.clients.remembered(client_id, old) is None
    with pytest.raises(BadCredentials):
        serving.clients.check(client_id, old)
    assert isinstance(serving.clients.check(client_id, rotated.client_secret), Authenticated)


def test_a_rotation_without_overlap_elsewhere_refuses_the_old_secret_after_one_poll(
        services, other) -> None:
    serving = Serving(services)
    rp_id, client_id, old = new_rp(services)
    serving.clients.check(client_id, old)
    rotated = other.relying_parties.rotate_secret(ROTATE_RP_SECRET, rp_id, overlap=timedelta(0))
    assert isinstance(serving.clients.check(client_id, rotated.client_secret), Authenticated)
    serving.ticks.pass_refresh()
    with pytest.raises(BadCredentials):
        serving.clients.check(client_id, old)
    # Made here, it refuses at once.
    again = services.relying_parties.rotate_secret(ROTATE_RP_SECRET, rp_id, overlap=timedelta(0))
    with pytest.raises(BadCredentials):
        serving.clients.check(client_id, rotated.client_secret)
    assert isinstance(serving.clients.check(client_id, again.client_secret), Authenticated)


def test_a_failed_poll_leaves_the_window_and_what_is_kept_goes_unused(
        services, other, clock) -> None:
    serving = Serving(services)
    rp_id, client_id, secret = new_rp(services)
    serving.clients.check(client_id, secret)  # polled at the clock's instant, and kept
    serving.reads.failing = True
    clock.advance(seconds=2)
    other.relying_parties.set_status(SET_RP_STATUS, rp_id, ClientStatus.SUSPENDED)  # stamped now
    clock.advance(seconds=10)
    serving.ticks.pass_refresh()
    with pytest.raises(ConnectionError):
        serving.kept.poll()
    serving.kept.refresh()  # the calls' own poll: logged, not raised
    # Older than the bound and no poll since: memory decides nothing.
    serving.ticks.t += MAX_STALE_SECONDS
    assert serving.clients.remembered(client_id, secret) is None
    serving.reads.failing = False
    # Had the failed poll moved the window to its instant, this one would read from 5 s before
    # it and miss the suspension stamped 10 s earlier.
    assert serving.kept.poll() >= 1
    with pytest.raises(ClientSuspended):
        serving.clients.check(client_id, secret)


def test_a_clock_moved_back_forgets_everything_kept(services, clock) -> None:
    serving = Serving(services)
    _, client_id, secret = new_rp(services)
    clock.advance(hours=1)  # nothing changed since: no poll from now on reports the client
    serving.clients.check(client_id, secret)
    serving.ticks.pass_refresh()
    serving.kept.refresh()
    assert len(serving.kept) == 1
    clock.advance(minutes=-10)
    serving.ticks.pass_refresh()
    serving.kept.refresh()
    assert len(serving.kept) == 0
    assert serving.clients.remembered(client_id, secret) is None


def test_a_read_racing_a_change_keeps_nothing(services, other) -> None:
    serving = Serving(services)
    rp_id, client_id, secret = new_rp(services)
    serving.kept.refresh()  # the first poll, so that the read below is not preceded by one

    def change_and_poll() -> None:
        other.relying_parties.set_status(SET_RP_STATUS, rp_id, ClientStatus.SUSPENDED)
        serving.ticks.pass_refresh()
        serving.kept.poll()

    serving.reads.hook = change_and_poll  # after the read, before it is kept
    assert serving.kept.read(client_id) is not None
    assert len(serving.kept) == 0
    serving.ticks.t += 0.01
    with pytest.raises(ClientSuspended):
        serving.clients.check(client_id, secret)


def test_what_is_kept_and_what_is_remembered_are_bounded(services) -> None:
    serving = Serving(services, size=4)
    services.clients._verified_clients = 3
    made = [new_rp(services) for _ in range(8)]
    for _, client_id, secret in made:
        serving.clients.check(client_id, secret)
    assert len(serving.kept) <= 4
    assert services.clients.remembered_count() <= 3
    # Forgotten is not refused: checked again, in the HSM.
    hmacs = serving.keys.hmacs
    assert isinstance(serving.clients.check(made[0][1], made[0][2]), Authenticated)
    assert serving.keys.hmacs == hmacs + 1


def test_an_unknown_id_costs_what_a_wrong_secret_of_a_known_one_does(services) -> None:
    serving = Serving(services)
    _, known, secret = new_rp(services)
    _, unkept, _ = new_rp(services)
    serving.clients.check(known, secret)  # kept, and its secret remembered
    costs = {}
    for name, client_id in (("unknown", "jpki_" + "0" * 24), ("kept", known),
                            ("not kept", unkept)):
        reads, hmacs = serving.reads.opened, serving.keys.hmacs
        with pytest.raises(BadCredentials):
            serving.clients.check(client_id, "wrong" * 9)
        costs[name] = (serving.reads.opened - reads, serving.keys.hmacs - hmacs)
    assert costs == {"unknown": (1, 1), "kept": (1, 1), "not kept": (1, 1)}


def test_every_change_of_a_client_or_a_relying_party_is_reported_by_the_feed(
        services, clock) -> None:
    """The feed is what other processes see: each writer stamps what it changes."""
    rp_id, client_id, _ = new_rp(services)
    station = services.clients.create(CREATE_CLIENT, name="desk", role=ClientRole.STATION)
    clock.advance(minutes=1)
    since = clock.now()

    def reported() -> tuple[frozenset[str], frozenset[str]]:
        with services.uow() as uow:
            changes = uow.clients.changes_since(since)
        return changes.clients, changes.relying_parties

    assert reported() == (frozenset(), frozenset())
    services.relying_parties.rotate_secret(ROTATE_RP_SECRET, rp_id)
    assert reported() == ({client_id}, frozenset())
    clock.advance(minutes=1)
    since = clock.now()
    services.relying_parties.set_status(SET_RP_STATUS, rp_id, ClientStatus.SUSPENDED)
    assert reported() == ({client_id}, {rp_id})
    clock.advance(minutes=1)
    since = clock.now()
    services.clients.set_status(SET_CLIENT_STATUS, station.client.client_id, ClientStatus.SUSPENDED)
    assert reported() == ({station.client.client_id}, frozenset())


def test_a_service_built_without_a_kept_table_gets_one(services) -> None:
    clients = ClientService(services.uow, services.clock, services.audit,
                            services.clients.hasher)
    _, client_id, secret = new_rp(services)
    assert isinstance(clients.check(client_id, secret), Authenticated)
    assert clients.remembered(client_id, secret) is not None
