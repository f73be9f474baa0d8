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
import json
import threading
import weakref
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar

from starlette.concurrency import run_in_threadpool

from api.composition import Services
from api.deps import run_claimed
from api.schemas import Basic4ItemsOut, Basic4Out
from jpki.access.authz import Operation
from jpki.relying_parties.latest_basic4 import Basic4Answer
from jpki.relying_parties.service import RpContext
from jpki.relying_parties.status_lookup import SerialStatus, StatusAnswer

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


# --- the answers, as the routes and the fast path (api.rp_fast) send them ---------------------


def _instant(at: datetime | None) -> str | None:
    if at is None:
        return None
    text = at.isoformat()
    if text.endswith("+00:00"):  # what the store hands back
        return text[:-6] + "Z"
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=100_000)
def _encoded(r: SerialStatus) -> bytes:
    """One result in the shape of StatusOut's ``results`` items. A result changes only when its
    certificate's status does, and the status lookup hands out the same object for the same
    result (jpki.relying_parties.status_lookup._Kept), so a batch is mostly memo hits."""
    return json.dumps({"serial": r.serial, "status": r.status, "reason": r.reason,
                       "revoked_at": _instant(r.revoked_at), "form": r.form, "usage": r.usage,
                       "not_after": _instant(r.not_after), "expired": r.expired},
                      separators=(",", ":")).encode("ascii")


def status_json(answer: StatusAnswer) -> bytes:
    """The answer in the shape of StatusOut (the documented response model), serialised here:
    validating up to 1,000 results again through the model would double the cost of a call."""
    produced_at = json.dumps(_instant(answer.produced_at)).encode("ascii")
    return b"".join((b'{"produced_at":', produced_at, b',"results":[',
                     b",".join([_encoded(r) for r in answer.results]), b"]}"))


def basic4_out(answer: Basic4Answer) -> Basic4Out:
    return Basic4Out(consent_id=answer.consent_id,
                     current_signing_serial=answer.current_signing_serial,
                     consent_expires_at=answer.expires_at.astimezone(UTC),
                     items=Basic4ItemsOut.model_validate(answer.items))
