"""The group commit's lean chain writer (jpki.store.audit_writer), on SQLite and PostgreSQL: its
records continue the chain the unit of work writes and the other way round, indistinguishable
to ``jpki audit verify``; it serialises with every other writer of the chain (this process's
units of work, and another engine as another process would be); a batch that fails leaves
nothing behind, fails every call waiting on it, and the next batch succeeds on a fresh
connection; a standing consent read on its connection is the one the unit of work reads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from jpki.group_audit import GroupAudit
from jpki.store import UnitOfWorkFactory, create_store_engine
from jpki.store.audit_writer import SqlAuditWriter, _Batch

pytestmark = pytest.mark.hsm


def _uow_record(services, subject: str) -> None:
    """A record written the ordinary way: staged in a unit of work, appended at its commit."""
    with services.uow() as uow:
        services.audit.record(uow, actor="cli:t", action="test.uow", subject=subject,
                              payload={"n": 1})
        uow.commit()


def _records(services):
    with services.uow() as uow:
        return list(uow.audit.iterate())


def test_the_lean_writer_and_the_unit_of_work_write_one_chain(services) -> None:
    group = services.audit_group
    assert isinstance(services.audit_writer, SqlAuditWriter)
    for i in range(6):
        _uow_record(services, f"u{i}")
        group.record(actor="client:t", action="rp.status", subject=f"g{i}",
                     payload={"count": i, "purpose": "kyc"})
        group.record(actor="client:t", action="rp.status", subject=f"h{i}")
    records = _records(services)
    assert [r.subject for r in records] == [s for i in range(6)
                                            for s in (f"u{i}", f"g{i}", f"h{i}")]
    with services.uow() as uow:
        report = services.audit.verify(uow)
    assert report.records == report.head_seq == 18 and report.head_mac == records[-1].mac
    if services.uow.engine.dialect.name == "sqlite":
        # The time column is stored as the unit of work stores it (the column type's own
        # conversion), not merely something that reads back the same.
        with services.uow.engine.connect() as conn:
            stored = conn.execute(text("SELECT subject, at FROM audit_log")).all()
        shapes = {len(at) for _, at in stored}
        assert len(shapes) == 1 and all(at[10] == " " for _, at in stored)


def test_a_failed_commit_leaves_nothing_and_fails_every_waiting_call(
        services, monkeypatch: pytest.MonkeyPatch) -> None:
    group = services.audit_group
    group.record(actor="client:t", action="x", subject="before")
    head = _records(services)[-1]
    failing = [True]
    commit = _Batch.commit

    def maybe(self: _Batch) -> None:
        if failing[0]:
            raise OSError("disk full")  # after the INSERT and the head UPDATE
        commit(self)

    monkeypatch.setattr(_Batch, "commit", maybe)
    outcomes: list[BaseException | None] = []
    finished = threading.Semaphore(0)

    def done(error: BaseException | None) -> None:
        outcomes.append(error)
        finished.release()

    # Held back until all five are queued, so that they share one batch.
    group._busy = True
    for i in range(5):
        group.submit(actor="client:t", action="x", subject=f"lost{i}", done=done)
    group._busy = False
    group._start_writer()
    for _ in range(5):
        assert finished.acquire(timeout=30)
    assert len(outcomes) == 5 and all(isinstance(e, OSError) for e in outcomes)
    with pytest.raises(OSError):
        group.record(actor="client:t", action="x", subject="lost-too")
    records = _records(services)
    # Nothing partial: the chain still ends at the record before, and so does the head.
    assert (records[-1].seq, records[-1].mac) == (head.seq, head.mac)
    assert len(records) == head.seq
    with services.uow() as uow:
        assert uow.audit.head() == (head.seq, head.mac)
    failing[0] = False
    group.record(actor="client:t", action="x", subject="after")
    _uow_record(services, "then")
    with services.uow() as uow:
        assert services.audit.verify(uow).records == head.seq + 2
    assert [r.subject for r in _records(services)][-2:] == ["after", "then"]


def test_a_broken_connection_fails_its_batch_and_the_next_takes_another(services) -> None:
    group = services.audit_group
    writer = services.audit_writer
    group.record(actor="client:t", action="x", subject="first")
    conn = writer._conn
    assert conn is not None
    conn.connection.dbapi_connection.close()  # the server went away, say
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        group.record(actor="client:t", action="x", subject="lost")
    group.record(actor="client:t", action="x", subject="second")
    assert writer._conn is not conn
    assert [r.subject for r in _records(services)] == ["first", "second"]
    with services.uow() as uow:
        assert services.audit.verify(uow).records == 2


def test_concurrent_writers_of_the_chain_serialise(services) -> None:
    """The lean writer, units of work of this process, and a second engine with its own lean
    writer — another process's, as far as the database can tell — all at once."""
    other_engine = create_store_engine(str(services.uow.engine.url.render_as_string(
        hide_password=False)))
    other_writer = SqlAuditWriter(other_engine)
    other = GroupAudit(UnitOfWorkFactory(other_engine), services.audit, batches=other_writer)
    gate = threading.Barrier(12)

    def call(i: int) -> None:
        gate.wait()
        for j in range(6):
            kind = (i + j) % 3
            if kind == 0:
                services.audit_group.record(actor="client:t", action="x", subject=f"a{i}.{j}")
            elif kind == 1:
                other.record(actor="client:t", action="x", subject=f"b{i}.{j}")
            else:
                _uow_record(services, f"c{i}.{j}")

    try:
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(call, range(12)))
    finally:
        other.close()
        other_writer.close()
        other_engine.dispose()
    records = _records(services)
    assert len(records) == 72 and len({r.subject for r in records}) == 72
    with services.uow() as uow:
        assert services.audit.verify(uow).records == 72


@pytest.fixture(scope="module")
def key_pool() -> list:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return [rsa.generate_private_key(65537, 2048) for _ in range(4)]


def test_a_standing_consent_reads_the_same_on_the_writers_connection(services, key_pool) -> None:
    """consents.standing as the unit of work reads it (SQLAlchemy) and as the lean batch reads
    it (the compiled statement on the driver's cursor): the same consent, field for field —
    times, enums, the successor flag, withdrawn or not; an unknown id is None in both."""
    from jpki.access.authz import Operation, authorize
    from jpki.access.principals import Principal
    from tests.holder_kit import consent_statement, new_holder

    new = services.relying_parties.register(
        authorize(Principal.local_operator("pytest"), Operation.RP_REGISTER), name="RP",
        kind="platform_operator", purposes=["test"], scopes=["basic4"])
    ctx = services.relying_parties.admit(
        services.clients.authenticate(new.client_id, new.client_secret), Operation.RP_BASIC4)
    holder = new_holder(services, list(key_pool))
    consent_id = services.latest_basic4.provide(
        ctx, "test", consent=holder.sign(consent_statement(ctx.rp_id, services.clock.now()))
    ).consent_id

    def both(cid: str):
        with services.uow() as uow:
            expected = uow.consents.standing(cid)
        with services.audit_writer() as batch:
            got = (batch.consents.standing(cid, for_update=True),
                   batch.consents.standing(cid))
        return expected, got

    expected, got = both(consent_id)
    assert expected is not None and expected.withdrawn_at is None
    assert got == (expected, expected)
    assert (expected.name, expected.address) == (got[0].name, got[0].address)  # repr=False
    assert both("cs_" + "0" * 24) == (None, (None, None))
    with services.audit_writer() as batch:
        assert batch.certificates.get(expected.signer.id).serial == expected.signer.serial
        assert batch.certificates.issued_successor_of(expected.signer.id) is None
