"""Alembic migrations: upgrade to head equals the models, every revision downgrades cleanly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from jpki.audit import GENESIS_MAC
from jpki.store import create_store_engine
from jpki.store.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade
from jpki.store.tables import include_for, metadata
from tests.conftest import empty_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    with empty_postgres_database("migrate") as url:
        yield url


def test_upgrade_matches_the_models_and_downgrade_removes_everything(empty_database):
    engine = create_store_engine(empty_database)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True,
                             "include_object": include_for(conn.dialect.name)}), metadata)
            assert diff == [], diff
            head = conn.execute(text("SELECT seq, mac FROM audit_head")).one()
            assert tuple(head) == (0, GENESIS_MAC)
        upgrade(engine)  # idempotent
        downgrade(engine, "base")
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        upgrade(engine)
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_every_revision_has_a_downgrade():
    script = ScriptDirectory.from_config(alembic_config())
    for revision in script.walk_revisions():
        source = Path(revision.path).read_text()
        body = source.split("def downgrade() -> None:", 1)[1]
        assert body.strip() not in ("pass", ""), revision.revision


@pytest.mark.hsm
def test_an_audit_chain_written_before_request_ids_verifies_after_the_upgrade(
        empty_database, keystore, ca_material) -> None:
    """Migration 0008 adds audit_log.request_id; records written before it (whose MAC covers six
    fields) still verify, and new records with a request id chain onto them."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, update

    from jpki.audit import AuditLog
    from jpki.authority.recipe import load_recipe
    from jpki.correlation import bound
    from jpki.store import UnitOfWorkFactory
    from jpki.store.tables import audit_head, audit_log
    from tests.conftest import FixedClock

    label = load_recipe(None).audit_key_label
    at = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    engine = create_store_engine(empty_database)
    try:
        upgrade(engine, "0006")
        prev = GENESIS_MAC
        with engine.begin() as conn:
            for seq in (1, 2, 3):
                # The content as the chain defined it before request ids, spelt out here.
                content = json.dumps([seq, at.isoformat(), "cli:old", "old.action", f"s{seq}",
                                      "{}"], ensure_ascii=False,
                                     separators=(",", ":")).encode("utf-8")
                mac = keystore.hmac_sha256(label, prev.encode("ascii") + b"\n" + content).hex()
                conn.execute(insert(audit_log).values(
                    seq=seq, at=at, actor="cli:old", action="old.action", subject=f"s{seq}",
                    payload="{}", prev_mac=prev, mac=mac))
                prev = mac
            conn.execute(update(audit_head).values(seq=3, mac=prev))
        upgrade(engine)
        uows = UnitOfWorkFactory(engine)
        audit = AuditLog(keystore, label, FixedClock(at))
        with uows() as uow:
            assert audit.verify(uow).records == 3
        with bound("req-after-upgrade"), uows() as uow:
            audit.record(uow, actor="client:new", action="new.action", subject="s4")
            uow.commit()
        with uows() as uow:
            assert audit.verify(uow).records == 4
            assert [r.request_id for r in uow.audit.iterate()] == [None, None, None,
                                                                   "req-after-upgrade"]
    finally:
        engine.dispose()


