"""The national figures (jpki.registry.statistics, jpki.store.statistics): counted per JST day and
month by the database, first issuances apart from renewals, revocations by the day they take
effect with their reasons, the expiry wave ahead and the valid certificates per prefecture.
Both databases; the real HSM signs what is counted."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import InvalidInput, MissingScope
from jpki.issuance.service import KeyRequest
from jpki.model import CertKind, RevocationReason
from jpki.registry.statistics import DayCount, ReasonCount
from tests.conftest import FixedClock
from tests.holder_kit import ISSUE, REGISTER_RESIDENT
from tests.phone_kit import spki

pytestmark = pytest.mark.hsm

LOCAL = Principal.local_operator("pytest")
READ = authorize(LOCAL, Operation.STATISTICS_READ)
REVOKE = authorize(LOCAL, Operation.CERTIFICATE_REVOKE)


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(65537, 2048) for _ in range(6)]


def resident(services: Services, municipality: str = "132217") -> str:
    return services.residents.register(
        REGISTER_RESIDENT, name="山田 太郎", birth_date=date(1990, 1, 2), sex=1,
        address="東京都清瀬市中里一丁目２番３号", municipality_code=municipality).id


def test_counts_per_jst_day_kind_and_reason(services: Services, clock: FixedClock,
                                            keys: list[rsa.RSAPrivateKey]) -> None:
    # 2026-11-27 14:30 UTC is 23:30 JST on the 27th; 15:30 UTC is 00:30 JST on the 28th.
    clock.set(datetime(2026, 11, 27, 14, 30, tzinfo=UTC))
    first = resident(services)
    (sign,) = services.issuance.issue(ISSUE, first, [KeyRequest(CertKind.CARD_SIGN,
                                                                spki(keys[0]))])
    clock.set(datetime(2026, 11, 27, 15, 30, tzinfo=UTC))
    second = resident(services, "011002")  # Sapporo: prefecture 01
    services.issuance.issue(ISSUE, second, [KeyRequest(CertKind.CARD_AUTH, spki(keys[1])),
                                            KeyRequest(CertKind.CARD_SIGN, spki(keys[2]))])
    services.revocation.revoke(REVOKE, sign.serial, RevocationReason.KEY_COMPROMISE)
    clock.set(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))
    report = services.statistics.report(READ, days=2)
    assert (report.since, report.until) == (date(2026, 11, 27), date(2026, 11, 28))
    assert report.issued == (DayCount(date(2026, 11, 27), CertKind.CARD_SIGN, 1),
                             DayCount(date(2026, 11, 28), CertKind.CARD_AUTH, 1),
                             DayCount(date(2026, 11, 28), CertKind.CARD_SIGN, 1))
    assert report.renewed == ()
    assert report.revoked == (DayCount(date(2026, 11, 28), CertKind.CARD_SIGN, 1),)
    assert report.reasons == (ReasonCount(RevocationReason.KEY_COMPROMISE, 1),)
    by_prefecture = {(p.prefecture, p.kind): p.count for p in report.valid_by_prefecture}
    assert by_prefecture == {("01", CertKind.CARD_AUTH): 1, ("01", CertKind.CARD_SIGN): 1}
    assert sum(m.count for m in report.expiring) == 0  # five years ahead: beyond 24 months
    # A one-day window leaves the 27th out.
    assert [d.day for d in services.statistics.report(READ, days=1).issued] == \
        [date(2026, 11, 28)] * 2


def test_the_expiry_wave_counts_what_is_valid_by_the_month_it_ends(
        services: Services, clock: FixedClock, keys: list[rsa.RSAPrivateKey]) -> None:
    clock.set(datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    holder = resident(services)
    services.issuance.issue(ISSUE, holder, [KeyRequest(CertKind.CARD_AUTH, spki(keys[3]))])
    assert services.statistics.report(READ).expiring == ()  # 50 months ahead
    # Three years later the certificate ends within the next 24 months.
    clock.set(clock.now() + timedelta(days=3 * 365))
    report = services.statistics.report(READ, days=30)
    (month,) = report.expiring
    assert month.kind is CertKind.CARD_AUTH and month.count == 1
    assert month.month == "2031-01"  # 23:59:59 JST of the 5th birthday after issuance


def test_the_figures_are_the_national_operators(services: Services) -> None:
    clerk = Principal(actor="console:kiyose", kind=PrincipalKind.OPERATOR,
                      scopes=frozenset({"municipality:132217"}))
    with pytest.raises(MissingScope):
        authorize(clerk, Operation.STATISTICS_READ)
    for days in (0, 367):
        with pytest.raises(InvalidInput):
            services.statistics.report(READ, days=days)


def test_each_shards_newest_full_crl_and_whether_it_is_overdue(services: Services,
                                                               clock: FixedClock) -> None:
    from jpki.model import CaKind

    assert services.statistics.report(READ).crls == ()
    scope = services.crls.scope(CaKind.SIGN, 1, "132217")
    services.crls.publish(scope)
    newest = services.crls.publish(scope)
    services.crls.publish(scope, "delta")  # deltas are not what the panel shows
    (shard,) = services.statistics.report(READ).crls
    assert (shard.ca, shard.generation, shard.scope, shard.number) == \
        ("sign", 1, "132217", newest.number)
    assert shard.next_update == newest.next_update and not shard.overdue(clock.now())
    clock.set(newest.next_update + timedelta(seconds=1))
    report = services.statistics.report(READ)
    assert report.crls[0].overdue(report.at)
