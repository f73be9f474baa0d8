"""API clients: registration and authentication.

Secrets are generated here (256 bits from the CSPRNG), shown once, and stored only as Argon2id
hashes. Argon2 is deliberately slow (tens of milliseconds), which would make every API call pay
that price; so a successful verification is remembered in memory for a short time, keyed by a
SHA-256 of the presented secret — never the secret itself — and the client's status is re-read
from the database on every call, so a suspension takes effect at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from jpki.audit import AuditLog
from jpki.errors import BadCredentials, ClientSuspended, InvalidInput
from jpki.model import ApiClient, ClientRole, ClientStatus
from jpki.municipalities import validate_municipality_code
from jpki.ports import Clock, UnitOfWorkFactory
from jpki.principals import MUNICIPALITY_SCOPE, RP_SCOPES, Principal

STATION_KINDS = ("counter", "post_office")  # municipal counter, designated post office
_NAME = re.compile(r"^[\w .\-()]{1,100}$")
_CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class NewClient:
    client: ApiClient
    client_secret: str  # shown once, never stored


def _validate_scopes(role: ClientRole, scopes: list[str]) -> str:
    clean: list[str] = []
    for scope in scopes:
        scope = scope.strip()
        if not scope:
            continue
        if role is ClientRole.RP:
            if scope not in RP_SCOPES:
                raise InvalidInput(f"relying-party scopes are {', '.join(sorted(RP_SCOPES))}",
                                   field="scopes")
        elif role in (ClientRole.OPERATOR, ClientRole.STATION):
            if not scope.startswith(MUNICIPALITY_SCOPE):
                raise InvalidInput("operator and station scopes are municipality:<code>",
                                   field="scopes")
            code = validate_municipality_code(scope[len(MUNICIPALITY_SCOPE):])
            scope = MUNICIPALITY_SCOPE + code
        else:
            raise InvalidInput("call-centre clients take no scopes", field="scopes")
        if scope not in clean:
            clean.append(scope)
    return " ".join(clean)


class ClientService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, audit: AuditLog,
                 hasher: PasswordHasher | None = None) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit
        self._hasher = hasher or PasswordHasher()
        self._verified: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        # A dummy hash so that an unknown client id costs as much as a wrong secret.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def create(self, actor: Principal, *, name: str, role: ClientRole,
               scopes: list[str] | None = None,
               station_kind: str | None = None) -> NewClient:
        if actor.role is not None:
            actor.require_role()  # only the local operator CLI creates clients
        if not _NAME.match(name):
            raise InvalidInput("a client name is 1-100 letters, digits, spaces or .-()",
                               field="name")
        scope_text = _validate_scopes(role, scopes or [])
        if role is ClientRole.STATION:
            station_kind = station_kind or "counter"
            if station_kind not in STATION_KINDS:
                raise InvalidInput("a station is a counter or a post_office",
                                   field="station_kind")
            if station_kind == "post_office" and MUNICIPALITY_SCOPE not in scope_text:
                # A designated post office acts only for the municipalities that designated it.
                raise InvalidInput("a post office needs the municipality:<code> scopes of the "
                                   "municipalities that designated it", field="scopes")
        elif station_kind is not None:
            raise InvalidInput("only stations have a station kind", field="station_kind")
        secret = secrets.token_urlsafe(32)
        now = self._clock.now()
        client = ApiClient(id=None, client_id="jpki_" + secrets.token_hex(12), name=name,
                           role=role, scopes=scope_text, secret_hash=self._hasher.hash(secret),
                           status=ClientStatus.ACTIVE, created_at=now,
                           station_kind=station_kind)
        with self._uow() as uow:
            uow.clients.add(client)
            self._audit.record(uow, actor=actor.actor, action="client.created",
                               subject=client.client_id,
                               payload={"role": role.value, "scopes": scope_text.split(),
                                        "station_kind": station_kind})
            uow.commit()
        return NewClient(client=client, client_secret=secret)

    def set_status(self, actor: Principal, client_id: str, status: ClientStatus) -> ApiClient:
        from jpki.errors import ClientNotFound

        if actor.role is not None:
            actor.require_role()
        with self._uow() as uow:
            client = uow.clients.get_by_client_id(client_id)
            if client is None:
                raise ClientNotFound("no such client", client=client_id[:64])
            if client.status is not status:
                client.status = status
                self._audit.record(uow, actor=actor.actor, action=f"client.{status.value}",
                                   subject=client_id)
                uow.commit()
        with self._lock:
            self._verified.pop(client_id, None)
        return client

    def authenticate(self, client_id: str, secret: str) -> Principal:
        """Raise BadCredentials or ClientSuspended; return the caller's principal."""
        if len(client_id) > 64 or len(secret) > 256:
            raise BadCredentials("the credentials are invalid")
        with self._uow() as uow:
            client = uow.clients.get_by_client_id(client_id)
        presented = hashlib.sha256(secret.encode("utf-8")).digest()
        if client is None:
            self._burn(secret)
            raise BadCredentials("the credentials are invalid")
        if not self._cached(client_id, presented):
            try:
                self._hasher.verify(client.secret_hash, secret)
            except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
                raise BadCredentials("the credentials are invalid") from exc
            with self._lock:
                self._verified[client_id] = (presented, time.monotonic() + _CACHE_SECONDS)
        if client.status is not ClientStatus.ACTIVE:
            raise ClientSuspended("the client is suspended", client=client_id)
        return Principal(actor=f"client:{client.client_id}", role=client.role,
                         scopes=client.scope_set)

    def _cached(self, client_id: str, presented: bytes) -> bool:
        with self._lock:
            entry = self._verified.get(client_id)
        if entry is None or entry[1] < time.monotonic():
            return False
        return hmac.compare_digest(entry[0], presented)

    def _burn(self, secret: str) -> None:
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            self._hasher.verify(self._dummy, secret)
