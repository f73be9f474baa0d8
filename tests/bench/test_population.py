"""The national population generator (bench/population.py), at a small size: its table of
municipalities, its model, and that the rows it loads are rows jpki reads as its own."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import psycopg
import pytest
from cryptography import x509

from api.composition import Services
from bench.population import (
    CENSUS_TOTAL,
    MINIMUM_SIGNING_AGE,
    Draw,
    holder,
    holders_per_area,
    load_population,
    municipal_populations,
    prefecture_totals,
)
from jpki.lifecycle.crl_entries import crl_entry
from jpki.model import CaKind, CertKind, RevocationReason
from jpki.municipalities import load_registry, validate_municipality_code
from jpki.validity import age_on, jst_date

pytestmark = pytest.mark.postgres


def test_the_census_table_holds_every_resident_register_municipality_once() -> None:
    areas = municipal_populations()
    assert len(areas) == 1896  # 1,741 municipalities - 20 designated cities + their 175 wards
    assert len({a.code for a in areas}) == len(areas)
    registry = {m.code: m for m in load_registry()}
    for a in areas:
        validate_municipality_code(a.code)
        assert registry[a.code].name_ja == a.name_ja
    # Transcription check: each prefecture's municipalities sum to the census' own total.
    by_prefecture: Counter[str] = Counter()
    for a in areas:
        by_prefecture[a.code[:2]] += a.population
    assert dict(by_prefecture) == prefecture_totals()
    assert sum(by_prefecture.values()) == CENSUS_TOTAL


def test_holders_are_spread_in_proportion_to_population() -> None:
    areas = municipal_populations()
    spread = dict((a.code, n) for a, n in holders_per_area(areas, 1_000_000))
    assert sum(spread.values()) == 1_000_000
    setagaya = next(a for a in areas if a.name_ja == "世田谷区")
    share = setagaya.population / CENSUS_TOTAL
    assert abs(spread[setagaya.code] - share * 1_000_000) < 1
    futaba = next(a for a in areas if a.name_ja == "双葉町")  # evacuated: nobody in 2020
    assert spread[futaba.code] == 0


def test_each_holder_follows_the_validity_rules() -> None:
    now = datetime(2026, 12, 1, 3, tzinfo=UTC)
    rng = random.Random(7)
    draw = Draw(rng, now)
    kinds: Counter[CertKind] = Counter()
    reasons: Counter[RevocationReason] = Counter()
    for _ in range(3000):
        h = holder(rng, now, draw.first_card(), draw.birth(), 1, 0.2)
        live = [c for c in h.certs if c.revoked_at is None]
        assert Counter(c.kind for c in live)[CertKind.CARD_AUTH] == 1
        for c in h.certs:
            kinds[c.kind] += 1
            assert c.not_after >= now  # only rows not yet expired are kept
            assert c.not_after.astimezone(UTC).strftime("%H:%M:%S") == "14:59:59"
            assert c.issued < c.not_after
            if c.kind is CertKind.CARD_SIGN:
                assert age_on(h.birth, jst_date(c.issued)) >= MINIMUM_SIGNING_AGE
            if c.revoked_at is not None:
                assert c.reason is not None and c.issued <= c.revoked_at < now
                reasons[c.reason] += 1
            if c.linked is not None:  # a mobile certificate expires with its card certificate
                card = h.certs[c.linked]
                assert card.kind is c.kind.card_kind and card.not_after == c.not_after
                assert card.revoked_at is None
            if c.sibling is not None:
                assert h.certs[c.sibling].sibling == h.certs.index(c)
            if c.predecessor is not None:
                before = h.certs[c.predecessor]
                assert before.kind is c.kind and before.revoked_at == c.issued.replace(
                    microsecond=0)
    assert kinds[CertKind.MOBILE_SIGN] == kinds[CertKind.MOBILE_AUTH] > 0
    # Moves revoke signing certificates; renewals supersede both kinds.
    assert reasons[RevocationReason.AFFILIATION_CHANGED] > reasons[RevocationReason.SUPERSEDED] > 0


def test_the_same_seed_draws_the_same_population() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)

    def draw(seed: int) -> list[tuple[str, datetime, datetime]]:
        rng = random.Random(seed)
        d = Draw(rng, now)
        return [(c.kind.value, c.issued, c.not_after) for _ in range(200)
                for c in holder(rng, now, d.first_card(), d.birth(), 1, 0.1).certs]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


@pytest.fixture
def postgres_services(services: Services) -> Services:
    # The test asks for the postgres parameter only (the generator loads with COPY).
    assert services.uow.engine.dialect.name == "postgresql"
    return services


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_loaded_rows_are_rows_jpki_reads_as_its_own(postgres_services: Services) -> None:
    services = postgres_services
    now = services.clock.now()
    summary = load_population(services.uow.engine.url.render_as_string(hide_password=False),
                              3000, seed=5, now=now)
    url = services.uow.engine.url.set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(url) as conn:
        counted: dict[str, int] = dict(conn.execute(
            "SELECT 'certificates', count(*) FROM certificates UNION ALL "
            "SELECT 'residents', count(*) FROM residents UNION ALL "
            "SELECT 'cards', count(*) FROM cards UNION ALL "
            "SELECT 'devices', count(*) FROM mobile_devices"))
        revoked = conn.execute("SELECT serial, revoked_at, revocation_reason, crl_entry, shard "
                               "FROM certificates WHERE revoked_at IS NOT NULL").fetchall()
        placeholders = conn.execute("SELECT count(*) FROM ocsp_responses").fetchone()
    assert counted == {"certificates": summary.certificates, "residents": summary.residents,
                       "cards": summary.cards, "devices": summary.mobile_devices}
    assert 2500 < summary.certificates < 3500
    assert len(revoked) == summary.revoked > 0
    assert placeholders == (summary.certificates,)
    for serial, at, reason, entry, _ in revoked:
        assert entry == crl_entry(serial, at.replace(tzinfo=UTC), RevocationReason(reason))

    # jpki's own CRL of the largest shard lists exactly that shard's revoked signing rows.
    shard = summary.largest_shard
    scope = next(s for s in services.crls.scopes([shard], include_arl=False)
                 if s.generation.ca is CaKind.SIGN)
    published = services.crls.publish(scope, "full")
    crl = x509.load_der_x509_crl((services.crls.directory / published.path).read_bytes())
    listed = {format(r.serial_number, "x") for r in crl}
    with psycopg.connect(url) as conn:
        expected = {r[0] for r in conn.execute(
            "SELECT serial FROM certificates WHERE shard = %s AND revoked_at IS NOT NULL "
            "AND ca_generation_id = %s", (shard, scope.generation.id))}
    assert listed == expected and expected