def test_clients_stored_before_the_change_feed_take_their_creation_time(empty_database) -> None:
    """Migration 0011 adds api_clients.changed_at (the feed of jpki.access.kept_clients): rows
    written
    before it get their creation time, and it comes off again on downgrade."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, select

    from jpki.store.tables import api_clients

    created = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    engine = create_store_engine(empty_database)
    try:
        upgrade(engine, "0010")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO api_clients (client_id, name, role, scopes, secret_hash, status, "
                "created_at) VALUES ('jpki_" + "1" * 24 + "', 'old', 'operator', '', "
                "'hmac-sha256$k$00', 'active', :at)"), {"at": created.replace(tzinfo=None)})
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(select(api_clients.c.changed_at)).scalar_one() == created
            conn.execute(insert(api_clients).values(
                client_id="jpki_" + "2" * 24, name="new", role="operator", scopes="",
                secret_hash="hmac-sha256$k$00", status="active", created_at=created,
                changed_at=created))
        downgrade(engine, "0010")
        assert "changed_at" not in {c["name"] for c in inspect(engine).get_columns("api_clients")}
    finally:
        engine.dispose()


def test_the_registry_migration_keeps_every_municipality_and_its_crl_name(empty_database) -> None:
    """Migration 0020 (the municipality registry, architecture §5.6): the rows of 0019 keep their
    code, name and romaji byte for byte; each gets one shard named by its code whose
    distribution-point romaji is what certificates issued before carry; the newest CRL times of
    each scope are taken from the publications; and it all comes off again on downgrade."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from jpki.municipalities import load_seed
    from jpki.store.tables import crl_numbers, crl_shards, municipalities

    at = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    engine = create_store_engine(empty_database)
    try:
        upgrade(engine, "0019")
        seed = load_seed()
        with engine.begin() as conn:
            # As 0019 knew them, written with the statements of the time.
            for m in seed:
                conn.execute(text("INSERT INTO municipalities (code, name_ja, name_romaji) "
                                  "VALUES (:c, :j, :r)"),
                             {"c": m.code, "j": m.name_ja, "r": m.name_romaji})
            before = [tuple(r) for r in conn.execute(text(
                "SELECT code, name_ja, name_romaji FROM municipalities ORDER BY code"))]
            conn.execute(text(
                "INSERT INTO ca_generations (id, ca, generation, key_label, certificate_der, "
                "subject_key_id, not_before, not_after, created_at) VALUES (1, 'sign', 1, "
                "'sign-ca-g01', :der, :ski, :at, :at, :at)"),
                {"der": b"\x30\x00", "ski": b"\x01", "at": at.replace(tzinfo=None)})
            conn.execute(text("INSERT INTO crl_numbers (ca_generation_id, scope, last_number) "
                              "VALUES (1, '132217', 3), (1, 'arl', 1)"))
            for number, kind, hour in ((1, "full", 0), (2, "delta", 1), (3, "delta", 2)):
                conn.execute(text(
                    "INSERT INTO crl_publications (ca_generation_id, scope, kind, number, "
                    "this_update, next_update, entries, size, sha256, path, created_at) VALUES "
                    "(1, '132217', :kind, :n, :t, :t, 0, 0, '', '', :t)"),
                    {"kind": kind, "n": number,
                     "t": at.replace(tzinfo=None, hour=hour)})
        upgrade(engine)
        with engine.begin() as conn:
            after = [tuple(r) for r in conn.execute(text(
                "SELECT code, name_ja, name_romaji FROM municipalities ORDER BY code"))]
            assert after == before
            m = municipalities.c
            rows = conn.execute(select(m.code, m.status, m.shard, m.merged_into,
                                       m.name_kana)).all()
            assert {(r.status, r.shard == r.code, r.merged_into, r.name_kana)
                    for r in rows} == {("active", True, None, None)}
            shards = {r.name: r for r in conn.execute(select(crl_shards))}
            assert set(shards) == {m.code for m in seed}
            for municipality in seed:
                shard = shards[municipality.code]
                assert (shard.municipality_code, shard.prefecture_romaji, shard.city_romaji,
                        shard.closed_at) == (municipality.code,
                                             municipality.prefecture.name_romaji,
                                             municipality.name_romaji, None)
            times = {r.scope: (r.last_full_at, r.last_delta_at)
                     for r in conn.execute(select(crl_numbers))}
            assert times == {"132217": (at, at.replace(hour=2)), "arl": (None, None)}
        downgrade(engine, "0019")
        columns = {c["name"] for c in inspect(engine).get_columns("municipalities")}
        assert columns == {"code", "name_ja", "name_romaji"}
        assert "crl_shards" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(text(
                "SELECT code, name_ja, name_romaji FROM municipalities ORDER BY code"))] == before
    finally:
        engine.dispose()
