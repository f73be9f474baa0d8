"""Each serving process's OCSP traffic, added to the database's by minute (jpki.store.ocsp_traffic)
so that the dashboard's OCSP request rate and latency are the whole service's.

Prometheus's histogram of the same requests (api.metrics) is per process, or per node with
``--workers`` (multiprocess mode aggregates the workers of one machine, not the machines), and
starts again at zero with the process: good for a scraper that keeps the series, not for a page
that must say what the service did yesterday. So every :data:`WRITE_SECONDS`, and when the
process stops, the tally the endpoint kept since the last write (api.metrics.MeteredOcsp) is
added to the minute's rows. A process killed outright loses at most its last
:data:`WRITE_SECONDS` (the rows then count less than was answered, never more); a write that
fails is kept for the next one.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool

from api.composition import Services
from api.metrics import MeteredOcsp

log = logging.getLogger("jpki.api")
WRITE_SECONDS = 10.0


async def write(app: object, services: Services) -> None:
    """Add what ``app``'s OCSP endpoint answered since the last write. In the event loop."""
    endpoint = getattr(app, "ocsp_endpoint", None)
    if not isinstance(endpoint, MeteredOcsp):
        return
    endpoint.flush()
    traffic = endpoint.take_traffic()
    if not traffic:
        return
    try:
        await run_in_threadpool(services.ocsp_traffic.add, traffic)
    except Exception as exc:  # kept for the next write; the type only (house rule)
        endpoint.give_back(traffic)
        log.warning("could not record the OCSP traffic: %s", type(exc).__name__)
