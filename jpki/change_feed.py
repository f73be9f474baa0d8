"""The status-change feed: how a revocation, a hold or its release reaches what is kept ready.

Two readers keep answers ready between status changes: the OCSP responder (responses signed ahead
of time, stored in the database and kept in each process's memory; jpki.revocation.ocsp) and the
relying-party status lookup (status rows kept in memory; jpki.relying_parties.status_lookup). Both
must stop giving the old answer within a second of a change being acknowledged, in every
process, and after any restart (architecture §5).

**The feed.** Every change of a certificate's status — revocation, hold, a hold made permanent,
a scheduled revocation brought forward, release of a hold, abandonment of an intent — stamps
``revocation_recorded_at`` in the same transaction (jpki.lifecycle.revocation.set_revocation,
release_hold), and that column is indexed. "The changes since *t*" is one index range read:
:meth:`jpki.ports.StatusChangeFeed.changes_since`, which the store implements
(jpki.store.status_feed) and the OCSP responder's refresh job reads (jpki.revocation.ocsp.jobs).

**Why a reader looks back.** A change is stamped with the writer's clock when it is made but
becomes visible only when its transaction commits, a moment later; a poll that began in between
does not see it, and the next poll must still look at it. So each poll reads from
:data:`LOOKBACK` before the start of the previous complete poll. A change whose commit lags its
stamp by more than that (or whose writer's clock lags the reader's by more) would be missed by
the polls; the periodic reconciliation (:data:`RECONCILE_SECONDS`; jpki.revocation.ocsp.jobs)
re-reads every change newer than the oldest response still being served, and catches it.

**Why the window is not taken from the clock at start.** A process that starts knows nothing of
the changes recorded while it (or the process before it) was down, or killed between
acknowledging a revocation and refreshing its responses. Its first poll therefore does not start
from "now": the OCSP responder starts from the oldest response it may serve (the responses' own
production times, in the database), and the status rows start empty. A poll that fails leaves
the window where it was, so the next one covers the gap; a clock that moved backwards resets
the window (the next poll reads from the start again).
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["LOOKBACK", "POLL_SECONDS", "RECONCILE_SECONDS", "ChangeWindow"]

# How often the readers poll: "in every answer within a second", with room for re-signing.
POLL_SECONDS = 0.25
# How far before the previous poll each poll reads (see the module docstring): the longest a
# status-changing transaction may take between its stamp and its commit and still be seen by
# the polls. Re-reading a change is harmless: readers compare what they hold with the store.
LOOKBACK = timedelta(seconds=5)
# How often the OCSP responder reconciles every change newer than its oldest servable response.
RECONCILE_SECONDS = 60.0


class ChangeWindow:
    """Where one reader is in the feed: the start of its last complete poll.

    ``since(now)`` gives the instant a poll beginning at ``now`` must read from, or None when the
    reader must start over (it never completed a poll, or the clock moved back since);
    ``advance(now)`` records a completed poll that began at ``now``. Not thread-safe: each reader
    polls from one thread at a time.
    """

    def __init__(self, lookback: timedelta = LOOKBACK) -> None:
        self._lookback = lookback
        self._mark: datetime | None = None

    @property
    def mark(self) -> datetime | None:
        return self._mark

    def since(self, now: datetime) -> datetime | None:
        if self._mark is None or now < self._mark:
            return None
        return self._mark - self._lookback

    def advance(self, now: datetime) -> None:
        self._mark = now

    def reset(self) -> None:
        self._mark = None
