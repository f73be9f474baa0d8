"""A national population of holders and their certificates, loaded into PostgreSQL with COPY.

    .venv/bin/python -m bench.population --certificates 1000000 [--seed 1] [--url URL]
                                         [--mobile-share 0.10] [--no-ocsp-rows] [--json]

Without ``--url`` a fresh database is created on the local server (as the other benches do),
loaded, measured for size, and dropped; :func:`load_population` is what :mod:`bench.scale` calls.

The model (every figure is a constant below, with its source; docs/scale.md discusses them):

* **Where people live**: the 2020 census population of each of the 1,896 municipalities that
  keep a resident register — cities, towns, villages, Tokyo's 23 special wards, and the 175 wards
  of the 20 designated cities (whose wards, not the city, are the CRL shards) — shipped in
  ``bench/data/census2020_population.csv`` (source: Statistics Bureau of Japan, 令和2年国勢調査
  人口速報集計, e-Stat statsDataId 0003433219; every prefecture's rows sum to its published
  total, which the tests check). Residents are drawn per municipality in proportion.
* **Who holds a card**: the card-holding curve (cards held nationally over time) of
  :data:`HOLDING_CURVE`; at the generation date a holder's card was first issued at a date
  drawn from that curve, so early adopters' certificates have already been renewed and the
  expiry waves follow the adoption waves.
* **Ages**: the 2020 census age structure (:data:`AGE_GROUPS`, 5-year groups), birthdays
  uniform within the group. Under-15s get no signing certificate (reference §1.4).
* **Validity**: what jpki computes (:mod:`jpki.validity`): cards expire on the 10th birthday
  after issuance (5th under 18); certificates on the 5th birthday after issuance (6th for a
  renewal), capped by the card, the signing certificate by the authentication certificate.
  Renewals happen at a uniform instant of the 3-month renewal window; the renewed certificate
  is revoked (superseded) at that instant and listed on CRLs until it expires. A card replaced
  at expiry revokes the old card's certificates the same way.
* **Moves**: :data:`MOVES_PER_YEAR` of residents move each year (Poisson); a move revokes the
  signing certificate (affiliationChanged: the address changed) and a new one is issued.
* **Smartphones**: a share of the signing-age holders (:data:`MOBILE_SHARE`, an assumption:
  no public figure is known) hold mobile signing and authentication certificates on one
  device, issued after the Android service started, linked to and expiring with the current
  card certificates.

Rows are the rows jpki writes (residents, cards, mobile devices, certificates with their
pipeline status, links, shard, revocation columns and the exact ``crl_entry`` DER), with two
placeholders, which the benches that read this population say they rely on: a certificate's
``der`` is NULL (no bench reads it: statuses, CRL entries and links come from their own
columns) and its public-key hash is random; ``ocsp_responses`` holds one placeholder row
(empty DER, produced in 2100 so never stale) per certificate, standing for the pre-signed
responses a running responder keeps (revoked certificates' too), so that only what changes
makes a pre-signing backlog. A responder would serve such a row: benches that send OCSP
requests delete the placeholders of the certificates they ask about.

Every draw comes from one seeded generator: the same seed and size give the same rows.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import functools
import itertools
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.crl import fast_crl_entry
from bench.scale_context import PopulationSummary
from jpki.model import CertKind, RevocationReason
from jpki.municipalities import PREFECTURES, check_digit, load_registry
from jpki.validity import (
    age_on,
    card_expiry,
    certificate_not_after,
    end_of_day_jst,
    jst_date,
    renewal_window_start,
)

CENSUS = Path(__file__).resolve().parent / "data" / "census2020_population.csv"
CENSUS_TOTAL = 126_226_568  # the census file's 全国 row

# Cards held nationally (枚数) at dates, linearly interpolated, extrapolated past the last point
# with the last segment's slope. 2021-01-01: 30,765,617 issued (the deck's table, R3.1.1);
# 2024-03-31: 92.15 M holders; 2025-12-03: 100,129,804 held (reference §6). Issuance began
# 2016-01.
HOLDING_CURVE: tuple[tuple[date, int], ...] = (
    (date(2016, 1, 1), 0),
    (date(2021, 1, 1), 30_765_617),
    (date(2024, 3, 31), 92_150_000),
    (date(2025, 12, 3), 100_129_804),
)

# 2020 census, population by 5-year age group (0-4, 5-9, …, 95-99, 100+), in thousands,
# rounded; the structure is applied at the generation date (no ageing since 2020).
AGE_GROUPS: tuple[int, ...] = (4541, 5114, 5376, 5620, 6320, 6218, 6730, 7542, 8410, 9753,
                               8660, 7878, 7429, 8219, 9191, 7061, 5407, 3699, 1743, 457, 80)

MOVES_PER_YEAR = 0.05  # ~5 % of residents move each year (the figure; 住民基本台帳移動報告)
MOBILE_SHARE = 0.10  # assumption: share of signing-age holders with smartphone certificates
MOBILE_START = datetime(2023, 5, 11, tzinfo=UTC)  # Android service start (reference §2)
MINIMUM_SIGNING_AGE = 15  # reference §1.4
CARD_RENEWAL_LEAD = timedelta(days=90)  # a new card is applied for in the last 3 months
# The placeholder pre-signed responses never go stale: a running responder re-signs each at
# half-life, a steady load docs/scale.md computes from the measured signing rate; here they
# stand still, so that what a measurement finds missing is what it changed.
PLACEHOLDER_THIS_UPDATE = datetime(2100, 1, 1)
PLACEHOLDER_NEXT_UPDATE = datetime(2100, 1, 1, 1)


@dataclass(frozen=True)
class Area:
    """One resident-register municipality: a CRL shard."""

    code: str  # 6-digit, with check digit
    name_ja: str
    population: int


def municipal_populations(path: Path = CENSUS) -> list[Area]:
    """The 1,896 municipalities that keep a resident register, with their 2020 population.

    The census file also has the national and prefecture totals, Tokyo's 特別区部 and the 20
    designated cities as wholes: those are left out (a designated city's wards are listed)."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [(r["area_code"], r["area_name"], int(r["population"] or 0))
                for r in csv.DictReader(fh)]
    names = {code: name for code, name, _ in rows}
    areas = []
    for code, name, population in rows:
        if code.endswith("000") or code == "13100":
            continue
        whole_city = name.endswith("市") and any(
            other[:2] == code[:2] and other != code and names[other].startswith(name)
            and len(names[other]) > len(name) for other in names)
        if whole_city:
            continue
        areas.append(Area(code + str(check_digit(code)), name, population))
    return areas


