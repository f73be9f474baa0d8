"""The plan for a country, computed from measured growth curves (docs/scale.md, "The plan for
2.5×10^8 certificates"): every figure of a ``bench.scale`` results file carried to the national
size by the growth it showed, and the arithmetic that turns those into storage, memory, nodes,
CRL sizes, OCSP capacity and the time of a national event, written out beside each number.

    .venv/bin/python -m bench.scale_plan docs/scale/after.json --out docs/scale/plan.md

Carrying a figure: measured at sizes x1 < … < xn, it is carried from the largest to the
national size X as ``y(xn) · (X / xn) ** k``, where ``k`` is the least-squares slope of
log y on log x over every point (:func:`bench.scale.growth`). A rate per core that does not
depend on the size has k ≈ 0 and is carried as measured; a figure whose slope exceeds 1 grows
faster than the table, and the plan marks it: it is what needs fixing before a country. A
slope within ±0.1 is no growth (:data:`FLAT`): the figure is carried as measured.

What is not measured is a named constant below, with why it has the value it has.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scale import growth

NATIONAL_CERTIFICATES = 250_000_000
"""~10^8 holders, up to four certificates each, plus the revoked ones CRLs list until expiry."""
RENEWALS_PER_DAY = 1_000_000
"""The national event to model: a rush of renewals when an online benefit opened."""
EVENT_PEAK_HOURS = 8.0
"""The event's day is counter hours: the million renewals fall within eight of them."""
OCSP_VALIDITY_DAYS = 7.0
"""The pre-signed response validity the plan proposes (RFC 5019 §6: a responder may pre-sign
for its own period; the CA/Browser Forum allows up to ten days). The recipe's 60 minutes would
need every unexpired certificate re-signed twice an hour: see ``resign_rate``."""
OCSP_PEAK_RPS = 20_000.0
"""An assumption, not a measurement: a national peak of 20,000 status requests a second
(online health-insurance checks, e-Tax and the government portal at their busiest hour). The
plan states capacity per core too, so it can be redone for another figure."""
CORES_PER_NODE = 8
"""The jpki node the plan sizes: 8 cores, one serving worker each."""
HEADROOM = 0.5
"""Nodes are sized to run at half their measured capacity: one node may fail, a flood may
come."""
PG_NODES = 3
"""Patroni: a primary and two replicas, one of them synchronous (docs/deployment.md)."""
FLAT = 0.1
"""A fitted slope smaller than this (in absolute value) is taken as no growth: rates, latencies
and per-shard times measured on one VM vary by ±20 % from run to run (docs/scale.md)."""
MB = 1e6
GB = 1e9


@dataclass(frozen=True)
class Carried:
    """One figure: measured at the largest size, its slope over all sizes, and at ``target``."""

    name: str
    measured: float
    at: float  # the size it was measured at (certificates)
    slope: float
    target: float
    value: float

    @property
    def faster_than_linear(self) -> bool:
        return self.slope > 1.15  # beyond the noise of three points

    @property
    def flat(self) -> bool:
        return abs(self.slope) < FLAT

    def describe(self, unit: str = "") -> str:
        """What the figure was measured at and how it was carried."""
        how = "flat: carried as measured" if self.flat else f"slope {self.slope:.2f}"
        return f"{_n(self.measured)}{unit} at {self.at:,.0f}, {how}"


def carry(points: list[tuple[float, float]], target: float, name: str = "") -> Carried:
    """``points`` (size, value) carried to ``target`` by their least-squares log-log slope.
    Zero values carry as zero (a count that never happened is no curve)."""
    points = sorted(points)
    at, measured = points[-1]
    fit = growth(points)["overall"]
    slope = 0.0 if fit is None else fit
    # A slope within the noise of three runs on a shared VM is no growth: carrying it 25-fold
    # would turn a few per cent of noise into a trend.
    carried = 0.0 if abs(slope) < FLAT else slope
    value = 0.0 if measured == 0 else measured * (target / at) ** carried
    return Carried(name, measured, at, slope, target, value)


class Results:
    """The figures of a results file, by name, as (certificates, value) points."""

    def __init__(self, saved: dict[str, Any]) -> None:
        self.runs = sorted(saved["runs"].values(), key=lambda r: r["certificates"])
        if not self.runs:
            raise ValueError("no runs in the results file")
        self.largest = self.runs[-1]

    def points(self, name: str) -> list[tuple[float, float]]:
        pts = [(float(r["certificates"]), float(r["figures"][name])) for r in self.runs
               if isinstance(r["figures"].get(name), int | float)]
        if not pts:
            raise KeyError(f"no figure {name!r} in the results file")
        return pts

    def last(self, name: str) -> float:
        return self.points(name)[-1][1]

    def carry(self, name: str, target: float = NATIONAL_CERTIFICATES) -> Carried:
        return carry(self.points(name), target, name)


