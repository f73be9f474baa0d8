"""The measured process of :func:`bench.scale_revocation.measure_crl`: one CRL publication run per
process, so that its peak memory can be read from outside (GNU time's "Maximum resident set
size").

    python -m bench.scale_crl_child --data-dir D --database-url U --kind full|delta --result R
                                    [--scope CA:GENERATION:NAME] [--workers N]

It runs what ``jpki crl publish`` runs: the CRL service alone, built by
:func:`api.crl_publishing.build_crl_publishing` on the data directory (the HSM PIN from
``JPKI_HSM_USER_PIN``, ``SOFTHSM2_CONF`` inherited), on the system clock. With ``--scope`` it
publishes that one scope (``sign:1:132217``); without, every live scope of every CA generation
— what a nightly ``jpki crl publish`` (``--delta`` for deltas) takes, ARLs included for full
runs —, through ``CrlService.publish_many`` on ``--workers`` threads (default 1: the scopes in
turn). Nothing heavy is imported at module level: the process pays only for what the CLI does.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def run(args: argparse.Namespace) -> dict[str, Any]:
    from api.crl_publishing import build_crl_publishing
    from jpki.model import CaKind
    from jpki.settings import Settings

    imported = time.perf_counter()
    settings = Settings(data_dir=Path(args.data_dir), database_url=args.database_url)
    publishing = build_crl_publishing(settings)
    crls = publishing.crls
    try:
        built = time.perf_counter()
        if args.scope:
            ca, generation, name = args.scope.split(":")
            scopes = [crls.scope(CaKind(ca), int(generation), name)]
        else:
            scopes = crls.scopes()
        ready = time.perf_counter()
        idle_kib = _peak_kib()
        began = time.perf_counter()
        publications = crls.publish_many(scopes, kinds=(args.kind,), workers=args.workers)
        seconds = time.perf_counter() - began
    finally:
        publishing.close()
    largest = max(publications, key=lambda p: p.entries, default=None)
    return {
        "seconds": seconds, "import_seconds": imported - STARTED,
        "services_seconds": built - imported, "scopes_seconds": ready - built,
        "idle_peak_kib": idle_kib,
        "scopes": len(scopes), "publications": len(publications),
        "kinds": sorted({p.kind for p in publications}),
        "entries": sum(p.entries for p in publications),
        "bytes": sum(p.size for p in publications),
        "largest_entries": largest.entries if largest else 0,
        "largest_bytes": largest.size if largest else 0,
        "largest_path": str(crls.directory / largest.path) if largest else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_crl_child")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--kind", choices=("full", "delta"), required=True)
    p.add_argument("--scope", help="CA:GENERATION:NAME (sign:1:132217); default every live one")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--result", required=True)
    args = p.parse_args(argv)
    result = run(args)
    result["peak_kib_in_process"] = _peak_kib()
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
