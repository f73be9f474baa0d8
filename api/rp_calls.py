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
from typing import Generic, Literal, TypeVar

from starlette.concurrency import run_in_threadpool

from api.composition import Services
from api.deps import run_claimed
from jpki.access.authz import Operation
from jpki.relying_parties.latest_basic4 import Basic4Answer
from jpki.relying_parties.service import RpContext
from jpki.relying_parties.status_lookup import StatusAnswer

T = TypeVar("T")


class Committed(Generic[T]):
    """An asyncio future settled from the group commit's writer thread."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.future: asyncio.Future[T | None] = self._loop.create_future()

    def done(self, error: BaseException | None) -> None:
        self.settle(None, error)

    def settle(self, result: T | None, error: BaseException | None) -> None:
        self._loop.call_soon_threadsafe(self._set, result, error)

    def _set(self, result: T | None, error: BaseException | None) -> None:
        if self.future.done():  # the call was cancelled (its client went away)
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)


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