@dataclass
class Line:
    what: str
    value: str
    how: str


def _n(x: float, digits: int = 3) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"


def _mean_der(results: Results) -> float:
    """The mean DER of a certificate row, weighted by the population's kinds. The bench issues
    card certificates only; a mobile certificate is taken as the card certificate of its use
    (the same subject and key, a few bytes of other policy)."""
    kinds: dict[str, int] = results.largest["population"]["kinds"]
    size = {"card_auth": results.last("der_card_auth_bytes"),
            "card_sign": results.last("der_card_sign_bytes")}
    size["mobile_auth"], size["mobile_sign"] = size["card_auth"], size["card_sign"]
    total = sum(kinds.values())
    return sum(size[k] * n for k, n in kinds.items()) / total


def storage(results: Results, target: float) -> tuple[list[Line], float]:
    lines = []
    total = 0.0
    for table in ("certificates", "ocsp_responses", "residents", "cards", "mobile_devices"):
        c = results.carry(f"size_{table}_total_mb", target)
        total += c.value * MB
        lines.append(Line(f"`{table}` as loaded (tables + indexes)", f"{c.value / 1000:,.1f} GB",
                          c.describe(" MB")))
    der = _mean_der(results)
    der_bytes = der * target
    total += der_bytes
    lines.append(Line("certificates' DER (a placeholder in the loaded rows)",
                      f"{der_bytes / GB:,.1f} GB",
                      f"{target:,.0f} rows × {der:,.0f} B (mean of the DER jpki issued in "
                      f"the run, weighted by kind); stored inline: under PostgreSQL's 2 kB "
                      f"TOAST threshold, and not compressible (keys, signatures)"))
    response = results.last("ocsp_response_bytes")
    responses = response * target
    total += responses
    lines.append(Line("pre-signed OCSP responses' DER (placeholders in the loaded rows)",
                      f"{responses / GB:,.1f} GB",
                      f"one SHA-1 CertID response per certificate × {response:,.0f} B "
                      f"(the responses the run signed)"))
    lines.append(Line("**one PostgreSQL node's data**", f"**{total / GB:,.0f} GB**",
                      f"the sum; WAL, the audit log and base backups come on top; "
                      f"× {PG_NODES} nodes = {PG_NODES * total / 1e12:.1f} TB"))
    return lines, total


def memory(results: Results, target: float) -> tuple[list[Line], float]:
    """The indexes a request on a cold certificate walks: they should stay in memory."""
    names = {"uq_certificates_serial": "status and OCSP: a certificate by serial",
             "pk_certificates": "the row by id",
             "ix_certificates_crl_entries_pg": "a full CRL's read",
             "ix_certificates_resident_kind": "issuance, linkage, basic 4"}
    lines, total = [], 0.0
    for index, why in names.items():
        c = results.carry(f"size_index_{index}_mb", target)
        total += c.value * MB
        lines.append(Line(f"`{index}` ({why})", f"{c.value / 1000:,.1f} GB",
                          c.describe(" MB")))
    c = results.carry("size_ocsp_responses_indexes_mb", target)
    total += c.value * MB
    lines.append(Line("`ocsp_responses` indexes (a stored response by CertID)",
                      f"{c.value / 1000:,.1f} GB", c.describe(" MB")))
    lines.append(Line("**hot index set**", f"**{total / GB:,.0f} GB**",
                      "a PostgreSQL node's RAM should hold it with room for the heap pages of "
                      "the day's certificates"))
    return lines, total


def nodes(results: Results, data: float, hot: float) -> list[Line]:
    """The machines: PostgreSQL nodes sized by the data and the hot index set, jpki nodes by
    the OCSP peak (see :func:`serving`)."""
    ram = 2 ** math.ceil(math.log2(1.5 * hot / GB))
    disk = 2 * data
    per_core = results.last("ocsp_hot_rps") / results.last("ocsp_hot_server_cores")
    jpki = math.ceil(OCSP_PEAK_RPS / (per_core * CORES_PER_NODE * HEADROOM)) + 1
    return [
        Line("PostgreSQL nodes", f"{PG_NODES}, each {ram} GB RAM and {disk / 1e12:.1f} TB "
             "of SSD", f"Patroni's primary and two replicas; RAM: the hot index set "
             f"({hot / GB:,.0f} GB) × 1.5, to a power of two; disk: the data "
             f"({data / GB:,.0f} GB) × 2 for WAL, bloat between vacuums and growth"),
        Line("jpki nodes", f"{max(jpki, 2)} of {CORES_PER_NODE} cores",
             "the OCSP peak at half load plus one (Serving below); issuance and the jobs fit "
             "in what is left (the national event below needs a few cores)"),
    ]


