"""Growth curves: the same measurements on national populations of 10^5, 10^6 and 10^7
certificates in PostgreSQL, plotted against size (log-log) with the growth order fitted.

    .venv/bin/python -m bench.scale run --sizes 1e5,1e6,1e7 --save docs/scale/results.json
    .venv/bin/python -m bench.scale run --sizes 1e7 --keep /var/tmp/jpki-scale \\
                                        --only crl,jobs --save docs/scale/after.json --label after
    .venv/bin/python -m bench.scale plot docs/scale/results.json --out docs/scale
    .venv/bin/python -m bench.scale compare docs/scale/results.json docs/scale/after.json

``run``: for each size, a fresh PostgreSQL database on the local server (migrations, the real
key ceremony on a SoftHSM token), loaded by :func:`bench.population.load_population`, then
each measurement in turn (:mod:`bench.scale_serving`, :mod:`bench.scale_revocation`); those
that change the database (the mass revocation) run last. A measurement that fails is
reported and the others go on. Results are merged into ``--save`` (a size measured again
replaces its figures), with the machine and the revision.

``--keep DIR`` keeps the SoftHSM token in DIR and the loaded database (named after the size)
for the next run: a change (an index, a migration, a new code path) is then measured on the
very same rows — the before/after of docs/scale.md. ``--reload`` loads again.

``plot``: one log-log SVG per figure (figures against certificates), and a table of the
observed growth order: the slope of log(figure) against log(size) between consecutive sizes
and over all (1 = linear, 0 = constant).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import (
    BenchHsm,
    bench_hsm,
    fresh_database,
    machine_info,
    open_services,
    postgres_admin_url,
)
from bench.scale_context import PopulationSummary, ScaleContext

# In the order they run: read-only first, then what changes the database.
MEASUREMENTS: tuple[tuple[str, str, str], ...] = (
    ("sizes", "bench.scale_revocation", "measure_sizes"),
    ("probes", "bench.scale_probes", "measure_probes"),
    # Publishes every CRL: a server started afterwards (status, ocsp) has none due.
    ("crl", "bench.scale_revocation", "measure_crl"),
    ("status", "bench.scale_serving", "measure_status"),
    ("ocsp", "bench.scale_serving", "measure_ocsp"),
    ("issuance", "bench.scale_serving", "measure_issuance"),
    ("restore", "bench.scale_revocation", "measure_restore"),
    ("jobs", "bench.scale_revocation", "measure_jobs"),
    # Parts of "jobs", run only when named in --only: a change measured again on a kept
    # database without the sweep, whose second run finds its phones already flagged.
    ("expiry", "bench.scale_revocation", "measure_expiry"),
    ("wave", "bench.scale_revocation", "measure_wave"),
)
ON_REQUEST = frozenset({"expiry", "wave"})


def selected(only: set[str] | None) -> list[tuple[str, str, str]]:
    """The measurements a run makes, in order: those named in ``only``, or by default all but
    those run on request."""
    if only is not None:
        unknown = only - {m[0] for m in MEASUREMENTS}
        if unknown:
            raise ValueError(f"no measurement {', '.join(sorted(unknown))}")
        return [m for m in MEASUREMENTS if m[0] in only]
    return [m for m in MEASUREMENTS if m[0] not in ON_REQUEST]


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def parse_size(text_: str) -> int:
    return int(float(text_))


def _measurement(module: str, name: str) -> Callable[[ScaleContext], dict[str, float | int]]:
    import importlib

    fn: Callable[[ScaleContext], dict[str, float | int]] = getattr(
        importlib.import_module(module), name)
    return fn


# --- kept databases -----------------------------------------------------------------------------


def _kept_name(size: int) -> str:
    return f"jpki_scale_{size}"


@contextlib.contextmanager
def kept_database(size: int, reload: bool) -> Iterator[tuple[str, bool]]:
    """(URL, loaded already) of the kept database of ``size``; created if missing (or, with
    ``reload``, dropped and created again). Never dropped here."""
    admin_url = make_url(postgres_admin_url()).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = _kept_name(size)
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": name}).first() is not None
            if exists and reload:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                exists = False
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    yield url, exists and _stored_summary(url) is not None


def _stored_summary(url: str) -> PopulationSummary | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT summary FROM bench_population LIMIT 1")).first()
    except Exception:
        return None
    finally:
        engine.dispose()
    return _summary_from(json.loads(row[0])) if row else None


def _store_summary(url: str, summary: PopulationSummary) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS bench_population (summary text)"))
            conn.execute(text("DELETE FROM bench_population"))
            conn.execute(text("INSERT INTO bench_population VALUES (:s)"),
                         {"s": json.dumps(_summary_json(summary))})
    finally:
        engine.dispose()


def _summary_json(s: PopulationSummary) -> dict[str, Any]:
    return {"certificates": s.certificates, "residents": s.residents, "cards": s.cards,
            "mobile_devices": s.mobile_devices, "revoked": s.revoked, "shards": s.shards,
            "revoked_by_shard": s.revoked_by_shard,
            "now": s.now.isoformat() if s.now else None, "load_seconds": s.load_seconds}


def _summary_from(d: dict[str, Any]) -> PopulationSummary:
    return PopulationSummary(
        certificates=d["certificates"], residents=d["residents"], cards=d["cards"],
        mobile_devices=d["mobile_devices"], revoked=d["revoked"], shards=d["shards"],
        revoked_by_shard=d["revoked_by_shard"],
        now=datetime.fromisoformat(d["now"]) if d.get("now") else None,
        load_seconds=d.get("load_seconds", 0.0))


# --- one size -----------------------------------------------------------------------------------


PLANNER_SETTINGS = {"random_page_cost": "1.1"}
"""The database settings docs/deployment.md asks of a production server on SSDs, applied to
the measured database (ALTER DATABASE: its new sessions). With PostgreSQL's default of 4 (a
spinning disk's random read), the expiry notices of the largest municipality read the whole
certificate table at 10^7 rather than each holder's certificates by index (docs/scale.md)."""