def prefecture_totals(path: Path = CENSUS) -> dict[str, int]:
    """The census file's prefecture rows: {2-digit prefecture code: population}."""
    with open(path, encoding="utf-8", newline="") as fh:
        return {r["area_code"][:2]: int(r["population"]) for r in csv.DictReader(fh)
                if r["area_code"].endswith("000") and r["area_code"] != "00000"}


def cards_held(on: date) -> float:
    """Cards held nationally on ``on`` (:data:`HOLDING_CURVE`)."""
    points = HOLDING_CURVE
    if on <= points[0][0]:
        return 0.0
    for (d0, v0), (d1, v1) in itertools.pairwise(points):
        if on <= d1:
            return v0 + (v1 - v0) * (on - d0).days / (d1 - d0).days
    (d0, v0), (d1, v1) = points[-2], points[-1]
    return v1 + (v1 - v0) * (on - d1).days / (d1 - d0).days


# --- one holder's history ---------------------------------------------------------------------


@dataclass
class Cert:
    kind: CertKind
    issued: datetime
    not_after: datetime
    card: int  # index into the holder's cards
    revoked_at: datetime | None = None
    reason: RevocationReason | None = None
    predecessor: int | None = None  # index into the holder's certificates
    sibling: int | None = None
    linked: int | None = None


@dataclass
class Card:
    issued: datetime
    expires: date
    replaced_at: datetime | None = None


@dataclass
class Holder:
    birth: date
    sex: int
    cards: list[Card] = field(default_factory=list)
    certs: list[Cert] = field(default_factory=list)
    mobile_at: datetime | None = None


def _uniform(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.random() * (end - start).total_seconds())


