"""The signing-password reset's records (jpki.ports.PinResetRepository) as Core statements.

A challenge is used by one conditional UPDATE (unused, unexpired, the client's, for the purpose):
whichever CA node runs it first wins, and a second use — on any node — finds nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from jpki.model import KioskReset, OnlinePassword, PinResetChallenge
from jpki.store.tables import (
    holder_app_keys,
    kiosk_resets,
    online_passwords,
    pin_reset_challenges,
    pin_reset_refusals,
)

_C = pin_reset_challenges.c
_P = online_passwords.c
_K = kiosk_resets.c
_F = pin_reset_refusals.c


def _row(cls: Any, table: Any, row: Any) -> Any:
    m = row._mapping
    return cls(**{c.name: m[c.name] for c in table.columns})


class SqlPinReset:
    def __init__(self, session: Session) -> None:
        self._s = session

    # --- challenges ----------------------------------------------------------------------

    def add_challenge(self, challenge: PinResetChallenge) -> None:
        self._s.execute(insert(pin_reset_challenges).values(
            digest=challenge.digest, purpose=challenge.purpose, client_id=challenge.client_id,
            expires_at=challenge.expires_at, used_at=challenge.used_at))

    def use_challenge(self, digest: str, client_id: str, purpose: str,
                      now: datetime) -> PinResetChallenge | None:
        done = self._s.execute(
            update(pin_reset_challenges)
            .where(_C.digest == digest, _C.client_id == client_id, _C.purpose == purpose,
                   _C.used_at.is_(None), _C.expires_at > now)
            .values(used_at=now))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return PinResetChallenge(digest, purpose, client_id, now, now)

    def outstanding_challenges(self, client_id: str, now: datetime) -> int:
        return int(self._s.execute(
            select(func.count()).select_from(pin_reset_challenges)
            .where(_C.client_id == client_id, _C.used_at.is_(None), _C.expires_at > now)
        ).scalar_one())

    def delete_spent_challenges(self, now: datetime) -> int:
        done = self._s.execute(pin_reset_challenges.delete().where(
            or_(_C.used_at.is_not(None), _C.expires_at <= now)))
        return int(done.rowcount)  # type: ignore[attr-defined]

    # --- holder apps -----------------------------------------------------------------------

    def add_app_key(self, client_id: str, public_key: bytes, at: datetime) -> None:
        self._s.execute(insert(holder_app_keys).values(client_id=client_id,
                                                       public_key=public_key, registered_at=at))

    def app_key(self, client_id: str) -> bytes | None:
        value = self._s.execute(select(holder_app_keys.c.public_key)
                                .where(holder_app_keys.c.client_id == client_id)).scalar()
        return bytes(value) if value is not None else None

    # --- online passwords ----------------------------------------------------------------

    def add_password(self, password: OnlinePassword) -> None:
        self._s.execute(insert(online_passwords).values(
            **{c.name: getattr(password, c.name) for c in online_passwords.columns}))

    def active_password(self, card_id: int, *,
                        for_update: bool = False) -> OnlinePassword | None:
        stmt = (select(online_passwords).where(_P.card_id == card_id, _P.status == "active")
                .order_by(_P.created_at.desc(), _P.id).limit(1))
        if for_update:
            stmt = stmt.with_for_update()
        row = self._s.execute(stmt).first()
        return _row(OnlinePassword, online_passwords, row) if row is not None else None

    def end_passwords(self, card_id: int, status: str, at: datetime) -> int:
        done = self._s.execute(update(online_passwords)
                               .where(_P.card_id == card_id, _P.status == "active")
                               .values(status=status, ended_at=at))
        return int(done.rowcount)  # type: ignore[attr-defined]

    def update_password(self, password_id: str, **values: object) -> None:
        self._s.execute(update(online_passwords).where(_P.id == password_id).values(**values))

    def passwords_issued(self, *, card_id: int | None = None, app_client_id: str | None = None,
                         since: datetime) -> int:
        stmt = select(func.count()).select_from(online_passwords).where(_P.created_at >= since)
        if card_id is not None:
            stmt = stmt.where(_P.card_id == card_id)
        if app_client_id is not None:
            stmt = stmt.where(_P.app_client_id == app_client_id)
        return int(self._s.execute(stmt).scalar_one())

    # --- kiosk resets ----------------------------------------------------------------------

    def add_reset(self, reset: KioskReset) -> None:
        self._s.execute(insert(kiosk_resets).values(
            **{c.name: getattr(reset, c.name) for c in kiosk_resets.columns}))

    def reset(self, reset_id: str, *, for_update: bool = False) -> KioskReset | None:
        stmt = select(kiosk_resets).where(_K.id == reset_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._s.execute(stmt).first()
        return _row(KioskReset, kiosk_resets, row) if row is not None else None

    def finish_reset(self, reset_id: str, status: str, at: datetime,
                     error_code: str | None) -> None:
        self._s.execute(update(kiosk_resets).where(_K.id == reset_id)
                        .values(status=status, finished_at=at, error_code=error_code))

    # --- refusals ----------------------------------------------------------------------------

    def add_refusal(self, subject: str, code: str, at: datetime) -> None:
        self._s.execute(insert(pin_reset_refusals).values(subject=subject, code=code, at=at))

    def refusals(self, subject: str, since: datetime) -> int:
        return int(self._s.execute(
            select(func.count()).select_from(pin_reset_refusals)
            .where(_F.subject == subject, _F.at >= since)).scalar_one())
