"""Group commit of audit records (jpki.group_audit): every record is durable when its call
returns, concurrent calls share transactions, the chain still verifies, a check refuses only
its own call, and a failed commit fails every call of its batch."""

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
