"""API clients: registration and authentication.

Secrets are generated here (256 bits from the CSPRNG), shown once, and stored only as keyed
hashes (jpki.access.client_secrets: HMAC-SHA-256 in the HSM; Argon2id for secrets stored by earlier
revisions, which a successful check upgrades).

**What a check reads.** The client's credentials and its relying party's standing are kept in
memory by each process, in step with the store through a change feed polled at most four times
a second (jpki.access.kept_clients): a change made by this process takes effect at once, one made by
another process (another worker, the operator CLI) within a second — the promise OCSP makes for
revocations. A successful verification is remembered too, for a short time, keyed by the
client id and a SHA-256 of the presented secret — never the secret itself — which spares the
HSM a call per request; at most :data:`VERIFIED_CLIENTS` clients' verifications are remembered.
So a call by a client seen recently is decided from memory alone (:meth:`remembered`, which the
HTTP layer runs in its event loop), and only a miss reads the store and the HSM.

A check is split so that the HTTP layer can schedule its parts (api.deps): :meth:`remembered`
decides from memory or declines; :meth:`check` is the cheap part (the kept row or one read, one
HMAC or the memory) and either decides or hands back a :class:`LegacyCheck`, whose Argon2 run
goes to the bounded verifier's own threads (:meth:`verify_legacy`). :meth:`authenticate` does
both, blocking, for callers outside a server.

**Unknown ids cost what known ones do.** A secret that matches nothing kept is checked again
against the row read from the store (a secret just rotated by another process works at once);
an id with no row costs that read and one HMAC of the presented secret, as a wrong secret of a
known client does — one read, one HMAC — so the answer's timing does not tell whether an id
exists. Client ids are checked against their form (``jpki_`` and 24 lower-case hex digits)
before anything else: an id that cannot exist is refused like a wrong secret and never reaches
the database (PostgreSQL refuses a NUL in text with an error, not with "no such row").

Rotation: a client holds at most two secrets. Rotating makes a new one current and keeps the
replaced one valid until a deadline (``previous_secret_expires_at``), so a relying party can roll
its deployments over without an outage. A remembered verification records *which* stored hash it
matched, and counts only while that hash is still acceptable in the credentials as kept or read
— the current one, or the previous one before its deadline, by the clock at each call — so
neither a rotation nor a deadline can be bypassed by the memory.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Literal

from jpki.access.authz import Grant, Operation
from jpki.access.client_secrets import LegacyVerifier, SecretHasher, is_hmac, is_legacy
from jpki.access.kept_clients import KeptClients
from jpki.access.principals import (
    MUNICIPALITY_SCOPE,
    POST_OFFICE_STATION,
    RP_SCOPES,
    Principal,
    PrincipalKind,
)
from jpki.audit import AuditLog
from jpki.errors import BadCredentials, ClientSuspended, Forbidden, InvalidInput, VerifierBusy
from jpki.model import ApiClient, ClientCredentials, ClientRole, ClientStatus, RpStanding
from jpki.municipalities import validate_municipality_code
from jpki.ports import Clock, CommitHooks, UnitOfWorkFactory

log = logging.getLogger("jpki.access.clients")

# What `prepare` makes: "jpki_" and 12 random bytes in lower-case hex.
CLIENT_ID = re.compile(r"^jpki_[0-9a-f]{24}$")
MAX_SECRET_LENGTH = 256
STATION_KINDS = ("counter", POST_OFFICE_STATION)  # municipal counter, designated post office
_NAME = re.compile(r"^[\w .\-()]{1,100}$")
_CACHE_SECONDS = 300.0
# Clients whose verifications are remembered (up to four presented secrets each); beyond it the
# oldest quarter is forgotten (and checked in the HSM again on their next call).
VERIFIED_CLIENTS = 16_384


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


def valid_client_id(value: object) -> bool:
    return isinstance(value, str) and CLIENT_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Authenticated:
    """Who is calling, and — for a relying-party client — its relying party's standing as
    read in the same statement as the credentials, which the same request's admission uses
    instead of reading it again (jpki.relying_parties.service)."""

    principal: Principal
    standing: RpStanding | None


@dataclass(frozen=True)
class LegacyCheck:
    """A check :meth:`ClientService.check` could not decide cheaply: the secret did not match
    an HMAC hash and the client has legacy (Argon2id) ones."""

    client: ClientCredentials
    hashes: tuple[str, ...]
    presented: bytes  # SHA-256 of the presented secret (the memory's key)


class ClientService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, audit: AuditLog,
                 hasher: SecretHasher, legacy: LegacyVerifier | None = None,
                 read_uow: UnitOfWorkFactory | None = None,
                 legacy_wait_seconds: float = 10.0, kept: KeptClients | None = None,
                 verified_clients: int = VERIFIED_CLIENTS) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit
        self.hasher = hasher
        self.legacy = legacy or LegacyVerifier()
        self.legacy_wait_seconds = legacy_wait_seconds
        # Authentication only reads: on SQLite a read-only unit of work does not queue behind
        # the single writer (jpki.store.engine).
        self.kept = kept or KeptClients(read_uow or uow_factory, clock)
        # client id → {SHA-256 of a presented secret → (the stored hash it matched, expiry)}
        self._verified: dict[str, dict[bytes, tuple[str, float]]] = {}
        self._verified_clients = verified_clients
        self._lock = threading.Lock()

    def create(self, grant: Grant[Literal[Operation.CLIENT_CREATE]], *, name: str,
               role: ClientRole, scopes: list[str] | None = None,
               station_kind: str | None = None) -> NewClient:
        actor = grant.require(Operation.CLIENT_CREATE)
        if role is ClientRole.RP:
            raise InvalidInput("relying-party clients are registered with their relying party "
                               "(`jpki rp add`)", field="role")
        # fullmatch: ``$`` alone also matches before a final line feed, which would let
        # "name\n" through into the client's row and the audit record.
        if not _NAME.fullmatch(name):
            raise InvalidInput("a client name is 1-100 letters, digits, spaces or .-()",
                               field="name")
        scope_text = _validate_scopes(role, scopes or [])
        if role is ClientRole.STATION:
            station_kind = station_kind or "counter"
            if station_kind not in STATION_KINDS:
                raise InvalidInput("a station is a counter or a post_office",
                                   field="station_kind")
            if station_kind == POST_OFFICE_STATION and MUNICIPALITY_SCOPE not in scope_text:
                # A designated post office acts only for the municipalities that designated it.
                raise InvalidInput("a post office needs the municipality:<code> scopes of the "
                                   "municipalities that designated it", field="scopes")
        elif station_kind is not None:
            raise InvalidInput("only stations have a station kind", field="station_kind")
        new = self.prepare(name=name, role=role, scope_text=scope_text,
                           station_kind=station_kind)
        client = new.client
        with self._uow() as uow:
            uow.clients.add(client)
            self._audit.record(uow, actor=actor.actor, action="client.created",
                               subject=client.client_id,
                               payload={"role": role.value, "scopes": scope_text.split(),
                                        "station_kind": station_kind})
            uow.commit()
        return new

    def prepare(self, *, name: str, role: ClientRole, scope_text: str,
                station_kind: str | None = None,
                relying_party_id: str | None = None) -> NewClient:
        """A new client with a fresh secret, not yet stored: the caller adds it in its own unit
        of work (relying-party registration stores the party and its client together)."""
        secret = secrets.token_urlsafe(32)
        client_id = "jpki_" + secrets.token_hex(12)
        now = self._clock.now()
        client = ApiClient(id=None, client_id=client_id, name=name,
                           role=role, scopes=scope_text,
                           secret_hash=self.hasher.hash(client_id, secret),
                           status=ClientStatus.ACTIVE, created_at=now,
                           station_kind=station_kind, relying_party_id=relying_party_id,
                           changed_at=now)
        return NewClient(client=client, client_secret=secret)

    def rotate_in(self, uow: CommitHooks, client: ApiClient, overlap: timedelta,
                  now: datetime) -> str:
        """Give ``client`` (loaded in ``uow``) a new secret; the current one stays valid for
        ``overlap`` (zero: refused at once). Returns the new secret, which is shown once."""
        secret = secrets.token_urlsafe(32)
        if overlap > timedelta(0):
            client.previous_secret_hash = client.secret_hash
            client.previous_secret_expires_at = now + overlap
        else:
            client.previous_secret_hash = None
            client.previous_secret_expires_at = None
        client.secret_hash = self.hasher.hash(client.client_id, secret)
        client.changed_at = now  # the change feed (jpki.access.kept_clients)
        # Once committed: a read of the old row racing the commit is not kept (KeptClients).
        uow.after_commit(lambda: self.forget(client.client_id))
        return secret

    def forget(self, client_id: str) -> None:
        """A change of this client committed: drop its kept credentials and remembered
        verifications (they would be re-checked anyway)."""
        self.kept.forget(clients=[client_id])
        with self._lock:
            self._verified.pop(client_id, None)

    def forget_relying_party(self, rp_id: str, client_ids: list[str]) -> None:
        """A change of this relying party (its status) committed: drop what was kept of it and
        its clients, and of the service providers under it."""
        self.kept.forget(clients=client_ids, relying_parties=[rp_id])
        with self._lock:
            for client_id in client_ids:
                self._verified.pop(client_id, None)

    def list_clients(self, grant: Grant[Literal[Operation.CLIENT_READ]]) -> list[ApiClient]:
        """Every API client but the relying parties' (those are listed with their relying
        party)."""
        grant.require(Operation.CLIENT_READ)
        with self._uow() as uow:
            return [c for c in uow.clients.all() if c.role is not ClientRole.RP]

    def set_status(self, grant: Grant[Literal[Operation.CLIENT_SET_STATUS]], client_id: str,
                   status: ClientStatus) -> ApiClient:
        from jpki.errors import ClientNotFound

        actor = grant.require(Operation.CLIENT_SET_STATUS)
        with self._uow() as uow:
            client = uow.clients.get_by_client_id(client_id) if valid_client_id(client_id) \
                else None
            if client is None:
                raise ClientNotFound("no such client", client=client_id[:64])
            if actor.kind is not PrincipalKind.LOCAL_OPERATOR and \
                    client.role is not ClientRole.STATION:
                # A supervisor suspends stations; relying parties have their own status, and
                # operators' and the call centre's credentials stay with the CLI.
                raise Forbidden("only stations are suspended or resumed here",
                                client=client_id[:64])
            if client.status is not status:
                client.status = status
                client.changed_at = self._clock.now()  # the change feed (jpki.access.kept_clients)
                self._audit.record(uow, actor=actor.actor, action=f"client.{status.value}",
                                   subject=client_id)
                uow.commit()
        self.forget(client_id)
        return client

    # --- authentication -----------------------------------------------------------------

    def authenticate(self, client_id: str, secret: str) -> Principal:
        """Raise BadCredentials or ClientSuspended (or VerifierBusy: a legacy hash and the
        verifier is full); return the caller's principal. Blocks for a legacy check."""
        verdict = self.check(client_id, secret)
        if isinstance(verdict, LegacyCheck):
            pending = verdict
            future = self.legacy.submit(lambda: self.verify_legacy(pending, secret))
            try:
                verdict = future.result(timeout=self.legacy_wait_seconds)
            except concurrent.futures.TimeoutError:
                raise VerifierBusy("the credential check took too long; retry shortly",
                                   retry_after=1) from None
        return verdict.principal

    def remembered(self, client_id: str, secret: str) -> Authenticated | None:
        """The check from memory alone — the kept credentials (fresh: jpki.access.kept_clients) and
        a
        remembered verification whose stored hash is still acceptable — or None when memory
        cannot decide (then :meth:`check`). Never reads the store or calls the HSM, so the HTTP
        layer runs it in its event loop. Raises ClientSuspended for a suspended client."""
        if not 0 < len(secret) <= MAX_SECRET_LENGTH:
            return None
        client = self.kept.get(client_id)
        if client is None:
            return None
        presented = hashlib.sha256(secret.encode("utf-8")).digest()
        if not self._cached(client_id, presented, self._acceptable_hashes(client)):
            return None
        return self._principal(client)

    def check(self, client_id: str, secret: str) -> Authenticated | LegacyCheck:
        """The cheap part of a check: the kept credentials or one read (the client's row and
        its relying party's), and one HMAC or the memory. Raises BadCredentials or
        ClientSuspended, returns who is calling, or hands back a :class:`LegacyCheck` for
        :meth:`verify_legacy`."""
        if not valid_client_id(client_id) or not 0 < len(secret) <= MAX_SECRET_LENGTH:
            raise BadCredentials("the credentials are invalid")
        self.kept.refresh()
        presented = hashlib.sha256(secret.encode("utf-8")).digest()
        digests: dict[str, str] = {}  # the presented secret's HMAC per key label, made once
        client = self.kept.get(client_id)
        if client is not None:
            verdict = self._verify(client, presented, secret, digests)
            if isinstance(verdict, Authenticated):
                return verdict
        # Not kept, or the secret matches nothing kept: read the row, which a rotation by
        # another process may have changed since it was kept.
        client = self.kept.read(client_id)
        if client is None:
            if not digests:  # the HMAC a known client's wrong secret costs (module docstring)
                self.hasher.burn(client_id, secret)
            raise BadCredentials("the credentials are invalid")
        verdict = self._verify(client, presented, secret, digests)
        if verdict is None:
            raise BadCredentials("the credentials are invalid")
        return verdict

    def _verify(self, client: ClientCredentials, presented: bytes, secret: str,
                digests: dict[str, str]) -> Authenticated | LegacyCheck | None:
        """Who is calling, when ``secret`` matches an acceptable HMAC hash of ``client`` (or a
        remembered verification of one); a LegacyCheck when only Argon2 hashes remain to try;
        else None."""
        acceptable = self._acceptable_hashes(client)
        if not self._cached(client.client_id, presented, acceptable):
            fast = [h for h in acceptable if is_hmac(h)]
            matched = self.hasher.match(fast, client.client_id, secret, digests) if fast \
                else None
            if matched is None:
                legacy = tuple(h for h in acceptable if is_legacy(h))
                if legacy:
                    return LegacyCheck(client=client, hashes=legacy, presented=presented)
                return None
            self._remember(client.client_id, presented, matched)
        return self._principal(client)

    def verify_legacy(self, pending: LegacyCheck, secret: str) -> Authenticated:
        """The Argon2 part of a check, on the legacy verifier's threads (submit it there). A
        match replaces that stored hash by the HMAC form (audited; the secret is not)."""
        client = pending.client
        matched = next((h for h in pending.hashes if self.legacy.verify(h, secret)), None)
        if matched is None:
            raise BadCredentials("the credentials are invalid")
        upgraded = self._upgrade(client, matched, secret)
        self._remember(client.client_id, pending.presented, upgraded or matched)
        return self._principal(client)

    def _upgrade(self, client: ClientCredentials, matched: str, secret: str) -> str | None:
        """Store ``secret`` as an HMAC hash in place of the legacy hash it matched; the new
        hash, or None when not done (no key yet, the row changed meanwhile, an error)."""
        try:
            if not self.hasher.available():
                return None
            new = self.hasher.hash(client.client_id, secret)
            with self._uow() as uow:
                which = uow.clients.replace_secret_hash(client.client_id, matched, new,
                                                        self._clock.now())
                if which is None:  # rotated or upgraded by someone else in the meantime
                    return None
                self._audit.record(uow, actor="service:authentication",
                                   action="client.secret_rehashed", subject=client.client_id,
                                   payload={"secret": which, "from": "argon2id",
                                            "to": f"hmac-sha256/{self.hasher.label}"})
                uow.commit()
        except Exception as exc:  # the caller is authenticated all the same; retried next time
            log.warning("could not upgrade the stored secret of %s: %s", client.client_id,
                        type(exc).__name__)
            return None
        self.forget(client.client_id)
        return new

    def _principal(self, client: ClientCredentials) -> Authenticated:
        if client.status is not ClientStatus.ACTIVE:
            raise ClientSuspended("the client is suspended", client=client.client_id)
        return Authenticated(
            Principal.client(client.client_id, client.role, client.scope_set,
                             station_kind=client.station_kind,
                             relying_party=client.relying_party_id),
            client.standing)

    def _remember(self, client_id: str, presented: bytes, matched: str) -> None:
        with self._lock:
            entries = self._verified.get(client_id)
            if entries is None:
                if len(self._verified) >= self._verified_clients:  # bounded: oldest quarter
                    for old in list(islice(self._verified,
                                           max(1, len(self._verified) // 4))):
                        del self._verified[old]
                entries = self._verified[client_id] = {}
            if len(entries) >= 4:  # at most two secrets are ever valid together
                entries.clear()
            entries[presented] = (matched, time.monotonic() + _CACHE_SECONDS)

    def remembered_count(self) -> int:
        """Verifications remembered (tests and diagnostics)."""
        with self._lock:
            return sum(len(e) for e in self._verified.values())

    def _acceptable_hashes(self, client: ClientCredentials) -> list[str]:
        hashes = [client.secret_hash]
        deadline = client.previous_secret_expires_at
        if client.previous_secret_hash and deadline is not None and \
                self._clock.now() < deadline:
            hashes.append(client.previous_secret_hash)
        return hashes

    def _cached(self, client_id: str, presented: bytes, acceptable: list[str]) -> bool:
        with self._lock:
            entries = self._verified.get(client_id)
            entry = entries.get(presented) if entries else None
        if entry is None or entry[1] < time.monotonic():
            return False
        # Keyed by the digest already; the stored hash it matched must still be acceptable.
        return any(hmac.compare_digest(entry[0], stored) for stored in acceptable)
