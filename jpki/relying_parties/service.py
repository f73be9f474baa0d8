"""Relying parties (署名検証者): registration, credentials, and who may make which call.

reference §3.1: only registered verifiers receive revocation information, and in the private
sector they come in two kinds — **platform operators** (プラットフォーム事業者), certified and
querying the CA themselves, and **service providers** that act under a platform operator. A
relying party here is a record (name, kind, parent platform operator for a service provider,
declared purposes, status) with one or more API clients (role ``rp``) that carry its scopes:

- ``status`` — POST /v1/status (jpki.relying_parties.status_lookup);
- ``linkage`` — POST /v1/linkage (jpki.relying_parties.linkage);
- ``basic4`` — POST /v1/basic4 (jpki.relying_parties.latest_basic4).

Credentials are client secrets stored only as keyed hashes (jpki.access.clients,
jpki.access.client_secrets).
Rotation gives a client a new secret and keeps the old one valid until a deadline. mTLS client
certificates are **not implemented**: uvicorn does not hand the TLS peer certificate to the ASGI
app (it needs a protocol subclass that adds the ASGI TLS extension), and the internal client CA
needs its own key in the ceremony and its own issuance; until then secrets are the only
credential.

Every call goes through :meth:`RelyingPartyService.admit`, in this order: the client is
authenticated (jpki.access.clients: unknown or wrong secret 401, suspended client 403); it is a
relying party's client (jpki.access.authz); it belongs to a registered relying party that is
active — and, for a service provider, whose platform operator is active too (403
``rp.suspended``); the relying party's token bucket has a token (429 with Retry-After); the
client has the call's scope (403, the table of jpki.access.authz). A suspension sets the
relying party *and all its clients* to suspended in one transaction, stamping both for the change
feed of the credentials each server process keeps (jpki.access.kept_clients): it refuses at once in
the process that made it, and in every other process (another worker; the server, when the
operator CLI made it) within a second — the promise made for revocations. A remembered
verification of a secret never stands in for the status.

Purposes are short codes (``account_opening``), declared at registration; each call names one,
it must be declared, and it is recorded in the call's audit record. Codes, not free text: an
audit record must never carry personal data, and a code cannot smuggle a name into it.

Refusals of calls to the relying-party routes are audited too (:meth:`record_refusal`, called by
the HTTP layer for every 4xx answer there) in a unit of work of their own, which commits the
refusal record and nothing else.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, Literal

from typing_extensions import TypeVar

from jpki.access.authz import Grant, Operation, authorize
from jpki.access.clients import ClientService, valid_client_id
from jpki.access.principals import RP_SCOPES, Principal
from jpki.audit import AuditLog, JsonValue
from jpki.errors import Forbidden, InvalidInput, NotFound
from jpki.group_audit import GroupAudit
from jpki.model import (
    ApiClient,
    ClientRole,
    ClientStatus,
    RelyingParty,
    RelyingPartyKind,
    RpStanding,
)
from jpki.ports import Clock
from jpki.protocol.consent import PURPOSE, RP_ID
from jpki.rate_limits import TokenBuckets
from jpki.relying_parties.ports import (
    AdmissionUnitOfWorkFactory,
    RelyingPartiesUnitOfWork,
    RelyingPartiesUnitOfWorkFactory,
)

MAX_PURPOSES = 20
_NAME_MAX = 100


class RelyingPartyNotFound(NotFound):
    code = "rp.not_found"
    title = "No such relying party"


class RelyingPartyNotRegistered(Forbidden):
    code = "rp.not_registered"
    title = "The client does not belong to a registered relying party"


class RelyingPartySuspended(Forbidden):
    code = "rp.suspended"
    title = "The relying party is suspended"


class PurposeUndeclared(Forbidden):
    code = "rp.purpose_undeclared"
    title = "The purpose is not one the relying party declared"


class InvalidRelyingParty(InvalidInput):
    code = "rp.invalid"
    title = "The relying-party registration is invalid"


# The call an RpContext admits (a bare RpContext: any of them).
C = TypeVar("C", bound=Operation, covariant=True, default=Operation)
P = TypeVar("P", bound=Operation)


@dataclass(frozen=True)
class RpContext(Generic[C]):
    """An admitted relying-party call: the grant of its operation, for which relying party,
    with what purposes."""

    grant: Grant[C]
    rp_id: str
    purposes: tuple[str, ...]

    @property
    def principal(self) -> Principal:
        return self.grant.principal

    @property
    def actor(self) -> str:
        return self.grant.actor

    def require_purpose(self, purpose: str) -> str:
        if not isinstance(purpose, str) or purpose not in self.purposes:
            raise PurposeUndeclared("name one of the purposes the relying party declared",
                                    field="purpose")
        return purpose


@dataclass(frozen=True)
class RelyingPartyView:
    id: str
    name: str
    kind: str
    parent_id: str | None
    purposes: list[str]
    status: str
    clients: list[dict[str, str | None]]  # client_id, status, scopes, previous secret deadline


@dataclass(frozen=True)
class NewRelyingParty:
    relying_party: RelyingPartyView
    client_id: str
    client_secret: str  # shown once, never stored


@dataclass(frozen=True)
class RotatedSecret:
    client_id: str
    client_secret: str  # shown once, never stored
    previous_valid_until: str | None  # ISO 8601, None when the old secret stopped at once


def valid_purpose(value: object) -> bool:
    return isinstance(value, str) and PURPOSE.fullmatch(value) is not None


def _clean_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(name) <= _NAME_MAX or any(not ch.isprintable() for ch in name):
        raise InvalidRelyingParty(f"a relying party's name is 1 to {_NAME_MAX} printable "
                                  "characters", field="name")
    return name


def _clean_purposes(purposes: list[str]) -> list[str]:
    clean: list[str] = []
    for purpose in purposes:
        purpose = purpose.strip() if isinstance(purpose, str) else ""
        if not PURPOSE.fullmatch(purpose):
            raise InvalidRelyingParty("a purpose is a code of 1-64 lower-case letters, digits "
                                      "and _.- starting with a letter", field="purposes")
        if purpose not in clean:
            clean.append(purpose)
    if not 1 <= len(clean) <= MAX_PURPOSES:
        raise InvalidRelyingParty(f"declare 1 to {MAX_PURPOSES} purposes", field="purposes")
    return clean


def _clean_scopes(scopes: list[str]) -> list[str]:
    clean: list[str] = []
    for scope in scopes:
        scope = scope.strip() if isinstance(scope, str) else ""
        if scope not in RP_SCOPES:
            raise InvalidRelyingParty(f"relying-party scopes are {', '.join(sorted(RP_SCOPES))}",
                                      field="scopes")
        if scope not in clean:
            clean.append(scope)
    if not clean:
        raise InvalidRelyingParty("grant at least one scope", field="scopes")
    return clean


class RelyingPartyService:
    def __init__(self, uow_factory: RelyingPartiesUnitOfWorkFactory, clock: Clock,
                 audit: AuditLog, clients: ClientService, buckets: TokenBuckets,
                 secret_overlap: timedelta = timedelta(hours=24),
                 read_uow: AdmissionUnitOfWorkFactory | None = None, *,
                 group: GroupAudit) -> None:
        self._uow = uow_factory
        self._read_uow: AdmissionUnitOfWorkFactory = read_uow or uow_factory  # only reads
        self._group = group
        self._clock = clock
        self._audit = audit
        self.clients = clients
        self.buckets = buckets
        self.secret_overlap = secret_overlap

    # --- registration ---------------------------------------------------------------------

    def register(self, grant: Grant[Literal[Operation.RP_REGISTER]], *, name: str,
                 kind: RelyingPartyKind | str, purposes: list[str], scopes: list[str],
                 parent_id: str | None = None) -> NewRelyingParty:
        # Registered nationally: a municipality's operators do not certify businesses (the
        # table's municipality rule, jpki.access.authz).
        actor = grant.require(Operation.RP_REGISTER)
        try:
            kind = RelyingPartyKind(kind)
        except ValueError as exc:
            raise InvalidRelyingParty("kind is platform_operator or service_provider",
                                      field="kind") from exc
        name = _clean_name(name)
        purpose_list = _clean_purposes(purposes)
        scope_list = _clean_scopes(scopes)
        now = self._clock.now()
        with self._uow() as uow:
            if kind is RelyingPartyKind.SERVICE_PROVIDER:
                if not parent_id:
                    raise InvalidRelyingParty("a service provider names its platform operator",
                                              field="parent_id")
                parent = uow.relying_parties.get(parent_id) if RP_ID.fullmatch(parent_id) \
                    else None
                if parent is None:
                    raise RelyingPartyNotFound("no such platform operator", field="parent_id")
                if parent.kind is not RelyingPartyKind.PLATFORM_OPERATOR:
                    raise InvalidRelyingParty("a service provider's parent must be a platform "
                                              "operator", field="parent_id")
                if parent.status is not ClientStatus.ACTIVE:
                    raise RelyingPartySuspended("the platform operator is suspended",
                                                relying_party=parent.id)
            elif parent_id:
                raise InvalidRelyingParty("only service providers have a parent",
                                          field="parent_id")
            rp = RelyingParty(id="rp_" + secrets.token_hex(8), name=name, kind=kind,
                              purposes=json.dumps(purpose_list), status=ClientStatus.ACTIVE,
                              created_at=now, updated_at=now, parent_id=parent_id or None)
            uow.relying_parties.add(rp)
            new = self.clients.prepare(name=f"rp {rp.id}", role=ClientRole.RP,
                                       scope_text=" ".join(scope_list), relying_party_id=rp.id)
            uow.clients.add(new.client)
            self._audit.record(uow, actor=actor.actor, action="rp.registered", subject=rp.id,
                               payload={"kind": kind.value, "parent": rp.parent_id,
                                        "purposes": purpose_list, "scopes": scope_list,
                                        "client": new.client.client_id})
            uow.commit()
            view = self._view(rp, [new.client])
        return NewRelyingParty(relying_party=view, client_id=new.client.client_id,
                               client_secret=new.client_secret)

    def list_all(self, grant: Grant[Literal[Operation.RP_READ]]) -> list[RelyingPartyView]:
        grant.require(Operation.RP_READ)
        with self._uow() as uow:
            return [self._view(rp, uow.relying_parties.clients_of(rp.id))
                    for rp in uow.relying_parties.all()]

    def get(self, grant: Grant[Literal[Operation.RP_READ]], rp_id: str) -> RelyingPartyView:
        grant.require(Operation.RP_READ)
        with self._uow() as uow:
            rp = self._load(uow, rp_id)
            return self._view(rp, uow.relying_parties.clients_of(rp.id))

    def rotate_secret(self, grant: Grant[Literal[Operation.RP_ROTATE_SECRET]], rp_id: str, *,
                      client_id: str | None = None,
                      overlap: timedelta | None = None) -> RotatedSecret:
        """A new secret for the relying party's client (its only one, or ``client_id``); the
        old one stays valid for ``overlap`` (default: the configured overlap; 0: at once)."""
        actor = grant.require(Operation.RP_ROTATE_SECRET)
        overlap = self.secret_overlap if overlap is None else overlap
        if overlap < timedelta(0) or overlap > timedelta(days=90):
            raise InvalidRelyingParty("the overlap is 0 to 90 days", field="overlap")
        with self._uow() as uow:
            rp = self._load(uow, rp_id)
            clients = list(uow.relying_parties.clients_of(rp.id))
            if client_id is not None:
                clients = [c for c in clients if c.client_id == client_id]
            if len(clients) != 1:
                raise InvalidRelyingParty("name the client whose secret to rotate",
                                          field="client_id")
            client = clients[0]
            now = self._clock.now()
            secret = self.clients.rotate_in(uow, client, overlap, now)
            until = client.previous_secret_expires_at
            self._audit.record(uow, actor=actor.actor, action="rp.secret_rotated",
                               subject=rp.id,
                               payload={"client": client.client_id,
                                        "previous_valid_until": until.isoformat() if until
                                        else None})
            uow.commit()
        return RotatedSecret(client_id=client.client_id, client_secret=secret,
                             previous_valid_until=until.isoformat() if until else None)

    def set_status(self, grant: Grant[Literal[Operation.RP_SET_STATUS]], rp_id: str,
                   status: ClientStatus) -> RelyingPartyView:
        """Suspend (or resume) the relying party and every client of it, in one transaction."""
        actor = grant.require(Operation.RP_SET_STATUS)
        with self._uow() as uow:
            rp = self._load(uow, rp_id)
            clients = list(uow.relying_parties.clients_of(rp.id))
            changed = rp.status is not status or any(c.status is not status for c in clients)
            if changed:
                now = self._clock.now()
                rp.status = status
                rp.updated_at = now  # also the change feed's stamp (jpki.access.kept_clients)
                for client in clients:
                    client.status = status
                    client.changed_at = now
                self._audit.record(uow, actor=actor.actor, action=f"rp.{status.value}",
                                   subject=rp.id,
                                   payload={"clients": [c.client_id for c in clients]})
                uow.commit()
            view = self._view(rp, clients)
        # Committed: at once in this process (other processes: at their next poll).
        self.clients.forget_relying_party(rp.id, [c.client_id for c in clients])
        return view

    # --- calls ----------------------------------------------------------------------------

    def admit(self, principal: Principal, operation: P,
              standing: RpStanding | None = None, *, lease: bool = True) -> RpContext[P]:
        """After authentication: a relying party's client, registered, active, within its
        rate, and allowed ``operation`` (its scope) by the table of jpki.access.authz.

        The rate is a token of the relying party's bucket, shared by every process through the
        database (jpki.rate_limits). Without ``lease`` (on the event loop) admission never
        waits for the database: when this process's block of tokens is spent it raises
        :class:`jpki.rate_limits.LeaseNeeded`, having changed nothing, and the caller admits
        again on a thread.

        ``standing`` is the relying party as the same request's authentication read it, in the
        statement that read the credentials, or as kept with them
        (jpki.access.clients.Authenticated,
        jpki.access.kept_clients); without it, it is read here."""
        # A relying party's client at all (what ping admits), before its standing is read.
        authorize(principal, Operation.RP_PING)
        if principal.relying_party is None:
            raise RelyingPartyNotRegistered("the client does not belong to a registered "
                                            "relying party")
        if standing is None or standing.relying_party != principal.relying_party:
            standing = self._standing(principal.relying_party)
        if standing is None:
            raise RelyingPartyNotRegistered("the client does not belong to a registered "
                                            "relying party")
        rp_id = standing.relying_party
        if standing.status is not ClientStatus.ACTIVE:
            raise RelyingPartySuspended("the relying party is suspended", relying_party=rp_id)
        if standing.parent_status not in (None, ClientStatus.ACTIVE):
            raise RelyingPartySuspended("the relying party's platform operator is suspended",
                                        relying_party=rp_id)
        self.buckets.admit(rp_id, lease=lease)
        grant = authorize(principal, operation)  # the call's scope
        return RpContext(grant=grant, rp_id=rp_id, purposes=standing.purposes)

    def _standing(self, rp_id: str) -> RpStanding | None:
        with self._read_uow() as uow:
            rp = uow.relying_parties.get(rp_id)
            parent = uow.relying_parties.get(rp.parent_id) if rp is not None and \
                rp.parent_id else None
        if rp is None:
            return None
        return RpStanding(relying_party=rp.id, status=rp.status,
                          parent_status=parent.status if parent is not None else None,
                          purposes=rp.purpose_list)

    def record_refusal(self, *, actor: str, route: str, status: int, code: str,
                       relying_party: str | None, purpose: str | None,
                       claimed_client: str | None = None) -> None:
        """Audit a refused call in a unit of work of its own — a group commit shared with
        concurrent calls (jpki.group_audit) — since the call itself changed nothing.

        Only identifiers and codes: the route is one of ours or "other", the purpose a declared
        code or nothing, the claimed client id of an unauthenticated call only when it has the
        form of one."""
        claimed = claimed_client if valid_client_id(claimed_client) else None
        payload: dict[str, JsonValue] = {
            "status": status, "code": code[:64], "relying_party": relying_party,
            "purpose": purpose if valid_purpose(purpose) else None, "claimed_client": claimed}
        self._group.record(actor=actor[:128], action="rp.refused", subject=route[:128],
                           payload=payload)

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _load(uow: RelyingPartiesUnitOfWork, rp_id: str) -> RelyingParty:
        # An id that cannot exist is not looked up (PostgreSQL errs on a NUL in text).
        rp = uow.relying_parties.get(rp_id) if RP_ID.fullmatch(rp_id) else None
        if rp is None:
            raise RelyingPartyNotFound("no such relying party",
                                       relying_party=rp_id if RP_ID.fullmatch(rp_id) else None)
        return rp

    @staticmethod
    def _view(rp: RelyingParty, clients: Sequence[ApiClient]) -> RelyingPartyView:
        return RelyingPartyView(
            id=rp.id, name=rp.name, kind=rp.kind.value, parent_id=rp.parent_id,
            purposes=list(rp.purpose_list), status=rp.status.value,
            clients=[{"client_id": c.client_id, "status": c.status.value, "scopes": c.scopes,
                      "previous_secret_valid_until":
                          c.previous_secret_expires_at.isoformat()
                          if c.previous_secret_expires_at else None} for c in clients])