def _whole(at: datetime) -> datetime:
    """Revocation instants are whole seconds: the CRL entry's UTCTime has no fraction."""
    return at.replace(microsecond=0)


def _moves(rng: random.Random, start: datetime, end: datetime) -> list[datetime]:
    """Poisson arrivals at :data:`MOVES_PER_YEAR` in [start, end)."""
    out: list[datetime] = []
    at = start
    rate = MOVES_PER_YEAR / (365.25 * 86400)
    while True:
        at += timedelta(seconds=rng.expovariate(rate))
        if at >= end:
            return out
        out.append(at)


def _card_period(h: Holder, rng: random.Random, card: int, now: datetime, end: datetime
                 ) -> None:
    """The certificates of card ``card`` from its issuance until ``end`` (its replacement, or
    now), keeping those that have not expired by ``now``; the pair alive at a replacement
    before ``now`` is revoked then (superseded)."""
    c = h.cards[card]
    at, renewal, prev_auth, prev_sign = c.issued, False, None, None
    while True:
        auth_na = certificate_not_after(birth=h.birth, issued_at=at, renewal=renewal,
                                        card_expiry=c.expires)
        signing = age_on(h.birth, jst_date(at)) >= MINIMUM_SIGNING_AGE
        ends_with_card = auth_na >= end_of_day_jst(c.expires)
        # The pair is renewed at a uniform instant of its window, unless it ends with the card.
        renew_at = None if ends_with_card else _uniform(rng, renewal_window_start(auth_na),
                                                        auth_na)
        stop = min(x for x in (renew_at, end, auth_na) if x is not None)
        auth = Cert(CertKind.CARD_AUTH, at, auth_na, card, predecessor=prev_auth)
        auth_i = _keep(h, auth, stop, now)
        sign_i = None
        if signing:
            s_at, s_pred = at, prev_sign
            for moved in _moves(rng, at, stop):
                na = certificate_not_after(birth=h.birth, issued_at=s_at,
                                           renewal=renewal and s_at == at,
                                           card_expiry=c.expires, cap=auth_na)
                s = Cert(CertKind.CARD_SIGN, s_at, na, card, _whole(moved),
                         RevocationReason.AFFILIATION_CHANGED, predecessor=s_pred)
                s_pred = _append_if_live(h, s, now)
                s_at = moved
            na = certificate_not_after(birth=h.birth, issued_at=s_at,
                                       renewal=renewal and s_at == at, card_expiry=c.expires,
                                       cap=auth_na)
            sign = Cert(CertKind.CARD_SIGN, s_at, na, card, predecessor=s_pred)
            sign_i = _keep(h, sign, stop, now)
            if auth_i is not None and sign_i is not None and s_at == at:
                h.certs[auth_i].sibling, h.certs[sign_i].sibling = sign_i, auth_i
        if renew_at is None or renew_at >= end:
            return
        at, renewal, prev_auth, prev_sign = renew_at, True, auth_i, sign_i


def _keep(h: Holder, cert: Cert, stop: datetime, now: datetime) -> int | None:
    """Record ``cert``, revoked (superseded) at ``stop`` if it was renewed or its card replaced
    before ``now``; None if it expired before ``now`` (not in the store's live rows)."""
    if stop < now and stop < cert.not_after:
        cert.revoked_at, cert.reason = _whole(stop), RevocationReason.SUPERSEDED
    return _append_if_live(h, cert, now)


def _append_if_live(h: Holder, cert: Cert, now: datetime) -> int | None:
    if cert.not_after < now:
        return None
    h.certs.append(cert)
    return len(h.certs) - 1


