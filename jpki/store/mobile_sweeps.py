"""The layered measures' reports (jpki.mobile.sweep): one row per run, one per thing it did."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.orm import Session

from jpki.model import MobileSweepReport
from jpki.store.tables import mobile_sweep_items, mobile_sweeps

ACTIONS = ("revoked", "flagged", "held")
_S, _I = mobile_sweeps.c, mobile_sweep_items.c


class SqlMobileSweeps:
    def __init__(self, session: Session) -> None:
        self._s = session

    def start(self, report: MobileSweepReport) -> None:
        self._s.execute(insert(mobile_sweeps).values(
            id=report.id, started_at=report.started_at, finished_at=report.finished_at,
            outcome=report.outcome, flag_after_days=report.flag_after_days,
            hold_after_days=report.hold_after_days, actor=report.actor))

    def add_items(self, sweep_id: str, action: str, subjects: Sequence[str]) -> None:
        if subjects:
            self._s.execute(insert(mobile_sweep_items), [
                {"sweep_id": sweep_id, "action": action, "subject": s} for s in subjects])

    def finish(self, sweep_id: str, outcome: str, at: datetime) -> None:
        self._s.execute(update(mobile_sweeps).where(_S.id == sweep_id).values(
            outcome=outcome, finished_at=at))

    def interrupt_running(self) -> list[str]:
        ids = list(self._s.execute(select(_S.id).where(_S.outcome == "running")).scalars())
        if ids:
            self._s.execute(update(mobile_sweeps).where(_S.id.in_(ids)).values(
                outcome="interrupted"))
        return ids

    def last_started(self) -> datetime | None:
        started: datetime | None = self._s.execute(select(func.max(_S.started_at))).scalar()
        return started

    @staticmethod
    def _report(row: Row[Any]) -> MobileSweepReport:
        return MobileSweepReport(
            id=row.id, started_at=row.started_at, finished_at=row.finished_at,
            outcome=row.outcome, flag_after_days=int(row.flag_after_days),
            hold_after_days=int(row.hold_after_days), actor=row.actor)

    def latest(self, limit: int) -> Sequence[MobileSweepReport]:
        rows = self._s.execute(select(mobile_sweeps).order_by(
            _S.started_at.desc(), _S.id).limit(limit)).all()
        reports = [self._report(r) for r in rows]
        if not reports:
            return reports
        counts = self._s.execute(
            select(_I.sweep_id, _I.action, func.count())
            .where(_I.sweep_id.in_([r.id for r in reports]))
            .group_by(_I.sweep_id, _I.action)).all()
        by_id = {r.id: r for r in reports}
        for report in reports:
            report.counts = dict.fromkeys(ACTIONS, 0)
        for sweep_id, action, count in counts:
            by_id[sweep_id].counts[action] = int(count)
        return reports

    def get(self, sweep_id: str) -> MobileSweepReport | None:
        row = self._s.execute(select(mobile_sweeps).where(_S.id == sweep_id)).one_or_none()
        if row is None:
            return None
        report = self._report(row)
        items: dict[str, list[str]] = {a: [] for a in ACTIONS}
        for action, subject in self._s.execute(
                select(_I.action, _I.subject).where(_I.sweep_id == sweep_id)
                .order_by(_I.action, _I.subject)):
            items.setdefault(action, []).append(subject)
        report.revoked, report.flagged, report.held = (items["revoked"], items["flagged"],
                                                       items["held"])
        report.counts = {a: len(items[a]) for a in ACTIONS}
        return report
