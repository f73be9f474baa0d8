"""Audit records name the request that caused them (jpki.correlation, jpki.audit): the chain's MAC
covers the request id when a record has one, records without one keep the content they always
had (so chains written before still verify), and the telemetry port hears of records only once
they are committed."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from jpki.audit import canonical_content
from jpki.correlation import acceptable, bound, current_request_id
from jpki.errors import AuditChainBroken
from jpki.group_audit import GroupAudit
from jpki.model import AuditRecord, CrlPublication

pytestmark = pytest.mark.hsm


def _record(services, action: str, request_id: str | None) -> None:
    with bound(request_id), services.uow() as uow:
        services.audit.record(uow, actor="client:t", action=action, subject="s")
        uow.commit()


def _records(services) -> list[AuditRecord]:
    with services.uow() as uow:
        return list(uow.audit.iterate())


def _verify(services) -> None:
    with services.uow() as uow:
        services.audit.verify(uow)


def test_the_content_of_a_record_without_a_request_id_is_the_old_one() -> None:
    """Byte for byte what the chain's MAC covered before request ids existed."""
    old = json.dumps([7, "2026-11-27T01:00:00+00:00", "cli:x", "a.b", "s", "{}"],
                     ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert canonical_content(7, "2026-11-27T01:00:00+00:00", "cli:x", "a.b", "s", "{}") == old
    with_id = canonical_content(7, "2026-11-27T01:00:00+00:00", "cli:x", "a.b", "s", "{}", "r1")
    assert with_id != old and json.loads(with_id)[-1] == "r1"


def test_records_carry_the_bound_request_id_and_the_chain_verifies(services) -> None:
    _record(services, "before.ids", None)
    _record(services, "with.id", "req-1")
    _record(services, "after.ids", None)
    records = _records(services)
    assert [(r.action, r.request_id) for r in records] == [
        ("before.ids", None), ("with.id", "req-1"), ("after.ids", None)]
    _verify(services)
    assert current_request_id() is None  # unbound again after the block


@pytest.mark.parametrize("change", [
    "UPDATE audit_log SET request_id = 'req-2' WHERE seq = 2",   # changed
    "UPDATE audit_log SET request_id = NULL WHERE seq = 2",      # removed
    "UPDATE audit_log SET request_id = 'req-3' WHERE seq = 1",   # added to an old record
])
def test_changing_removing_or_adding_a_request_id_breaks_the_chain(services, change) -> None:
    _record(services, "old.record", None)
    _record(services, "new.record", "req-1")
    _verify(services)
    with services.uow.engine.begin() as conn:
        conn.execute(text(change))
    with pytest.raises(AuditChainBroken, match="altered"):
        _verify(services)


def test_group_commits_keep_each_callers_request_id(services) -> None:
    """The leader stages everyone's records in its own thread: each keeps its caller's id."""
    group = GroupAudit(services.uow, services.audit)
    gate = threading.Barrier(8)

    def call(i: int) -> None:
        with bound(f"req-{i}"):
            gate.wait()
            group.record(actor="client:t", action="rp.status", subject=f"s{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(32)))
    records = _records(services)
    assert len(records) == 32
    assert all(r.request_id == f"req-{r.subject[1:]}" for r in records), \
        [(r.subject, r.request_id) for r in records]
    _verify(services)


def test_request_ids_are_bounded_and_of_a_safe_alphabet() -> None:
    for good in ("a", "0f" * 16, "req-1.2:3_x", "A" * 64):
        assert acceptable(good), good
    for bad in (None, "", "-leading", "A" * 65, "a b", "a/b", "瀬戸内", "a\nb", "a%20b", "a;b"):
        assert not acceptable(bad), bad


class _Heard:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def audited(self, records: Sequence[AuditRecord]) -> None:
        self.records += records

    def crl_published(self, ca: str, generation: int, publication: CrlPublication,
                      seconds: float) -> None:
        return None


class _Broken(_Heard):
    def audited(self, records: Sequence[AuditRecord]) -> None:
        raise RuntimeError("a metrics backend fell over")


def test_telemetry_hears_committed_records_only(services) -> None:
    heard = _Heard()
    services.audit.telemetry = heard
    with services.uow() as uow:  # rolled back: nothing to hear
        services.audit.record(uow, actor="client:t", action="rolled.back", subject="s")
    with services.uow() as uow:
        services.audit.record(uow, actor="client:t", action="one", subject="s")
        services.audit.record(uow, actor="client:t", action="two", subject="s")
        assert heard.records == []  # not before the commit
        uow.commit()
    assert [r.action for r in heard.records] == ["one", "two"]
    assert [r.seq for r in heard.records] == [1, 2]


def test_a_failing_observer_does_not_fail_a_committed_change(services) -> None:
    services.audit.telemetry = _Broken()
    _record(services, "still.committed", "req-9")
    assert [r.action for r in _records(services)] == ["still.committed"]
