"""The relying-party usage roll-up: audit records of relying-party calls summed per JST day,
relying party and scope into ``rp_usage`` (the dashboard's relying-party panel).

Why a summary and not a query of the audit log: every relying-party call appends a record, so
at national scale the log holds billions of them, and a GROUP BY over a month of it — reading
each payload's JSON — would take minutes, growing with the calls. The summary holds one row per
day, party and scope: the dashboard reads a few thousand rows whatever the traffic. Why a
maintenance job and not a counter updated with each call: the calls' records are written by the
group commit in one lean statement per batch (jpki.store.audit_writer), on the path every status
and basic 4 answer waits for; the job costs that path nothing.

The job reads the records after the one it summed last, by the primary key (``seq``, no other
index), up to the head — the chain's numbers are a gap-free prefix of committed records, since
jpki.audit appends under the head's lock and moves the head in the same transaction — and adds
them to ``rp_usage`` in the transaction that moves its own position (``rp_usage_rollup``,
locked): each record is counted once, by whichever process runs the job. The figures are those
of the last run (at most one maintenance interval old); the report says up to which record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jpki.model import AuditRecord
from jpki.relying_parties.usage import ACTIONS, use_of
from jpki.store.tables import audit_head, audit_log, rp_usage, rp_usage_rollup
from jpki.validity import jst_date

BATCH = 20_000  # records read per transaction
MAX_BATCHES = 50  # per run: a long backlog (the first run after the upgrade) takes several


class SqlRpUsageRollup:
    def __init__(self, engine: Engine, now: Callable[[], datetime]) -> None:
        self._engine = engine
        self._now = now

    def roll_up(self) -> dict[str, int]:
        """Sum the records written since the last run; what it did, as the job ledger's counts."""
        read = counted = 0
        for _ in range(MAX_BATCHES):
            with self._engine.begin() as conn:
                batch_read, batch_counted, more = self._batch(conn)
            read += batch_read
            counted += batch_counted
            if not more:
                break
        return {"records": read, "calls": counted}

    def _batch(self, conn: Connection) -> tuple[int, int, bool]:
        sqlite = conn.dialect.name == "sqlite"
        position = select(rp_usage_rollup.c.seq).where(rp_usage_rollup.c.id == 1)
        done = conn.execute(position if sqlite else position.with_for_update()).scalar()
        if done is None:  # a schema made from the metadata (tests): the migration's row
            conn.execute(insert(rp_usage_rollup).values(id=1, seq=0, at=None))
            done = 0
        head = int(conn.execute(select(audit_head.c.seq).where(audit_head.c.id == 1)).scalar()
                   or 0)
        upto = min(head, int(done) + BATCH)
        usage: Counter[tuple[object, str, str, str]] = Counter()
        counted = 0
        if upto > done:
            a = audit_log.c
            rows = conn.execute(select(a.seq, a.at, a.action, a.subject, a.payload)
                                .where(a.seq > done, a.seq <= upto, a.action.in_(ACTIONS)))
            for seq, at, action, subject, payload in rows:
                use = use_of(AuditRecord(seq=seq, at=at, actor="", action=action,
                                         subject=subject, payload=payload, prev_mac="",
                                         mac=""))
                if use is None:
                    continue
                counted += 1
                key = (jst_date(at), use.relying_party, use.scope)
                usage[(*key, "calls" if use.answered else "refused")] += 1
                usage[(*key, "items")] += use.items
        self._add(conn, usage, sqlite)
        conn.execute(update(rp_usage_rollup).where(rp_usage_rollup.c.id == 1)
                     .values(seq=upto, at=self._now()))
        return upto - int(done), counted, upto < head

    @staticmethod
    def _add(conn: Connection, usage: Counter[tuple[object, str, str, str]],
             sqlite: bool) -> None:
        rows: dict[tuple[object, str, str], dict[str, object]] = {}
        for (day, party, scope, column), n in usage.items():
            row = rows.setdefault((day, party, scope), {
                "day": day, "relying_party": party, "scope": scope, "calls": 0, "refused": 0,
                "items": 0})
            row[column] = n
        if not rows:
            return
        stmt = (sqlite_insert if sqlite else pg_insert)(rp_usage)
        ex, c = stmt.excluded, rp_usage.c
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["day", "relying_party", "scope"],
            set_={"calls": c.calls + ex.calls, "refused": c.refused + ex.refused,
                  "items": c["items"] + ex["items"]}), list(rows.values()))
