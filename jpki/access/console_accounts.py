"""The operator console's people: accounts, sign-in with two factors, and sessions.

Who. Counter clerks (窓口職員, one municipality each), call-centre agents (コールセンター) and
supervisors (national). Each account acts as the principal of its role — a clerk as an operator
scoped to its municipality, an agent as the call centre, a supervisor as a national operator —
so the console goes through the same services and the same authorisation table
(jpki.access.authz) as the REST API; the audit log names it ``console:<user name>``.

Sign-in (NIST SP 800-63B §5.1.1, §5.1.4; RFC 6238):
- **Password**, stored as Argon2id (RFC 9106; time cost 2, 19 MiB, one lane: the OWASP minimum
  for Argon2id, about 25 ms of one core). Unlike machine secrets (jpki.access.client_secrets),
  people choose and remember passwords, which a slow hash protects offline. Checks run at most
  ``concurrency`` at a time; beyond that the caller is told to retry (the lesson of the failed-
  login flood that once cost 64 MiB each, unbounded). An unknown user name costs the same hash.
- **TOTP code** (RFC 6238: HMAC-SHA-1, 30-second steps, 6 digits — what authenticator apps
  support), accepted one step either side for clock drift, and each step once only (§5.2: "the
  verifier MUST NOT accept the second attempt of the OTP after the successful validation"). The
  secret is sealed with AES-GCM under a key derived in the HSM from the client-secret key
  (jpki.access.client_secrets), with the user name as associated data, so a copy of the
  database neither gives the second factor away nor lets a sealed secret move to another row.
- **Lockout**: ``MAX_FAILURES`` failed factors in a row lock the account for ``LOCK_FOR``,
  recorded in the database (so every node and process honours it) and audited; a sign-in
  during a lockout is refused without any check. Failures also spend per-address and
  per-user-name budgets (jpki.access.auth_throttle), counted in the database like the lockout.
- Every refusal answers alike (:class:`ConsoleLoginFailed`); the audit record says why.

Sessions. The cookie holds 256 random bits; the database keeps only their SHA-256. A session is
``password`` until the code is accepted, then ``active`` under a *new* token (no fixation across
the second factor). It ends after ``IDLE_TIMEOUT`` without a request, after ``MAX_SESSION`` in
all, at sign-out, and at once when its account is locked or suspended. Each session carries its
own CSRF token for the console's forms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jpki.access.auth_throttle import AuthThrottle
from jpki.access.authz import Grant, Operation
from jpki.access.principals import MUNICIPALITY_SCOPE, Principal, PrincipalKind
from jpki.audit import AuditLog
from jpki.errors import (
    ConsoleLoginFailed,
    ConsoleSessionEnded,
    Forbidden,
    InvalidInput,
    NotFound,
    VerifierBusy,
)
from jpki.model import ClientStatus, ConsoleAccount, ConsoleSession
from jpki.municipalities import validate_municipality_code
from jpki.ports import Clock, KeyStore, UnitOfWorkFactory

__all__ = [
    "ConsoleAccounts",
    "ConsoleRole",
    "ConsoleUser",
    "NewAccount",
    "PasswordVerifier",
    "SignIn",
]

USERNAME = re.compile(r"[a-z][a-z0-9._-]{2,31}")
MIN_PASSWORD = 12  # NIST SP 800-63B §5.1.1.2 asks for 8 at least; operators get more
MAX_PASSWORD = 128  # bounds the hash's input; longer is refused, never truncated
MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
IDLE_TIMEOUT = timedelta(minutes=15)
MAX_SESSION = timedelta(hours=12)
SECOND_FACTOR_WITHIN = timedelta(minutes=5)
# A session's last-seen time is written at most this often: a page view is not a write each.
TOUCH_EVERY = timedelta(seconds=30)
TOTP_STEP = 30
TOTP_DIGITS = 6
ISSUER = "jpki"
_SEAL_CONTEXT = b"jpki-console-totp-seal/1"
_SEAL_SCHEME = "aesgcm1"


class ConsoleRole(StrEnum):
    CLERK = "clerk"  # 窓口職員: a municipal counter; scoped to one municipality
    AGENT = "agent"  # コールセンター: the call centre
    SUPERVISOR = "supervisor"  # 統括管理者: the national operator


@dataclass(frozen=True)
class ConsoleUser:
    """Who is signed in: what the console shows and what it acts as."""

    account_id: int
    username: str
    role: ConsoleRole
    municipality_code: str | None

    @property
    def principal(self) -> Principal:
        """The principal the services see (jpki.access.principals): the console is no second
        path to the data, only another way in."""
        actor = f"console:{self.username}"
        if self.role is ConsoleRole.AGENT:
            return Principal(actor=actor, kind=PrincipalKind.CALL_CENTRE)
        scopes = frozenset({MUNICIPALITY_SCOPE + self.municipality_code}) \
            if self.municipality_code else frozenset()
        return Principal(actor=actor, kind=PrincipalKind.OPERATOR, scopes=scopes)


@dataclass(frozen=True)
class NewAccount:
    """A new account's credentials, shown once to whoever made it."""

    username: str
    role: ConsoleRole
    municipality_code: str | None
    password: str = field(repr=False)
    totp_secret: str = field(repr=False)  # base32, for an authenticator app
    totp_uri: str = field(repr=False)  # otpauth:// (the same, as a QR code would carry it)


