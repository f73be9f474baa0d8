"""The operator console's accounts and sessions (jpki.ports.ConsoleRepository), as Core
statements on the unit of work's connection: small rows, read on every console request, that
nothing maps onto an entity."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from jpki.model import ConsoleAccount, ConsoleSession
from jpki.store.tables import console_accounts, console_sessions

_A = console_accounts.c
_S = console_sessions.c


def _account(row: object) -> ConsoleAccount:
    m = row._mapping  # type: ignore[attr-defined]
    return ConsoleAccount(
        id=m["id"], username=m["username"], role=m["role"],
        municipality_code=m["municipality_code"], password_hash=m["password_hash"],
        totp_sealed=m["totp_sealed"], totp_last_step=m["totp_last_step"],
        failed_logins=m["failed_logins"], locked_until=m["locked_until"], status=m["status"],
        created_at=m["created_at"], changed_at=m["changed_at"])


class SqlConsole:
    def __init__(self, session: Session) -> None:
        self._s = session

    # --- accounts ----------------------------------------------------------------------

    def add_account(self, account: ConsoleAccount) -> int:
        values = {c: getattr(account, c) for c in (
            "username", "role", "municipality_code", "password_hash", "totp_sealed",
            "totp_last_step", "failed_logins", "locked_until", "status", "created_at",
            "changed_at")}
        new_id = self._s.execute(insert(console_accounts).values(**values)
                                 .returning(_A.id)).scalar_one()
        return int(new_id)

    def account(self, username: str, *, for_update: bool = False) -> ConsoleAccount | None:
        stmt = select(console_accounts).where(_A.username == username)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._s.execute(stmt).first()
        return _account(row) if row is not None else None

    def account_by_id(self, account_id: int, *, for_update: bool = False) -> ConsoleAccount | None:
        stmt = select(console_accounts).where(_A.id == account_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._s.execute(stmt).first()
        return _account(row) if row is not None else None

    def accounts(self) -> Sequence[ConsoleAccount]:
        return [_account(r) for r in self._s.execute(
            select(console_accounts).order_by(_A.username))]

    def update_account(self, account_id: int, **values: object) -> None:
        self._s.execute(update(console_accounts).where(_A.id == account_id).values(**values))

    # --- sessions ----------------------------------------------------------------------

    def add_session(self, session: ConsoleSession) -> None:
        self._s.execute(insert(console_sessions).values(
            token_sha256=session.token_sha256, account_id=session.account_id,
            stage=session.stage, csrf=session.csrf, created_at=session.created_at,
            last_seen_at=session.last_seen_at))

    def session(self, token_sha256: str) -> ConsoleSession | None:
        row = self._s.execute(select(console_sessions)
                              .where(_S.token_sha256 == token_sha256)).first()
        if row is None:
            return None
        m = row._mapping
        return ConsoleSession(token_sha256=m["token_sha256"], account_id=m["account_id"],
                              stage=m["stage"], csrf=m["csrf"], created_at=m["created_at"],
                              last_seen_at=m["last_seen_at"])

    def touch_session(self, token_sha256: str, at: datetime) -> None:
        self._s.execute(update(console_sessions).where(_S.token_sha256 == token_sha256)
                        .values(last_seen_at=at))

    def delete_session(self, token_sha256: str) -> None:
        self._s.execute(delete(console_sessions).where(_S.token_sha256 == token_sha256))

    def delete_sessions_of(self, account_id: int) -> int:
        result = self._s.execute(delete(console_sessions)
                                 .where(_S.account_id == account_id))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def delete_sessions_seen_before(self, before: datetime) -> int:
        result = self._s.execute(delete(console_sessions).where(_S.last_seen_at < before))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
