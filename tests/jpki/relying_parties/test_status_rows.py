"""The relying-party status lookup's kept rows (jpki.relying_parties.status_lookup.StatusRows): a
kept row is
answered from memory until the next poll, which corrects it from the store's status changes; a
fill that raced a poll reporting its serial keeps nothing; unknown serials are never kept; a
clock moved back forgets everything; the number of kept rows is bounded."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.model import RevocationReason
from jpki.relying_parties.status_lookup import REFRESH_SECONDS, StatusRows
from tests.holder_kit import new_holder

pytestmark = pytest.mark.hsm

OPERATOR = Principal(actor="client:op", kind=PrincipalKind.OPERATOR)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)
UNISSUED = "7fffffffffffffff0003"


@pytest.fixture(scope="module")
def key_pool() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(8)]


class Ticks:
    """A monotonic clock the test moves: when a poll is due is decided here, not by sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def pass_refresh(self) -> None:
        self.t += REFRESH_SECONDS + 0.01


class AfterRead:
    """A unit-of-work factory that runs ``hook`` once, after the next unit of work closes: the
    moment between a fill's read and its keeping, where a concurrent change can land."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self.hook: Any = None

    def __call__(self) -> AbstractContextManager[Any]:
        outer = self

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


def statuses(rows: StatusRows, services, serials: list[str]) -> list[tuple[str, str | None]]:
    return [(r.status, r.reason) for r in rows.answers(serials, services.clock.now())]


def test_a_kept_row_is_corrected_by_the_next_poll(services, key_pool) -> None:
    holder = new_holder(services, list(key_pool))
    ticks = Ticks()
    rows = StatusRows(services.uow, services.clock, monotonic=ticks)
    serial = holder.serial()
    assert statuses(rows, services, [serial]) == [("good", None)]
    assert len(rows) == 1

    services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE)
    # Before the poll is due the kept row answers (this is what the cache is for) ...
    assert statuses(rows, services, [serial]) == [("good", None)]
    # ... and the first call after it is due polls and answers the change.
    ticks.pass_refresh()
    assert statuses(rows, services, [serial]) == [("revoked", "keyCompromise")]
    assert len(rows) == 1


def test_an_explicit_poll_reports_the_changed_rows(services, key_pool) -> None:
    holder = new_holder(services, list(key_pool))
    rows = StatusRows(services.uow, services.clock, monotonic=Ticks())
    serial = holder.serial()
    rows.answers([serial], services.clock.now())
    services.revocation.revoke(REVOKE, serial, RevocationReason.AFFILIATION_CHANGED)
    assert rows.poll() >= 1
    assert statuses(rows, services, [serial]) == [("revoked", "affiliationChanged")]


def test_unknown_serials_are_never_kept(services, key_pool) -> None:
    new_holder(services, list(key_pool))
    rows = StatusRows(services.uow, services.clock, monotonic=Ticks())
    assert statuses(rows, services, [UNISSUED]) == [("unknown", None)]
    assert len(rows) == 0


def test_a_fill_that_raced_a_poll_reporting_its_serial_keeps_nothing(services,
                                                                     key_pool) -> None:
    holder = new_holder(services, list(key_pool))
    serial = holder.serial()
    ticks = Ticks()
    factory = AfterRead(services.uow)
    rows = StatusRows(factory, services.clock, monotonic=ticks)
    rows.poll()  # the first poll: a watermark to look back from

    def revoke_and_poll() -> None:
        services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE)
        rows.poll()

    factory.hook = revoke_and_poll
    # The call read the row before the revocation committed: its answer is that row's ...
    assert statuses(rows, services, [serial]) == [("good", None)]
    # ... but the row is not kept, so the next call reads the revocation (no poll is due).
    assert len(rows) == 0
    assert statuses(rows, services, [serial]) == [("revoked", "keyCompromise")]
    assert len(rows) == 1


def test_a_clock_moved_back_forgets_every_row(services, key_pool) -> None:
    holder = new_holder(services, list(key_pool))
    rows = StatusRows(services.uow, services.clock, monotonic=Ticks())
    rows.poll()
    rows.answers([holder.serial()], services.clock.now())
    assert len(rows) == 1
    services.clock.advance(seconds=-10)
    rows.poll()
    assert len(rows) == 0


def test_the_kept_rows_are_bounded(services, key_pool) -> None:
    pool = list(key_pool)
    holders = [new_holder(services, pool) for _ in range(3)]
    serials = [h.serial(kind) for h in holders for kind in h.certs]
    assert len(serials) == 6
    rows = StatusRows(services.uow, services.clock, size=4, monotonic=Ticks())
    for serial in serials:
        rows.answers([serial], services.clock.now())
        assert len(rows) <= 4
    # The newest is kept; the answer for an evicted one is still read, and right.
    assert statuses(rows, services, serials) == [("good", None)] * 6


def test_a_call_after_the_stale_bound_waits_for_the_poll(services, key_pool) -> None:
    """A change is in every answer a second after it: a call that finds the last poll older
    than that polls itself (here, no other poll is running), whatever it kept."""
    holder = new_holder(services, list(key_pool))
    ticks = Ticks()
    rows = StatusRows(services.uow, services.clock, monotonic=ticks)
    serial = holder.serial()
    rows.answers([serial], services.clock.now())
    services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE)
    services.clock.advance(seconds=1)
    ticks.t += 1.0
    assert statuses(rows, services, [serial]) == [("revoked", "keyCompromise")]


def test_a_poll_looks_back_a_second(services, key_pool) -> None:
    """A change recorded with an instant just before the last poll's (a writer whose commit
    landed after that poll) is still found by the next one."""
    holder = new_holder(services, list(key_pool))
    ticks = Ticks()
    rows = StatusRows(services.uow, services.clock, monotonic=ticks)
    serial = holder.serial()
    rows.answers([serial], services.clock.now())
    rows.poll()
    # Recorded "half a second ago" relative to the poll's watermark.
    services.clock.advance(seconds=-0.5)
    services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE)
    services.clock.advance(seconds=0.5)
    ticks.pass_refresh()
    assert statuses(rows, services, [serial]) == [("revoked", "keyCompromise")]


def test_memory_answers_only_kept_rows_and_only_after_a_recent_poll(services, key_pool) -> None:
    """What the event loop answers without the store (StatusRows.from_memory): kept rows while
    the last poll is within the stale bound; anything else is None (the caller reads)."""
    holder = new_holder(services, list(key_pool))
    ticks = Ticks()
    rows = StatusRows(services.uow, services.clock, monotonic=ticks)
    serial, now = holder.serial(), services.clock.now()
    assert rows.from_memory([serial], now) is None  # never polled
    rows.answers([serial], now)
    assert [r.status for r in rows.from_memory([serial], now) or []] == ["good"]
    assert rows.from_memory([serial, UNISSUED], now) is None  # not kept
    services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE)
    # Due: claimed once, and answered from memory meanwhile (within the stale bound).
    ticks.pass_refresh()
    assert rows.claim_poll() and not rows.claim_poll()
    assert [r.status for r in rows.from_memory([serial], now) or []] == ["good"]
    rows.run_claimed_poll()
    assert [r.status for r in rows.from_memory([serial], now) or []] == ["revoked"]
    ticks.t += 1.0  # the stale bound passed without a poll: memory decides nothing
    assert rows.from_memory([serial], now) is None


def test_a_status_call_answered_from_memory_is_audited_before_it_may_leave(
        services, key_pool) -> None:
    import threading

    from tests.jpki.relying_parties.test_relying_party_services import rp_context

    holder = new_holder(services, list(key_pool))
    ctx, _ = rp_context(services)
    lookup = services.status_lookup
    serials = [holder.serial(kind) for kind in holder.certs]
    outcome: list[BaseException | None] = []
    audited: list[int] = []  # status records durable when the callback ran
    committed = threading.Event()

    def done(error: BaseException | None) -> None:
        with services.uow() as uow:
            audited.append(sum(r.action == "rp.status" for r in uow.audit.iterate()))
        outcome.append(error)
        committed.set()

    assert lookup.lookup_from_memory(ctx, "test", serials, done) is None  # nothing kept yet
    first = lookup.lookup(ctx, "test", serials)  # reads and keeps them (and is audited)
    answer = lookup.lookup_from_memory(ctx, "test", serials, done)
    assert answer is not None and answer.results == first.results
    assert committed.wait(30)
    assert outcome == [None] and audited == [2]


def test_a_batch_is_canonicalised_alike_on_the_fast_path_and_serial_by_serial() -> None:
    """canonical_serials checks a batch of canonical serials with one match over its lines; a
    batch that is not all canonical text goes serial by serial, as before: the same answer, the
    same refusal at the same index — a serial holding a line feed of its own included."""
    from jpki.errors import InvalidSerial
    from jpki.relying_parties.status_lookup import canonical_serials

    assert canonical_serials(["1a", "ff00", "7"]) == ["1a", "ff00", "7"]
    assert canonical_serials(["1a", "0FF00", "7"]) == ["1a", "ff00", "7"]
    for batch, index in ((["1a", "ff\n00"], 1), (["1a\n2b"], 0), (["1a", "ff", "zz"], 2),
                         (["1a", None], 1), (["1a\n"], 0), ([""], 0)):
        with pytest.raises(InvalidSerial) as refused:
            canonical_serials(batch)  # type: ignore[arg-type]
        assert refused.value.context["index"] == index, batch