def holder(rng: random.Random, now: datetime, first_card: datetime, birth: date, sex: int,
           mobile_share: float) -> Holder:
    """One holder's cards and certificates, as of ``now``."""
    h = Holder(birth, sex)
    issued = max(first_card, datetime.combine(birth + timedelta(days=30), datetime.min.time(),
                                              tzinfo=UTC))
    while True:
        expires = card_expiry(birth, jst_date(issued))
        card = Card(issued, expires)
        h.cards.append(card)
        replace_at = _uniform(rng, end_of_day_jst(expires) - CARD_RENEWAL_LEAD,
                              end_of_day_jst(expires))
        if replace_at >= now:
            _card_period(h, rng, len(h.cards) - 1, now, now)
            break
        card.replaced_at = replace_at
        _card_period(h, rng, len(h.cards) - 1, now, replace_at)
        issued = replace_at
    # Cards of which no certificate is kept are not stored (nor are their replaced statuses).
    kept = sorted({c.card for c in h.certs} | {len(h.cards) - 1})
    remap = {old: new for new, old in enumerate(kept)}
    h.cards = [h.cards[i] for i in kept]
    for c in h.certs:
        c.card = remap[c.card]
    _mobile(h, rng, now, mobile_share)
    return h


def _mobile(h: Holder, rng: random.Random, now: datetime, share: float) -> None:
    """Mobile certificates linked to the current (unrevoked) card pair, for ``share`` of the
    holders who have a signing certificate."""
    live = {c.kind: i for i, c in enumerate(h.certs) if c.revoked_at is None}
    sign_i, auth_i = live.get(CertKind.CARD_SIGN), live.get(CertKind.CARD_AUTH)
    if sign_i is None or auth_i is None or rng.random() >= share:
        return
    sign, auth = h.certs[sign_i], h.certs[auth_i]
    start = max(MOBILE_START, sign.issued, auth.issued)
    if start >= now:
        return
    at = _uniform(rng, start, now)
    h.mobile_at = at
    card = len(h.cards) - 1
    m_sign = Cert(CertKind.MOBILE_SIGN, at, sign.not_after, card, linked=sign_i)
    m_auth = Cert(CertKind.MOBILE_AUTH, at, auth.not_after, card, linked=auth_i)
    h.certs.extend([m_sign, m_auth])


# --- the national draw -------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _holding_table(today: date) -> tuple[list[date], list[float]]:
    """The holding curve on [2016-01-01, today], by day: what a first-card draw inverts."""
    start = HOLDING_CURVE[0][0]
    days = [start + timedelta(days=d) for d in range((today - start).days + 1)]
    return days, [cards_held(d) for d in days]


class Draw:
    """Ages, first-card dates and municipalities, drawn with one seeded generator."""

    def __init__(self, rng: random.Random, now: datetime) -> None:
        self.rng = rng
        self.now = now
        total = sum(AGE_GROUPS)
        self._age_cdf = [sum(AGE_GROUPS[: i + 1]) / total for i in range(len(AGE_GROUPS))]
        self._days, self._held = _holding_table(jst_date(now))

    def birth(self) -> date:
        group = bisect.bisect_left(self._age_cdf, self.rng.random())
        years = min(group * 5 + self.rng.random() * 5, 105)
        return jst_date(self.now) - timedelta(days=int(years * 365.25) + 1)

    def first_card(self) -> datetime:
        target = self.rng.random() * self._held[-1]
        day = self._days[min(bisect.bisect_left(self._held, target), len(self._days) - 1)]
        return datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(
            seconds=self.rng.random() * 86400)


def holders_per_area(areas: list[Area], holders: int) -> list[tuple[Area, int]]:
    """``holders`` spread over ``areas`` in proportion to population (largest remainders)."""
    total = sum(a.population for a in areas)
    exact = [a.population * holders / total for a in areas]
    counts = [math.floor(x) for x in exact]
    short = holders - sum(counts)
    for i in sorted(range(len(areas)), key=lambda i: exact[i] - counts[i], reverse=True)[:short]:
        counts[i] += 1
    return [(a, n) for a, n in zip(areas, counts, strict=True)]


CERTS_PER_HOLDER_GUESS = 2.0  # refined by a pilot draw in :func:`holders_for`


def holders_for(certificates: int, seed: int, now: datetime, mobile_share: float) -> int:
    """How many holders give about ``certificates`` rows: a pilot draw of 20,000 holders
    measures the rows per holder of this model at ``now``."""
    rng = random.Random(seed ^ 0x5EED)
    draw = Draw(rng, now)
    pilot = 20_000
    rows = sum(len(holder(rng, now, draw.first_card(), draw.birth(), 1, mobile_share).certs)
               for _ in range(pilot))
    return max(1, round(certificates * pilot / max(rows, 1)))