def _durations(results: Results, target: float,
               names: tuple[tuple[str, str], ...]) -> list[Line]:
    """One line per timed figure (``name``, what it is), marked if it grows faster than the
    table."""
    lines = []
    for name, what in names:
        c = results.carry(name, target)
        lines.append(Line(what, _duration(c.value), c.describe(" s")
                          + (" — **faster than linear**" if c.faster_than_linear else "")))
    return lines


def crls(results: Results, target: float) -> list[Line]:
    entries = results.carry("crl_largest_entries", target)
    size = results.carry("crl_largest_bytes", target)
    all_entries = results.carry("crl_all_entries", target)
    lines = [
        Line("largest shard's full CRL", f"{entries.value:,.0f} entries, "
             f"{size.value / MB:.2f} MB",
             f"{entries.measured:,.0f} entries and {size.measured / 1000:,.0f} kB at "
             f"{entries.at:,.0f}; slopes {entries.slope:.2f}, {size.slope:.2f}"),
        Line("all shards' entries", f"{all_entries.value:,.0f}, "
             f"{all_entries.value * size.value / max(entries.value, 1) / MB:,.0f} MB",
             f"{all_entries.measured:,.0f} at {all_entries.at:,.0f}, slope "
             f"{all_entries.slope:.2f}; bytes at the largest shard's bytes per entry")]
    lines += _durations(results, target, (
        ("crl_full_largest_s", "largest shard, full CRL (a process)"),
        ("crl_full_all_s", "every shard, full CRLs"),
        ("crl_delta_all_s", "every shard, delta CRLs")))
    rss = results.carry("crl_full_all_rss_mb", target)
    lines.append(Line("peak memory, every shard", f"{rss.value:,.0f} MB",
                      rss.describe(" MB")))
    return lines


def serving(results: Results, target: float) -> list[Line]:
    hot = results.carry("ocsp_hot_rps", target)
    cores = results.last("ocsp_hot_server_cores")
    per_core = hot.value / cores
    per_node = per_core * CORES_PER_NODE
    nodes = math.ceil(OCSP_PEAK_RPS / (per_node * HEADROOM))
    cold = results.carry("ocsp_cold_rps", target)
    cold_cores = results.last("ocsp_cold_server_cores")
    status = results.carry("status_lookups_per_s", target)
    status_cores = results.last("status_server_cores")
    return [
        Line("OCSP from pre-signed responses (hot), per core", f"{per_core:,.0f} responses/s",
             f"{_n(hot.measured)}/s on {cores:.2f} cores at {hot.at:,.0f}, slope "
             f"{hot.slope:.2f}; p99 {results.last('ocsp_hot_p99_ms'):.2f} ms"),
        Line(f"jpki nodes for {OCSP_PEAK_RPS:,.0f} responses/s (assumed peak)",
             f"{nodes + 1}",
             f"{OCSP_PEAK_RPS:,.0f} / ({per_node:,.0f}/s per {CORES_PER_NODE}-core node × "
             f"{HEADROOM}) = {nodes}, + 1 for a failed node; an HTTP cache in front "
             f"(nginx, a CDN) answers repeats without reaching them"),
        Line("OCSP cold miss (signed live), per core", f"{cold.value / cold_cores:,.0f}/s",
             f"{cold.describe('/s')}; p99 "
             f"{results.last('ocsp_cold_p99_ms'):.0f} ms — what pre-signing must keep rare"),
        Line("/v1/status batch lookups (cold), per core",
             f"{status.value / status_cores:,.0f} serials/s",
             status.describe("/s")),
    ]


def resign_rate(target: float, validity_days: float) -> float:
    """Signatures per second that keep one response per certificate fresh, each re-signed at
    half its validity (jpki.revocation.ocsp)."""
    return target / (validity_days * 86400 / 2)


def presigning(results: Results, target: float) -> list[Line]:
    rate = results.carry("presign_per_s", target)
    hourly = resign_rate(target, 1 / 24)
    weekly = resign_rate(target, OCSP_VALIDITY_DAYS)
    return [
        Line("pre-signing, one process", f"{rate.value:,.0f} responses/s",
             f"{rate.describe('/s')} (SoftHSM, "
             f"4 threads on 2 cores)"),
        Line("first pre-signing of every certificate", _duration(target / rate.value),
             f"{target:,.0f} / {rate.value:,.0f}/s, one process"),
        Line("re-signing at the recipe's 60-minute validity", f"{hourly:,.0f} signatures/s",
             f"{target:,.0f} every 30 min: beyond any HSM — the recipe must change"),
        Line(f"re-signing at {OCSP_VALIDITY_DAYS:g}-day validity",
             f"{weekly:,.0f} signatures/s, {math.ceil(weekly / rate.value)} processes",
             f"{target:,.0f} every {OCSP_VALIDITY_DAYS / 2:g} days; a revocation still "
             f"re-signs its response at once"),
    ]


