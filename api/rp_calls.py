"""The relying parties' status and basic 4 calls, answered without a thread of their own.

A status call whose serials are all kept in memory, and a basic 4 call under a standing consent,
need no blocking work of the request's own: the status rows are in memory
(jpki.relying_parties.status_lookup)
and the consent, the resident record and the certificate line are read by the group commit's
writer in the transaction that audits the disclosure (jpki.relying_parties.latest_basic4,
jpki.group_audit).
What each call must wait for is its audit record's commit — the answer leaves only once the
disclosure is durable (architecture §9) — so the event loop submits the record and awaits its
commit, instead of lending the call a worker thread that would block on it: one writer thread
serves a whole batch of calls, where each call used to cost a thread hop of its own.

Everything else — serials not kept (read from the store), a consent submitted with the call
(its CMS signature verified, stored) — runs on the thread pool as before.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any, Generic, Literal, TypeVar

from starlette.concurrency import run_in_threadpool

from api.composition import Services
from api.deps import run_claimed
from jpki.access.authz import Operation
from jpki.relying_parties.latest_basic4 import Basic4Answer
from jpki.relying_parties.service import RpContext
from jpki.relying_parties.status_lookup import StatusAnswer

T = TypeVar("T")


class _Settler:
    """Settles one event loop's futures from the group commit's writer thread, with one
    wake-up of the loop per burst: the writer settles a whole batch in a row, and each
    ``call_soon_threadsafe`` costs the writer a write to the loop's self-pipe and the loop a
    wake-up to read it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._due: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []

    def settle(self, future: asyncio.Future[Any], result: Any,
               error: BaseException | None) -> None:
        with self._lock:
            self._due.append((future, result, error))
            if len(self._due) > 1:
                return  # the loop has been woken for the first of the burst: it takes this too
        self._loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        with self._lock:
            due, self._due = self._due, []
        for future, result, error in due:
            if future.done():  # the call was cancelled (its client went away)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


_settlers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Settler] = \
    weakref.WeakKeyDictionary()


class Committed(Generic[T]):
    """An asyncio future settled from the group commit's writer thread."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        settler = _settlers.get(loop)
        if settler is None:
            settler = _settlers[loop] = _Settler(loop)
        self._settler = settler
        self.future: asyncio.Future[T | None] = loop.create_future()

    def done(self, error: BaseException | None) -> None:
        self._settler.settle(self.future, None, error)

    def settle(self, result: T | None, error: BaseException | None) -> None:
        self._settler.settle(self.future, result, error)


async def status(services: Services, ctx: RpContext[Literal[Operation.RP_STATUS]],
                 purpose: str, serials: list[str]) -> StatusAnswer:
    lookup = services.status_lookup
    committed: Committed[None] = Committed()
    answer = lookup.lookup_from_memory(ctx, purpose, serials, committed.done)
    if answer is None:
        return await run_in_threadpool(lookup.lookup, ctx, purpose, serials)
    rows = lookup.rows
    if rows.claim_poll():  # the status-change feed's due poll, not waited for
        run_claimed(rows.run_claimed_poll, rows.release_claim)
    await committed.future
    return answer


async def basic4(services: Services, ctx: RpContext[Literal[Operation.RP_BASIC4]], purpose: str,
                 consent: bytes | None, consent_id: str | None) -> Basic4Answer:
    service = services.latest_basic4
    if consent is not None or consent_id is None:
        return await run_in_threadpool(lambda: service.provide(ctx, purpose, consent=consent,
                                                               consent_id=consent_id))
    committed: Committed[Basic4Answer] = Committed()
    service.provide_standing(ctx, purpose, consent_id, committed.settle)
    answer = await committed.future
    assert answer is not None  # settled without an error: the disclosure
    return answer