# --- loading -----------------------------------------------------------------------------------

_CERT_COLUMNS = ["id", "serial", "kind", "resident_id", "card_id", "ca_generation_id", "status",
                 "not_before", "not_after", "shard", "registry_source", "public_key_sha256",
                 "predecessor_id", "sibling_id", "revoked_at", "revocation_reason",
                 "revocation_recorded_at", "crl_entry", "issued_by", "linked_id", "device_id",
                 "delivery_required", "created_at", "updated_at"]
_CERT_TYPES = ["int8", "varchar", "varchar", "varchar", "int8", "int8", "varchar", "timestamp",
               "timestamp", "varchar", "varchar", "varchar", "int8", "int8", "timestamp", "int2",
               "timestamp", "bytea", "varchar", "int8", "varchar", "bool", "timestamp",
               "timestamp"]
_RESIDENT_COLUMNS = ["id", "municipality_code", "registry_source", "status", "dv_support", "name",
                     "birth_date", "sex", "address", "version", "created_at", "updated_at"]
_RESIDENT_TYPES = ["varchar", "varchar", "varchar", "varchar", "bool", "varchar", "date", "int2",
                   "varchar", "int4", "timestamp", "timestamp"]
_CARD_COLUMNS = ["id", "resident_id", "number", "expires_on", "status", "created_at",
                 "status_changed_at"]
_CARD_TYPES = ["int8", "varchar", "varchar", "date", "varchar", "timestamp", "timestamp"]
_DEVICE_COLUMNS = ["id", "resident_id", "device_ref", "platform", "status", "created_at",
                   "last_seen_at"]
_DEVICE_TYPES = ["varchar", "varchar", "varchar", "varchar", "varchar", "timestamp", "timestamp"]
_OCSP_COLUMNS = ["ca_generation_id", "hash_algorithm", "serial", "der", "this_update",
                 "next_update"]
_OCSP_TYPES = ["int8", "varchar", "varchar", "bytea", "timestamp", "timestamp"]

_SURNAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤",
             "吉田", "山田", "佐々木", "山口", "松本", "井上"]
_GIVEN = ["翔太", "結衣", "大輝", "美咲", "健一", "陽子", "蓮", "葵", "湊", "凛", "悠真", "花子",
          "一郎", "恵子", "直樹", "真由美"]


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


@dataclass
class _Tables:
    residents: list[tuple[Any, ...]] = field(default_factory=list)
    cards: list[tuple[Any, ...]] = field(default_factory=list)
    devices: list[tuple[Any, ...]] = field(default_factory=list)
    certs: list[tuple[Any, ...]] = field(default_factory=list)
    ocsp: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class _Counters:
    cert_id: int = 0
    card_id: int = 0
    certificates: int = 0
    residents: int = 0
    cards: int = 0
    devices: int = 0
    revoked: int = 0
    shards: Counter[str] = field(default_factory=Counter)
    revoked_by_shard: Counter[str] = field(default_factory=Counter)