def event(results: Results, target: float) -> list[Line]:
    single = results.carry("issuance_pairs_per_s", target)
    batch = results.carry("issuance_batch_pairs_per_s", target)
    peak = RENEWALS_PER_DAY / (EVENT_PEAK_HOURS * 3600)
    share = results.last("crl_largest_entries") / results.last("crl_all_entries")
    per_entry = results.last("crl_largest_bytes") / max(results.last("crl_largest_entries"), 1)
    per_row = sum(results.carry(f"size_{t}_total_mb", target).value * MB / target
                  for t in ("certificates", "ocsp_responses")) \
        + _mean_der(results) + results.last("ocsp_response_bytes")
    return [
        Line(f"{RENEWALS_PER_DAY:,} renewals, the pairs' signing", f"{peak:,.0f} pairs/s "
             f"over {EVENT_PEAK_HOURS:g} h",
             f"one process signs {single.value:,.0f} pairs/s one at a time (p99 "
             f"{results.last('issuance_p99_ms'):.0f} ms), {batch.value:,.0f} in batches: "
             f"{math.ceil(peak / (single.value * HEADROOM))} process(es) issuing one at "
             f"a time, at half load; slopes {single.slope:.2f}, {batch.slope:.2f}"),
        Line("HSM signatures that day", f"{6 * RENEWALS_PER_DAY:,}",
             "per renewal: two certificates, the two old ones' revoked responses, the two "
             "new ones' pre-signed responses"),
        Line("CRL entries added", f"{2 * RENEWALS_PER_DAY:,}; the largest shard "
             f"+{2 * RENEWALS_PER_DAY * share:,.0f}",
             f"each renewal supersedes two certificates, listed until their notAfter; the "
             f"largest shard holds {share:.2%} of the entries: +"
             f"{2 * RENEWALS_PER_DAY * share * per_entry / 1000:,.0f} kB to its CRL"),
        Line("storage added", f"{2 * RENEWALS_PER_DAY * per_row / GB:,.1f} GB",
             f"two rows × {per_row:,.0f} B (a row, its indexes, its DER and its response)"),
    ]


def jobs(results: Results, target: float, total_bytes: float) -> list[Line]:
    lines = _durations(results, target, (
        ("sweep_s", "mobile sweep"),
        ("expiry_export_s", "expiry notices, largest municipality, one month"),
        ("presign_count_s", "presign backlog count (exact)"),
        ("probe_backlog_count_s", "the health probe's backlog gauge")))
    per_row = results.last("mass_revoke_sql_s") / max(results.last("mass_revoke_sql_rows"), 1)
    mass = target / 100
    rate = results.last("presign_per_s")
    lines.append(Line("a 1 % mass revocation", f"{_duration(mass * per_row)} to record, "
                      f"{_duration(mass / rate)} to re-sign",
                      f"{mass:,.0f} rows × {per_row * 1000:.2f} ms (measured per row), then "
                      f"their responses at {rate:,.0f}/s per pre-signing process"))
    throughput = results.last("backup_mb") / results.last("restore_s")
    lines.append(Line("restore from a base backup", _duration(total_bytes / MB / throughput),
                      f"{total_bytes / GB:,.0f} GB at the {throughput:,.0f} MB/s measured "
                      f"(a whole server of {results.last('backup_mb') / 1000:,.1f} GB)"))
    return lines


def plan(saved: dict[str, Any], target: float = NATIONAL_CERTIFICATES) -> str:
    results = Results(saved)
    size = results.largest["certificates"]
    out = [f"# The plan for {target:,.0f} certificates",
           "",
           f"Carried from {', '.join(format(r['certificates'], ',') for r in results.runs)} "
           f"certificates (`python -m bench.scale_plan`); the national size is "
           f"{target / size:.1f}× the largest run.", ""]
    store, total = storage(results, target)
    hot_lines, hot = memory(results, target)
    sections = [("Nodes", nodes(results, total, hot)), ("Storage", store),
                ("Memory", hot_lines),
                ("CRLs", crls(results, target)), ("Serving", serving(results, target)),
                ("OCSP pre-signing", presigning(results, target)),
                (f"A national event: {RENEWALS_PER_DAY:,} renewals in a day",
                 event(results, target)),
                ("Maintenance jobs", jobs(results, target, total))]
    for title, lines in sections:
        out += [f"## {title}", "", "| what | national | from |", "|---|---|---|"]
        out += [f"| {x.what} | {x.value} | {x.how} |" for x in lines]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="a bench.scale results file")
    p.add_argument("--certificates", type=float, default=NATIONAL_CERTIFICATES)
    p.add_argument("--out", help="write the plan here (markdown) as well")
    args = p.parse_args(argv)
    text = plan(json.loads(Path(args.results).read_text()), args.certificates)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
