"""Group commit of audit records (jpki.group_audit): every record is durable when its call
returns (or, submitted without waiting, when its callback is called), concurrent calls share
transactions, the chain still verifies, a check refuses only its own call, and a failed commit
fails every call of its batch."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from jpki.errors import Conflict
from jpki.group_audit import GroupAudit

pytestmark = pytest.mark.hsm


def test_concurrent_records_share_commits_and_the_chain_verifies(services) -> None:
    group = GroupAudit(services.uow, services.audit)
    commits = []
    original = services.uow

    def counting_uow():
        uow = original()
        commit = uow.commit

        def counted() -> None:
            commits.append(1)
            commit()

        uow.commit = counted
        return uow

    group._uow = counting_uow
    gate = threading.Barrier(16)

    def call(i: int) -> int:
        gate.wait()
        group.record(actor="client:t", action="rp.status", subject=f"s{i}",
                     payload={"count": i})
        # Durable on return: a fresh unit of work sees it.
        with services.uow() as uow:
            return sum(1 for r in uow.audit.iterate() if r.subject == f"s{i}")

    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(call, range(16 * 8)))  # eight rounds of sixteen at once
    assert seen == [1] * 128
    assert len(commits) < 128  # batches were shared
    with services.uow() as uow:
        report = services.audit.verify(uow)
        subjects = sorted(r.subject for r in uow.audit.iterate())
    assert report.records == 128 and subjects == sorted(f"s{i}" for i in range(128))


def test_a_check_refuses_only_its_own_record(services) -> None:
    group = GroupAudit(services.uow, services.audit)

    def refuse(uow) -> None:
        raise Conflict("withdrawn in between")

    with pytest.raises(Conflict):
        group.record(actor="client:t", action="basic4.provided", subject="a", check=refuse)
    group.record(actor="client:t", action="basic4.provided", subject="b",
                 check=lambda uow: None)
    with services.uow() as uow:
        assert [r.subject for r in uow.audit.iterate()] == ["b"]


def test_personal_data_keys_are_refused_before_anything_is_queued(services) -> None:
    group = GroupAudit(services.uow, services.audit)
    with pytest.raises(ValueError):
        group.record(actor="client:t", action="x", subject="y", payload={"address": "z"})
    group.record(actor="client:t", action="x", subject="y")
    with services.uow() as uow:
        assert uow.audit.count() == 1


def test_a_failed_commit_fails_the_call_and_the_next_call_succeeds(services) -> None:
    group = GroupAudit(services.uow, services.audit)
    original = services.uow
    broken = [True]

    def flaky():
        uow = original()
        commit = uow.commit

        def maybe() -> None:
            if broken[0]:
                raise OSError("disk full")
            commit()

        uow.commit = maybe
        return uow

    group._uow = flaky
    with pytest.raises(OSError):
        group.record(actor="client:t", action="x", subject="lost")
    broken[0] = False
    group.record(actor="client:t", action="x", subject="kept")
    with services.uow() as uow:
        assert [r.subject for r in uow.audit.iterate()] == ["kept"]


def _durable(services, subject: str) -> bool:
    with services.uow() as uow:
        return any(r.subject == subject for r in uow.audit.iterate())


def test_submitted_records_are_durable_when_their_callback_runs_and_share_commits(
        services) -> None:
    group = GroupAudit(services.uow, services.audit)
    commits = []
    original = services.uow

    def counting_uow():
        uow = original()
        commit = uow.commit

        def counted() -> None:
            commits.append(1)
            commit()

        uow.commit = counted
        return uow

    group._uow = counting_uow
    seen: dict[str, bool] = {}
    errors: list[BaseException | None] = []
    finished = threading.Semaphore(0)
    callers = {threading.get_ident()}

    def done_for(subject: str):
        def done(error: BaseException | None) -> None:
            errors.append(error)
            callers.add(threading.get_ident())
            seen[subject] = _durable(services, subject)
            finished.release()
        return done

    for i in range(64):  # nobody waits: the group's writer thread leads every batch
        group.submit(actor="client:t", action="rp.status", subject=f"s{i}",
                     payload={"count": i}, done=done_for(f"s{i}"))
    for _ in range(64):
        assert finished.acquire(timeout=30)
    group.close()
    assert errors == [None] * 64 and all(seen.values()) and len(seen) == 64
    assert len(commits) < 64
    assert len(callers) == 2  # the callbacks ran on the writer's thread, not the submitter's
    with services.uow() as uow:
        assert services.audit.verify(uow).records == 64


def test_waiting_and_submitted_records_mix_in_one_chain(services) -> None:
    group = GroupAudit(services.uow, services.audit)
    submitted = threading.Semaphore(0)
    gate = threading.Barrier(8)

    def call(i: int) -> None:
        gate.wait()
        for j in range(8):
            if (i + j) % 2:
                group.record(actor="client:t", action="x", subject=f"w{i}.{j}")
                assert _durable(services, f"w{i}.{j}")
            else:
                group.submit(actor="client:t", action="x", subject=f"s{i}.{j}",
                             done=lambda error: submitted.release())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(8)))
    for _ in range(32):
        assert submitted.acquire(timeout=30)
    with services.uow() as uow:
        assert services.audit.verify(uow).records == 64


def test_a_submitted_check_that_refuses_reports_to_its_own_callback_alone(services) -> None:
    group = GroupAudit(services.uow, services.audit)
    results: dict[str, BaseException | None] = {}
    finished = threading.Semaphore(0)

    def done_for(subject: str):
        def done(error: BaseException | None) -> None:
            results[subject] = error
            finished.release()
        return done

    def refuse(uow) -> None:
        raise Conflict("withdrawn in between")

    group.submit(actor="client:t", action="x", subject="a", check=refuse, done=done_for("a"))
    group.submit(actor="client:t", action="x", subject="b", check=lambda uow: {"made": 1},
                 done=done_for("b"))
    for _ in range(2):
        assert finished.acquire(timeout=30)
    assert isinstance(results["a"], Conflict) and results["b"] is None
    with services.uow() as uow:
        assert [(r.subject, r.payload) for r in uow.audit.iterate()] == [("b", '{"made":1}')]
    with pytest.raises(ValueError):  # personal-data keys are refused in the caller
        group.submit(actor="client:t", action="x", subject="y", payload={"name": "z"},
                     done=done_for("never"))


def test_a_failed_commit_reports_to_every_submitted_record_and_the_next_succeeds(
        services) -> None:
    group = GroupAudit(services.uow, services.audit)
    original = services.uow
    broken = [True]

    def flaky():
        uow = original()
        commit = uow.commit

        def maybe() -> None:
            if broken[0]:
                raise OSError("disk full")
            commit()

        uow.commit = maybe
        return uow

    group._uow = flaky
    outcome: list[BaseException | None] = []
    finished = threading.Semaphore(0)

    def done(error: BaseException | None) -> None:
        outcome.append(error)
        finished.release()

    group.submit(actor="client:t", action="x", subject="lost", done=done)
    assert finished.acquire(timeout=30)
    broken[0] = False
    group.submit(actor="client:t", action="x", subject="kept", done=done)
    assert finished.acquire(timeout=30)
    assert isinstance(outcome[0], OSError) and outcome[1] is None
    with services.uow() as uow:
        assert [r.subject for r in uow.audit.iterate()] == ["kept"]


def test_the_writer_gathers_a_batch_only_in_a_stream_and_never_delays_a_lone_record(
        services) -> None:
    """Gathering (jpki.group_audit): while batches follow each other the writer waits for as many
    records as the last batch held — and stops waiting as soon as they are there; a lone record,
    or one after a pause, is never held. Bounds far from the behaviour under test (seconds, where
    the work takes microseconds), so that a slow machine cannot make it fail."""
    import time

    group = GroupAudit(services.uow, services.audit, gather_seconds=30)

    def queue(n: int) -> None:
        for _ in range(n):
            group.submit(actor="client:t", action="x", subject="s", done=lambda error: None)

    group._busy = True  # no writer: the test plays it
    group._last_size, group._last_end = 1, time.monotonic()
    queue(1)
    began = time.monotonic()
    group._gather()  # as many as the last batch: no wait
    assert time.monotonic() - began < 5
    group._last_size, group._last_end = 3, time.monotonic() - 60
    group._gather()  # not in a stream: no wait
    assert time.monotonic() - began < 5
    group._last_end = time.monotonic()
    threading.Timer(0.2, queue, args=(2,)).start()
    group._gather()  # waits for the third record, and no longer
    assert len(group._pending) == 3 and time.monotonic() - began < 5
    group._busy = False
    group._pending.clear()