def _holder_rows(h: Holder, area: Area, prefecture_ja: str, rng: random.Random, now: datetime,
                 generations: dict[str, int], out: _Tables, n: _Counters,
                 ocsp_rows: bool) -> None:
    resident_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    created = _naive(h.cards[0].issued)
    name = f"{rng.choice(_SURNAMES)} {rng.choice(_GIVEN)}"
    address = (f"{prefecture_ja}{area.name_ja}本町{rng.randint(1, 9)}丁目"
               f"{rng.randint(1, 30)}番{rng.randint(1, 20)}号")
    out.residents.append((resident_id, area.code, "juminhyo", "active", False, name, h.birth,
                          h.sex, address, 1, created, created))
    n.residents += 1
    card_ids = []
    for i, card in enumerate(h.cards):
        n.card_id += 1
        card_ids.append(n.card_id)
        replaced = card.replaced_at is not None and card.replaced_at < now
        out.cards.append((n.card_id, resident_id, f"{rng.getrandbits(53):016d}", card.expires,
                          "replaced" if replaced and i < len(h.cards) - 1 else "active",
                          _naive(card.issued),
                          _naive(card.replaced_at if replaced and card.replaced_at else
                                 card.issued)))
        n.cards += 1
    device_id = None
    if h.mobile_at is not None:
        device_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        platform = "JPKIAPGPSETOKEN" if rng.random() < 0.5 else "JPKIAPIOSTOKEN"
        seen = _naive(_uniform(rng, h.mobile_at, now))
        out.devices.append((device_id, resident_id, f"bench-{device_id[:12]}", platform,
                            "active", _naive(h.mobile_at), seen))
        n.devices += 1
    first_id = n.cert_id + 1
    n.cert_id += len(h.certs)
    for i, c in enumerate(h.certs):
        serial = rng.getrandbits(127) | (1 << 64)
        generation = generations["sign" if c.kind.is_signing else "auth"]
        revoked = c.revoked_at is not None
        at = _naive(c.revoked_at) if c.revoked_at else None
        entry = (fast_crl_entry(serial, c.revoked_at, int(c.reason))
                 if c.revoked_at is not None and c.reason is not None else None)
        mobile = c.kind in (CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH)
        out.certs.append((
            first_id + i, format(serial, "x"), c.kind.value, resident_id, card_ids[c.card],
            generation, "issued", _naive(c.issued), _naive(c.not_after), area.code, "juminhyo",
            format(rng.getrandbits(256), "064x"),
            None if c.predecessor is None else first_id + c.predecessor,
            None if c.sibling is None else first_id + c.sibling,
            at, int(c.reason) if c.reason is not None else None, at, entry,
            "bench:population", None if c.linked is None else first_id + c.linked,
            device_id if mobile else None, False, _naive(c.issued), at or _naive(c.issued)))
        n.certificates += 1
        n.shards[area.code] += 1
        if revoked:
            n.revoked += 1
            n.revoked_by_shard[area.code] += 1
        if ocsp_rows:
            out.ocsp.append((generation, "sha1", format(serial, "x"), b"",
                             PLACEHOLDER_THIS_UPDATE, PLACEHOLDER_NEXT_UPDATE))


def _copy(conn: Any, table: str, columns: list[str], types: list[str],
          rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
    rows.clear()


_TABLES = ("residents", "cards", "mobile_devices", "certificates", "ocsp_responses")


def _secondary_indexes(conn: Any) -> list[tuple[str, str]]:
    """Indexes of the loaded tables that back no constraint: dropped for the load and built
    again from their own definitions afterwards, as a bulk load does."""
    return list(conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid "
        "WHERE c.relname = ANY(%s) AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid)", (list(_TABLES),)))


def _foreign_keys(conn: Any) -> list[tuple[str, str, str]]:
    return list(conn.execute(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid WHERE k.contype = 'f' AND c.relname = ANY(%s)",
        (list(_TABLES),)))


def _scalar(conn: Any, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0])


def _generations(conn: Any) -> dict[str, int]:
    rows = dict(conn.execute("SELECT ca::text, max(id) FROM ca_generations GROUP BY ca"))
    if set(rows) != {"sign", "auth"}:
        raise RuntimeError(f"the CA ceremony has not run on this database: {sorted(rows)}")
    return {k: int(v) for k, v in rows.items()}


def _ensure_shards(conn: Any, areas: list[Area]) -> None:
    """Every municipality of the registry, with its CRL shard (as ``jpki init`` registers
    them), so that each area has its shard."""
    have = {r[0] for r in conn.execute("SELECT code FROM municipalities")}
    registry = {m.code: m for m in load_registry()}
    missing = [registry[a.code] for a in areas if a.code not in have]
    if not missing:
        return
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO municipalities (code, name_ja, name_romaji, name_kana, "
                        "status, shard) VALUES (%s, %s, %s, %s, 'active', %s)",
                        [(m.code, m.name_ja, m.name_romaji, m.name_kana, m.shard)
                         for m in missing])
        cur.executemany("INSERT INTO crl_shards (name, municipality_code, prefecture_romaji, "
                        "city_romaji) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [(m.shard, m.code, m.prefecture.name_romaji, m.name_romaji)
                         for m in missing])