def apply_planner_settings(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(make_url(url).set(drivername="postgresql+psycopg"),
                          isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for setting, value in PLANNER_SETTINGS.items():
                conn.execute(text(f'ALTER DATABASE "{name}" SET {setting} = {value}'))
    finally:
        admin.dispose()


def measure_size(hsm: BenchHsm, url: str, size: int, loaded: bool, only: set[str] | None,
                 seed: int) -> dict[str, Any]:
    from bench.population import describe, load_population

    services = open_services(hsm, url)  # migrations and the key ceremony (idempotent)
    services.uow.engine.dispose()
    summary = _stored_summary(url) if loaded else None
    if summary is None:
        log(f"size {size:,}: loading the population")
        summary = load_population(url, size, seed=seed, log=log)
        _store_summary(url, summary)
        log(f"size {size:,}: {summary.certificates:,} certificates loaded in "
            f"{summary.load_seconds:.0f} s")
    else:
        log(f"size {size:,}: reusing the loaded database ({summary.certificates:,} certificates)")
    apply_planner_settings(url)
    result: dict[str, Any] = {
        "size": size, "certificates": summary.certificates, "residents": summary.residents,
        "cards": summary.cards, "mobile_devices": summary.mobile_devices,
        "revoked": summary.revoked, "shards": len(summary.shards),
        "largest_shard": summary.largest_shard,
        "largest_shard_entries": summary.revoked_by_shard.get(summary.largest_shard, 0),
        "load_s": round(summary.load_seconds, 1), "population": describe(url),
        "planner": PLANNER_SETTINGS, "figures": {}, "errors": {}, "seconds": {}}
    with tempfile.TemporaryDirectory(prefix=f"jpki-scale-{size}-") as work:
        ctx = ScaleContext(hsm=hsm, url=url, work=Path(work), population=summary)
        try:
            for key, module, name in selected(only):
                log(f"size {size:,}: {key}")
                began = time.perf_counter()
                try:
                    figures = _measurement(module, name)(ctx)
                    result["figures"].update(figures)
                    log(f"size {size:,}: {key}: " + ", ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in figures.items()))
                except Exception as exc:  # reported; the other measurements still run
                    result["errors"][key] = f"{type(exc).__name__}: {exc}"
                    log(f"size {size:,}: {key} FAILED: {type(exc).__name__}: {exc}")
                    traceback.print_exc(file=sys.stderr)
                result["seconds"][key] = round(time.perf_counter() - began, 1)
        finally:
            ctx.close()
    return result


def run(args: argparse.Namespace) -> int:
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    only = set(args.only.split(",")) if args.only else None
    selected(only)  # an unknown name fails here, before anything is loaded
    saved: dict[str, Any] = {}
    if args.save and Path(args.save).exists():
        saved = json.loads(Path(args.save).read_text())
    keep = Path(args.keep) if args.keep else None
    with bench_hsm(keep=keep / "hsm" if keep else None) as hsm:
        saved.setdefault("runs", {})
        saved["machine"] = machine_info(hsm.data_dir)
        saved["command"] = " ".join(["python -m bench.scale", *sys.argv[1:]])
        for size in sizes:
            began = time.perf_counter()
            if keep is not None:
                with kept_database(size, args.reload) as (url, loaded):
                    result = measure_size(hsm, url, size, loaded, only, args.seed)
            else:
                with fresh_database("postgres", hsm.data_dir, f"scale{size}") as url:
                    result = measure_size(hsm, url, size, False, only, args.seed)
            result["label"] = args.label
            result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
            result["total_s"] = round(time.perf_counter() - began, 1)
            previous = saved["runs"].get(str(size), {})
            if only is not None and previous:
                # A partial run replaces only the figures it measured.
                previous["figures"].update(result["figures"])
                previous["errors"] = {**{k: v for k, v in previous.get("errors", {}).items()
                                         if k not in only}, **result["errors"]}
                previous["seconds"] = {**previous.get("seconds", {}), **result["seconds"]}
                previous["at"] = result["at"]
                result = previous
            saved["runs"][str(size)] = result
            if args.save:
                Path(args.save).parent.mkdir(parents=True, exist_ok=True)
                Path(args.save).write_text(json.dumps(saved, indent=1, ensure_ascii=False,
                                                      sort_keys=True) + "\n")
            print(json.dumps({"size": size, "figures": result["figures"],
                              "errors": result["errors"]}, indent=1))
    return 0


# --- growth -------------------------------------------------------------------------------------


def growth(points: list[tuple[float, float]]) -> dict[str, float | None]:
    """The least-squares slope of log(value) on log(size) over all points, and between each
    consecutive pair: the observed growth order (1 linear, 0 constant, 2 quadratic)."""
    pts = [(math.log10(x), math.log10(y)) for x, y in points if x > 0 and y > 0]
    out: dict[str, float | None] = {"overall": None}
    if len(pts) >= 2:
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        sxx = sum((x - mx) ** 2 for x, _ in pts)
        out["overall"] = (sum((x - mx) * (y - my) for x, y in pts) / sxx) if sxx else None
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        out[f"{10 ** x0:.0e}-{10 ** x1:.0e}"] = (y1 - y0) / (x1 - x0)
    return out


def _series(saved: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {}
    for _, r in sorted(saved["runs"].items(), key=lambda kv: int(kv[0])):
        for name, value in r["figures"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(name, []).append((float(r["certificates"]), float(value)))
    return series


def plot(args: argparse.Namespace) -> int:
    saved = json.loads(Path(args.results).read_text())
    series = _series(saved)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for name, points in sorted(series.items()):
        fit = growth(points)
        table.append((name, points, fit))
    try:
        import matplotlib

        matplotlib.use("svg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
        log("matplotlib is not installed (pip install '.[bench]'): the table only, no plots")
    if plt is not None:
        plt.rcParams["svg.hashsalt"] = "jpki-scale"  # stable ids: reruns diff cleanly
        for group, names in _groups(series).items():
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            for name in names:
                xs, ys = zip(*[p for p in series[name] if p[1] > 0], strict=True) if any(
                    p[1] > 0 for p in series[name]) else ((), ())
                if xs:
                    ax.plot(xs, ys, marker="o", label=name)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("certificates in the store")
            ax.set_title(group)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(out / f"{group}.svg", metadata={"Date": None})
            plt.close(fig)
    lines = ["| figure | " + " | ".join(f"{int(x):,}" for x, _ in table[0][1]) +
             " | growth order (overall) |" if table else "",
             "|---|" + "---|" * (len(table[0][1]) + 1) if table else ""]
    for name, points, fit in table:
        overall = fit["overall"]
        lines.append(f"| {name} | " + " | ".join(_fmt(y) for _, y in points) +
                     f" | {'' if overall is None else f'{overall:.2f}'} |")
    (out / "growth.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _groups(series: dict[str, list[tuple[float, float]]]) -> dict[str, list[str]]:
    """Figures plotted together: same prefix and unit (seconds, per second, MB…)."""
    groups: dict[str, list[str]] = {}
    for name in sorted(series):
        prefix = name.split("_")[0]
        unit = ("rate" if name.endswith(("_per_s", "_rps")) else
                "latency" if name.endswith("_ms") else
                "memory" if name.endswith(("_mb", "_bytes")) else
                "time" if name.endswith("_s") else "count")
        groups.setdefault(f"{prefix}-{unit}", []).append(name)
    return groups


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def compare(args: argparse.Namespace) -> int:
    """Before/after: the figures two result files share, size by size, with the ratio."""
    before = json.loads(Path(args.before).read_text())["runs"]
    after = json.loads(Path(args.after).read_text())["runs"]
    print("| size | figure | before | after | after/before |")
    print("|---|---|---|---|---|")
    for size in sorted(set(before) & set(after), key=int):
        b, a = before[size]["figures"], after[size]["figures"]
        for name in sorted(set(b) & set(a)):
            ratio = (a[name] / b[name]) if b[name] else math.nan
            print(f"| {int(size):,} | {name} | {_fmt(b[name])} | {_fmt(a[name])} | "
                  f"{ratio:.2f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--sizes", default="1e5,1e6,1e7")
    r.add_argument("--only", help="comma-separated: " + ",".join(m[0] for m in MEASUREMENTS))
    r.add_argument("--save", help="results JSON (merged)")
    r.add_argument("--keep", help="keep the token here and the loaded databases")
    r.add_argument("--reload", action="store_true", help="with --keep: load again")
    r.add_argument("--label", default="")
    r.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("plot")
    p.add_argument("results")
    p.add_argument("--out", default="docs/scale")
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = parser.parse_args(argv)
    os.environ.setdefault("JPKI_LOG_LEVEL", "WARNING")
    return {"run": run, "plot": plot, "compare": compare}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
