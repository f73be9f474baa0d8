"""What a running node asks the database on its own, whatever the traffic: the readiness
probe's checks and the gauges a metrics scrape reads (api.probes), timed on the loaded
national-scale database.

    measure_probes(ctx) -> probe_backlog_count_s, probe_backlog_count, probe_crl_freshness_s,
                           probe_crl_scopes, probe_responders_s

Each figure is the median of three calls, each on a fresh :class:`api.probes.Probes` (the
backlog gauge is kept 30 s by a running node: a fresh one asks). The readiness probe gives
each check 5 s (api.health.CHECK_TIMEOUT_SECONDS): a check slower than that at some size
makes every node of that size report not ready. Reads only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from api.probes import Probes
from bench.scale_context import ScaleContext


def _median_seconds(call: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - began)
    return statistics.median(times), value


def measure_probes(ctx: ScaleContext) -> dict[str, float | int]:
    services = ctx.services()
    backlog_s, backlog = _median_seconds(lambda: Probes(services).presign_backlog())
    fresh_s, freshness = _median_seconds(lambda: Probes(services).crl_freshness())
    responders_s, _ = _median_seconds(lambda: Probes(services).responders())
    return {"probe_backlog_count_s": backlog_s, "probe_backlog_count": int(backlog),
            "probe_crl_freshness_s": fresh_s,
            "probe_crl_scopes": freshness.fresh + freshness.unpublished + len(freshness.overdue),
            "probe_responders_s": responders_s}