def area_rng(seed: int, area: Area) -> random.Random:
    """The generator of one municipality's holders: a population is the same whichever worker
    draws which municipality."""
    return random.Random(f"{seed}:{area.code}")


def generate(certificates: int, *, seed: int, now: datetime, mobile_share: float = MOBILE_SHARE,
             areas: list[Area] | None = None) -> Iterator[tuple[Area, Holder]]:
    """The holders (with their municipality) of a population of about ``certificates`` rows,
    municipality by municipality."""
    areas = areas if areas is not None else municipal_populations()
    total = holders_for(certificates, seed, now, mobile_share)
    for area, count in holders_per_area(areas, total):
        yield from _area_holders(area, count, seed, now, mobile_share)


def _area_holders(area: Area, count: int, seed: int, now: datetime, mobile_share: float
                  ) -> Iterator[tuple[Area, Holder]]:
    rng = area_rng(seed, area)
    draw = Draw(rng, now)
    for _ in range(count):
        yield area, holder(rng, now, draw.first_card(), draw.birth(), 1 + rng.randrange(2),
                           mobile_share)


# Row ids of worker k start at k * ID_STRIDE: no two workers' ids meet, and every id is known
# when its row is written (links between rows are ids). Far below BIGINT's range.
ID_STRIDE = 10**11


@dataclass(frozen=True)
class _Part:
    url: str
    work: list[tuple[Area, int]]
    seed: int
    now: datetime
    mobile_share: float
    ocsp_rows: bool
    generations: dict[str, int]
    id_base: int
    batch: int


def _load_part(part: _Part) -> _Counters:
    """One worker: its municipalities' holders, written with COPY in one transaction."""
    import psycopg

    n = _Counters(cert_id=part.id_base, card_id=part.id_base)
    out = _Tables()
    prefectures = {code: p.name_ja for code, p in PREFECTURES.items()}
    with psycopg.connect(part.url) as conn:
        # Whether the load survives a crash does not matter (it is loaded again); the WAL
        # flushes would be a third of its time.
        conn.execute("SET synchronous_commit = off")

        def flush() -> None:
            _copy(conn, "residents", _RESIDENT_COLUMNS, _RESIDENT_TYPES, out.residents)
            _copy(conn, "cards", _CARD_COLUMNS, _CARD_TYPES, out.cards)
            _copy(conn, "mobile_devices", _DEVICE_COLUMNS, _DEVICE_TYPES, out.devices)
            _copy(conn, "certificates", _CERT_COLUMNS, _CERT_TYPES, out.certs)
            _copy(conn, "ocsp_responses", _OCSP_COLUMNS, _OCSP_TYPES, out.ocsp)

        for area, count in part.work:
            rng = area_rng(part.seed + 1, area)
            for _, h in _area_holders(area, count, part.seed, part.now, part.mobile_share):
                _holder_rows(h, area, prefectures[area.code[:2]], rng, part.now,
                             part.generations, out, n, part.ocsp_rows)
            if len(out.certs) >= part.batch:
                flush()
        flush()
        conn.commit()
    return n


