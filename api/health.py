"""Readiness: can this process do its job now? (``GET /readyz``; ``GET /healthz`` only says the
process is alive and serving.)

Four checks, run concurrently, each with a time limit so that a hung database or token makes the
probe fail instead of hang:

- ``database``: a statement on the primary engine answers;
- ``hsm``: a MAC with the audit key in the token succeeds (a session can be had, the login
  holds, the key is found) — every change the CA makes needs it;
- ``ocsp_responders``: every unexpired CA generation has an OCSP responder certificate with at
  least ``JPKI_READY_RESPONDER_DAYS`` days left (renewal begins earlier, so this fails only when
  renewal has failed);
- ``crls``: the newest CRL of every scope is still within its nextUpdate (RFC 5280 §5.1.2.5;
  past it the endpoint would serve a stale CRL: publication has stopped). A scope never
  published is not a failure: its CRL is published on the first request for it.

A failed check says which and why in a few words — codes, CA generations, counts, an exception's
type — never an exception's text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from api.probes import Probes
from jpki.store import observe

if TYPE_CHECKING:
    from api.composition import Services

CHECK_TIMEOUT_SECONDS = 5.0
_PROBE = b"jpki readiness probe"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _database(services: Services) -> str:
    with services.uow.engine.connect() as conn:
        observe.ping(conn)
    return "reachable"


def _hsm(services: Services) -> str:
    services.keys.hmac_sha256(services.recipe.audit_key_label, _PROBE)
    return "a session signed with the audit key"


def _responders(services: Services, probes: Probes) -> str:
    minimum = timedelta(days=services.settings.ready_responder_days)
    now = services.clock.now()
    responders = probes.responders()
    if not responders:
        raise CheckFailed("no unexpired CA generation")
    short = [r.generation for r in responders
             if r.not_after is None or r.not_after - now < minimum]
    if short:
        raise CheckFailed(f"less than {minimum.days} days left on the responder certificate "
                          f"of {', '.join(short)}")
    soonest = min(r.not_after for r in responders if r.not_after is not None)
    return f"{len(responders)} generations; the soonest expires {soonest.isoformat()}"


def _crls(probes: Probes) -> str:
    freshness = probes.crl_freshness()
    if freshness.overdue:
        shown = ", ".join(freshness.overdue[:5])
        more = f" and {len(freshness.overdue) - 5} more" if len(freshness.overdue) > 5 else ""
        raise CheckFailed(f"no CRL within its nextUpdate for {shown}{more}")
    unpublished = f"; {freshness.unpublished} not published yet (published on first request)" \
        if freshness.unpublished else ""
    return f"{freshness.fresh} CRLs within their nextUpdate{unpublished}"


class CheckFailed(Exception):
    """A check's own verdict (its text is ours, and safe to show)."""


async def _run(name: str, check: Callable[[], str]) -> Check:
    try:
        detail = await asyncio.wait_for(run_in_threadpool(check), CHECK_TIMEOUT_SECONDS)
    except CheckFailed as exc:
        return Check(name, False, str(exc))
    except TimeoutError:
        return Check(name, False, f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except Exception as exc:  # a broken component: its type only (module doc)
        return Check(name, False, f"failed: {type(exc).__name__}")
    return Check(name, True, detail)


async def readiness(services: Services, probes: Probes) -> list[Check]:
    return list(await asyncio.gather(
        _run("database", lambda: _database(services)),
        _run("hsm", lambda: _hsm(services)),
        _run("ocsp_responders", lambda: _responders(services, probes)),
        _run("crls", lambda: _crls(probes)),
    ))
