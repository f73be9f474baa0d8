"""The OCSP endpoint's traffic by minute, added to by every serving process (api.ocsp_traffic).

Each process adds what it answered since its last write — one upsert per few seconds, adding to
the minute's row — so the rows are the sum over every worker and every node sharing the
database: the dashboard's OCSP request rate and latency are the service's, where Prometheus's
histogram is per process (or per node, aggregated across its workers in multiprocess mode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jpki.store.tables import ocsp_traffic
from jpki.telemetry import OCSP_BUCKETS

_BUCKETS = [f"bucket_{i}" for i in range(len(OCSP_BUCKETS) + 1)]

# (minute, outcome) -> (bucket counts, non-cumulative, the last above every bound; sum of seconds)
Tally = Mapping[tuple[datetime, str], tuple[Sequence[int], float]]


class SqlOcspTraffic:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, tally: Tally) -> None:
        if not tally:
            return
        rows = []
        for (minute, outcome), (buckets, seconds) in tally.items():
            if len(buckets) != len(_BUCKETS):
                raise ValueError("one count per OCSP bucket")
            rows.append({"minute": minute, "outcome": outcome[:32], "requests": sum(buckets),
                         "seconds": seconds, **dict(zip(_BUCKETS, buckets, strict=True))})
        with self._engine.begin() as conn:
            stmt = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(ocsp_traffic)
            ex, c = stmt.excluded, ocsp_traffic.c
            added = {name: c[name] + ex[name] for name in ("requests", "seconds", *_BUCKETS)}
            conn.execute(stmt.on_conflict_do_update(index_elements=["minute", "outcome"],
                                                    set_=added), rows)