@dataclass(frozen=True)
class SignIn:
    """A session as the browser holds it: the cookie's token and the forms' CSRF token."""

    token: str = field(repr=False)
    csrf: str = field(repr=False)
    stage: Literal["password", "active"]
    user: ConsoleUser


class PasswordVerifier:
    """Argon2id for people's passwords, at most ``concurrency`` checks at a time."""

    def __init__(self, concurrency: int = 2, *, time_cost: int = 2,
                 memory_cost_kib: int = 19 * 1024) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib,
                                      parallelism=1)
        self._slots = threading.BoundedSemaphore(concurrency)
        # What an unknown user name is checked against, so that it costs what a real one does.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        if not self._slots.acquire(timeout=0.5):
            raise VerifierBusy("too many sign-ins are being checked; try again", retry_after=1)
        try:
            self._hasher.verify(stored or self._dummy, password)
            return stored is not None
        except (VerificationError, InvalidHashError):
            return False
        finally:
            self._slots.release()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class ConsoleAccounts:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, audit: AuditLog, keys: KeyStore,
                 seal_key_label: str, verifier: PasswordVerifier,
                 throttle: AuthThrottle) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._keys = keys
        self._seal_label = seal_key_label
        self._verifier = verifier
        self._throttle = throttle
        self._seal_key: bytes | None = None

    # --- accounts ------------------------------------------------------------------------

    def create(self, grant: Grant[Literal[Operation.CONSOLE_ACCOUNT_CREATE]], *, username: str,
               role: ConsoleRole, municipality_code: str | None = None,
               password: str | None = None) -> NewAccount:
        actor = grant.require(Operation.CONSOLE_ACCOUNT_CREATE)
        _manages(actor, role)
        if not USERNAME.fullmatch(username):
            raise InvalidInput("a user name is 3-32 of a-z, 0-9 and ._- starting with a letter",
                               field="username")
        if role is ConsoleRole.CLERK:
            if municipality_code is None:
                raise InvalidInput("a counter clerk works for one municipality",
                                   field="municipality")
            validate_municipality_code(municipality_code)
        elif municipality_code is not None:
            raise InvalidInput("only a counter clerk is bound to a municipality",
                               field="municipality")
        password = password if password is not None else secrets.token_urlsafe(15)
        _check_password(password)
        totp_secret = pyotp.random_base32(32)  # 160 bits, RFC 4226 §4's recommended length
        now = self._clock.now()
        with self._uow() as uow:
            if municipality_code is not None and uow.municipalities.get(municipality_code) \
                    is None:
                raise NotFound("no such municipality", field="municipality")
            if uow.console.account(username) is not None:
                raise InvalidInput("that user name is taken", field="username")
            account_id = uow.console.add_account(ConsoleAccount(
                id=None, username=username, role=role.value, municipality_code=municipality_code,
                password_hash=self._verifier.hash(password),
                totp_sealed=self._seal(username, totp_secret), totp_last_step=None,
                failed_logins=0, locked_until=None, status=ClientStatus.ACTIVE.value,
                created_at=now, changed_at=now))
            self._audit.record(uow, actor=actor.actor, action="console.account_created",
                               subject=f"console:{username}",
                               payload={"role": role.value, "municipality": municipality_code,
                                        "account": account_id})
            uow.commit()
        uri = pyotp.TOTP(totp_secret, digits=TOTP_DIGITS, interval=TOTP_STEP).provisioning_uri(
            name=username, issuer_name=ISSUER)
        return NewAccount(username=username, role=role, municipality_code=municipality_code,
                          password=password, totp_secret=totp_secret, totp_uri=uri)

    def set_status(self, grant: Grant[Literal[Operation.CONSOLE_ACCOUNT_SET_STATUS]],
                   username: str, status: ClientStatus) -> None:
        """Suspend (every session ends at once) or resume an account; resuming also lifts a
        lockout."""
        actor = grant.require(Operation.CONSOLE_ACCOUNT_SET_STATUS)
        with self._uow() as uow:
            account = uow.console.account(username, for_update=True)
            if account is None or account.id is None:
                raise NotFound("no such console account", field="username")
            _manages(actor, ConsoleRole(account.role))
            values: dict[str, object] = {"status": status.value,
                                         "changed_at": self._clock.now()}
            if status is ClientStatus.ACTIVE:
                values.update(failed_logins=0, locked_until=None)
            uow.console.update_account(account.id, **values)
            ended = uow.console.delete_sessions_of(account.id) \
                if status is ClientStatus.SUSPENDED else 0
            self._audit.record(uow, actor=actor.actor, action="console.account_status",
                               subject=f"console:{username}",
                               payload={"status": status.value, "sessions_ended": ended})
            uow.commit()

    def accounts(self, grant: Grant[Literal[Operation.CONSOLE_ACCOUNT_READ]]
                 ) -> list[ConsoleAccount]:
        grant.require(Operation.CONSOLE_ACCOUNT_READ)
        with self._uow() as uow:
            return list(uow.console.accounts())

    # --- sign-in -------------------------------------------------------------------------

    def begin(self, username: str, password: str, address: str | None) -> SignIn:
        """The first factor. Returns a session waiting for the code."""
        name = username if USERNAME.fullmatch(username) else None
        self._throttle.refresh_if_due()  # the keys other processes blocked (on this thread)
        self._throttle.check(address, name)
        if name is None or not 0 < len(password) <= MAX_PASSWORD:
            self._verifier.verify(None, password[:MAX_PASSWORD])  # the same cost
            self._throttle.failed(address, None)
            raise ConsoleLoginFailed()
        now = self._clock.now()
        with self._uow() as uow:
            account = uow.console.account(name)
        refusal = self._refusal(account, now)
        matched = self._verifier.verify(account.password_hash if account else None, password)
        if account is None or account.id is None:
            self._throttle.failed(address, name)
            raise ConsoleLoginFailed()
        if refusal is not None or not matched:
            self._failed(account, refusal or "password", address, now)
            raise ConsoleLoginFailed()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._uow() as uow:
            uow.console.add_session(ConsoleSession(
                token_sha256=_digest(token), account_id=account.id, stage="password", csrf=csrf,
                created_at=now, last_seen_at=now))
            uow.commit()
        return SignIn(token=token, csrf=csrf, stage="password", user=_user(account))

    def second_factor(self, token: str, code: str, address: str | None) -> SignIn:
        """The TOTP code for a session from :meth:`begin`. Returns the active session, under a
        new token; the old one is gone."""
        self._throttle.refresh_if_due()
        now = self._clock.now()
        with self._uow() as uow:
            session = uow.console.session(_digest(token))
            if session is None or session.stage != "password" \
                    or now - session.created_at > SECOND_FACTOR_WITHIN:
                raise ConsoleSessionEnded()
            account = uow.console.account_by_id(session.account_id, for_update=True)
            assert account is not None and account.id is not None  # ON DELETE CASCADE
            self._throttle.check(address, account.username)
            refusal = self._refusal(account, now)
            step = self._accepted_step(account, code, now) if refusal is None else None
            if step is None:
                uow.console.delete_session(session.token_sha256)
                uow.commit()
                self._failed(account, refusal or "totp", address, now)
                raise ConsoleLoginFailed()
            uow.console.delete_session(session.token_sha256)
            new_token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            uow.console.add_session(ConsoleSession(
                token_sha256=_digest(new_token), account_id=account.id, stage="active",
                csrf=csrf, created_at=now, last_seen_at=now))
            uow.console.update_account(account.id, totp_last_step=step, failed_logins=0,
                                       locked_until=None)
            self._audit.record(uow, actor=f"console:{account.username}",
                               action="console.signed_in", subject=f"console:{account.username}",
                               payload={"role": account.role})
            uow.commit()
        return SignIn(token=new_token, csrf=csrf, stage="active", user=_user(account))

    def current(self, token: str | None) -> SignIn:
        """The active session ``token`` names, or :class:`ConsoleSessionEnded`."""
        if not token or len(token) > 128:
            raise ConsoleSessionEnded()
        now = self._clock.now()
        digest = _digest(token)
        with self._uow() as uow:
            session = uow.console.session(digest)
            if session is None or session.stage != "active":
                raise ConsoleSessionEnded()
            account = uow.console.account_by_id(session.account_id)
            ended = (account is None or now - session.last_seen_at > IDLE_TIMEOUT
                     or now - session.created_at > MAX_SESSION
                     or self._refusal(account, now) is not None)
            if ended:
                uow.console.delete_session(digest)
                uow.commit()
                raise ConsoleSessionEnded()
            assert account is not None
            if now - session.last_seen_at >= TOUCH_EVERY:
                uow.console.touch_session(digest, now)
                uow.commit()
        return SignIn(token=token, csrf=session.csrf, stage="active", user=_user(account))

    def end(self, token: str | None) -> None:
        """Sign out: the session is deleted (a no-op for one that is already gone)."""
        if not token or len(token) > 128:
            return
        with self._uow() as uow:
            session = uow.console.session(_digest(token))
            if session is None:
                return
            account = uow.console.account_by_id(session.account_id)
            uow.console.delete_session(session.token_sha256)
            if account is not None and session.stage == "active":
                self._audit.record(uow, actor=f"console:{account.username}",
                                   action="console.signed_out",
                                   subject=f"console:{account.username}", payload={})
            uow.commit()

    def purge(self) -> int:
        """Delete the sessions that can no longer be used (housekeeping)."""
        with self._uow() as uow:
            deleted = uow.console.delete_sessions_seen_before(self._clock.now() - IDLE_TIMEOUT)
            uow.commit()
        return deleted

    # --- the rules -----------------------------------------------------------------------

    @staticmethod
    def _refusal(account: ConsoleAccount | None, now: datetime) -> str | None:
        if account is None:
            return None
        if account.status != ClientStatus.ACTIVE.value:
            return "suspended"
        if account.locked_until is not None and account.locked_until > now:
            return "locked"
        return None

    def _accepted_step(self, account: ConsoleAccount, code: str, now: datetime) -> int | None:
        """The time step ``code`` is valid for (one step of drift either way), if it is later
        than the last step accepted (RFC 6238 §5.2: each code is good once)."""
        if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
            return None
        secret = self._unseal(account.username, account.totp_sealed)
        totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
        current = int(now.timestamp()) // TOTP_STEP
        for step in (current - 1, current, current + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                if account.totp_last_step is not None and step <= account.totp_last_step:
                    return None
                return step
        return None

    def _failed(self, account: ConsoleAccount, why: str, address: str | None,
                now: datetime) -> None:
        """Count a failed factor: the budgets, the account's run of failures (a lockout at
        ``MAX_FAILURES``), and the audit record of why."""
        self._throttle.failed(address, account.username)
        assert account.id is not None
        with self._uow() as uow:
            fresh = uow.console.account_by_id(account.id, for_update=True)
            assert fresh is not None
            values: dict[str, object] = {}
            locked = False
            if why in ("password", "totp"):
                failures = fresh.failed_logins + 1
                locked = failures >= MAX_FAILURES
                values = {"failed_logins": 0 if locked else failures,
                          "locked_until": now + LOCK_FOR if locked else fresh.locked_until}
                uow.console.update_account(account.id, **values)
                if locked:
                    uow.console.delete_sessions_of(account.id)
            self._audit.record(uow, actor=f"console:{account.username}",
                               action="console.sign_in_refused",
                               subject=f"console:{account.username}",
                               payload={"why": why, "locked": locked})
            uow.commit()

    # --- the sealed TOTP secret ----------------------------------------------------------

    def _key(self) -> bytes:
        if self._seal_key is None:
            # A key of its own, derived in the HSM (HMAC as a PRF, with a context no client
            # secret's input can have: those start "jpki-client-secret/1").
            self._seal_key = self._keys.hmac_sha256(self._seal_label, _SEAL_CONTEXT)
        return self._seal_key

    def _seal(self, username: str, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self._key()).encrypt(nonce, secret.encode("ascii"),
                                             username.encode("ascii"))
        return "$".join((_SEAL_SCHEME, base64.b64encode(nonce).decode(),
                         base64.b64encode(sealed).decode()))

    def _unseal(self, username: str, stored: str) -> str:
        scheme, _, rest = stored.partition("$")
        nonce_b64, _, sealed_b64 = rest.partition("$")
        if scheme != _SEAL_SCHEME:
            raise ConsoleLoginFailed()
        try:
            return AESGCM(self._key()).decrypt(base64.b64decode(nonce_b64),
                                               base64.b64decode(sealed_b64),
                                               username.encode("ascii")).decode("ascii")
        except (InvalidTag, ValueError) as exc:
            raise ConsoleLoginFailed() from exc


def _manages(actor: Principal, role: ConsoleRole) -> None:
    """Supervisors are made and changed at the CLI only, by whoever holds the data directory:
    a supervisor who could make another could approve their own DV request through it (the
    two-person rule, jpki.registry.dv_support). Supervisors manage clerks and agents."""
    if role is ConsoleRole.SUPERVISOR and actor.kind is not PrincipalKind.LOCAL_OPERATOR:
        raise Forbidden("supervisor accounts are managed at the CLI (`jpki console`)")


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters",
                           field="password")


def _user(account: ConsoleAccount) -> ConsoleUser:
    assert account.id is not None
    return ConsoleUser(account_id=account.id, username=account.username,
                       role=ConsoleRole(account.role),
                       municipality_code=account.municipality_code)