def load_population(url: str, certificates: int, *, seed: int = 1, now: datetime | None = None,
                    mobile_share: float = MOBILE_SHARE, ocsp_rows: bool = True,
                    batch: int = 50_000, workers: int | None = None,
                    log: Any = None) -> PopulationSummary:
    """Load about ``certificates`` certificate rows (and their holders) into the migrated
    PostgreSQL database at ``url``, on which the CA ceremony has run.

    Secondary indexes and foreign keys of the loaded tables are dropped for the load and made
    again after it; ``workers`` processes (one per CPU by default) each draw a share of the
    municipalities and COPY their rows; then the tables are vacuumed and analysed as autovacuum
    would. The rows do not depend on the number of workers. Returns what was written."""
    import multiprocessing

    import psycopg

    now = now or datetime.now(UTC)
    began = time.perf_counter()
    areas = municipal_populations()
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    total = holders_for(certificates, seed, now, mobile_share)
    spread = [(a, k) for a, k in holders_per_area(areas, total) if k]
    workers = max(1, workers or os.cpu_count() or 1)
    with psycopg.connect(plain) as conn:
        generations = _generations(conn)
        _ensure_shards(conn, areas)
        base = max(_scalar(conn, "SELECT coalesce(max(id), 0) FROM certificates"),
                   _scalar(conn, "SELECT coalesce(max(id), 0) FROM cards"))
        indexes, fks = _secondary_indexes(conn), _foreign_keys(conn)
        for table, name, _ in fks:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.commit()
    # Municipalities dealt round-robin by size, so the workers' shares are even.
    shares: list[list[tuple[Area, int]]] = [[] for _ in range(workers)]
    for i, item in enumerate(sorted(spread, key=lambda ak: -ak[1])):
        shares[i % workers].append(item)
    parts = [_Part(plain, share, seed, now, mobile_share, ocsp_rows, generations,
                   base + 1 + k * ID_STRIDE if k else base, batch)
             for k, share in enumerate(shares)]
    if log:
        log(f"  {total:,} holders in {len(spread):,} municipalities, {workers} worker(s)")
    if workers == 1:
        results = [_load_part(parts[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_load_part, parts)
    n = _Counters()
    for r in results:
        for name in ("certificates", "residents", "cards", "devices", "revoked"):
            setattr(n, name, getattr(n, name) + getattr(r, name))
        n.shards.update(r.shards)
        n.revoked_by_shard.update(r.revoked_by_shard)
        n.cert_id, n.card_id = max(n.cert_id, r.cert_id), max(n.card_id, r.card_id)
    if log:
        log(f"  {n.certificates:,} certificates written in {time.perf_counter() - began:.0f} s;"
            " building indexes")
    with psycopg.connect(plain) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        for _, create in indexes:
            conn.execute(create)
        for table, name, definition in fks:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        conn.execute("SELECT setval(pg_get_serial_sequence('certificates', 'id'), %s)",
                     (max(n.cert_id, 1),))
        conn.execute("SELECT setval(pg_get_serial_sequence('cards', 'id'), %s)",
                     (max(n.card_id, 1),))
        conn.commit()
    with psycopg.connect(plain, autocommit=True) as conn:
        for table in _TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    return PopulationSummary(
        certificates=n.certificates, residents=n.residents, cards=n.cards,
        mobile_devices=n.devices, revoked=n.revoked, shards=dict(n.shards),
        revoked_by_shard=dict(n.revoked_by_shard), now=now,
        load_seconds=time.perf_counter() - began)


def describe(url: str) -> dict[str, Any]:
    """What is in the loaded database, counted by SQL (kinds, revocations by reason, mobile)."""
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain) as conn:
        kinds: dict[str, int] = dict(conn.execute(
            "SELECT kind::text, count(*) FROM certificates GROUP BY 1"))
        reasons: dict[int, int] = dict(conn.execute(
            "SELECT revocation_reason, count(*) FROM certificates "
            "WHERE revoked_at IS NOT NULL GROUP BY 1"))
        shards = conn.execute("SELECT count(DISTINCT shard) FROM certificates").fetchone()
    return {"kinds": kinds, "revoked_by_reason": {str(k): v for k, v in reasons.items()},
            "shards_used": shards[0] if shards else 0}


def main(argv: list[str] | None = None) -> int:
    from bench.common import bench_hsm, fresh_database, open_services

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certificates", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mobile-share", type=float, default=MOBILE_SHARE)
    parser.add_argument("--no-ocsp-rows", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with bench_hsm() as hsm, fresh_database("postgres", hsm.data_dir, "population") as url:
        services = open_services(hsm, url)
        services.uow.engine.dispose()
        summary = load_population(url, args.certificates, seed=args.seed,
                                  mobile_share=args.mobile_share,
                                  ocsp_rows=not args.no_ocsp_rows, log=log)
        report = {"certificates": summary.certificates, "residents": summary.residents,
                  "cards": summary.cards, "mobile_devices": summary.mobile_devices,
                  "revoked": summary.revoked, "largest_shard": summary.largest_shard,
                  "load_seconds": round(summary.load_seconds, 1), **describe(url)}
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
