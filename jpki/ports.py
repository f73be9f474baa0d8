"""What the domain core needs from the outside world, as Protocols.

Adapters implement these: ``jpki.store`` (SQLAlchemy) the unit of work and repositories, ``hsm``
(PKCS#11) the key store, ``api`` wires them together. The core depends only on this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Protocol, Self

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from jpki.model import (
    ApiClient,
    AuditRecord,
    CaGeneration,
    CaKind,
    Card,
    CardFacts,
    Certificate,
    CertificateFacts,
    CertificateStateRow,
    CertKind,
    ClientChanges,
    ClientCredentials,
    Consent,
    ConsoleAccount,
    ConsoleSession,
    CrlPublication,
    DeltaRow,
    DvRequest,
    JobRun,
    MobileChallenge,
    MobileDevice,
    NewCard,
    OcspResponder,
    PendingCertificate,
    ProofingFacts,
    ProofingRecord,
    RelyingParty,
    Resident,
    ResidentFacts,
    StandingConsent,
    StatusChange,
    StatusRow,
    StoredOcspResponse,
)
from jpki.municipalities import Municipality


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC, truncated to whole seconds."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)


class KeyStore(Protocol):
    """The HSM as the core sees it: keys by label, never key material."""

    def has_key(self, label: str) -> bool: ...
    def generate_rsa_key(self, label: str, bits: int = 2048) -> RSAPrivateKey: ...
    def rsa_key(self, label: str) -> RSAPrivateKey: ...
    def generate_hmac_key(self, label: str) -> None: ...
    def hmac_sha256(self, label: str, data: bytes) -> bytes: ...
    def key_protection(self, label: str) -> Mapping[str, bool]: ...


class MunicipalityRepository(Protocol):
    def add(self, municipality: Municipality) -> None: ...
    def get(self, code: str) -> Municipality | None: ...
    def all(self) -> Sequence[Municipality]: ...


class ResidentRepository(Protocol):
    def add(self, resident: Resident) -> None: ...
    def get(self, resident_id: str, *, for_update: bool = False) -> Resident | None: ...

    def born_on(self, birth_date: date, municipalities: Sequence[str] | None, *,
                name: str | None = None, name_kana: str | None = None,
                limit: int = 20) -> Sequence[Resident]:
        """Residents born on ``birth_date`` (in ``municipalities`` unless None) with this name
        or this reading."""
        ...


class CardRepository(Protocol):
    def add(self, card: Card) -> None: ...
    def get_by_number(self, number: str) -> Card | None: ...
    def get(self, card_id: int) -> Card | None: ...
    def active_for_resident(self, resident_id: str) -> Card | None: ...
    def latest_for_resident(self, resident_id: str) -> Card | None: ...


class CertificateRepository(Protocol):
    def add(self, cert: Certificate) -> None: ...
    def get(self, cert_id: int) -> Certificate | None: ...
    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...
    def serial_exists(self, serial: str) -> bool: ...
    def public_key_in_use(self, public_key_sha256: str) -> bool: ...
    def public_keys_in_use(self, public_key_sha256s: Sequence[str]) -> set[str]: ...
    def for_resident(self, resident_id: str, kinds: Sequence[CertKind] | None = None,
                     ) -> Sequence[Certificate]: ...
    def for_card(self, card_id: int) -> Sequence[Certificate]: ...
    def successor_of(self, cert_id: int) -> Certificate | None: ...
    def pending_before(self, before: datetime) -> Sequence[Certificate]: ...
    def undelivered_before(self, before: datetime) -> Sequence[Certificate]: ...
    def linked_to(self, cert_id: int) -> Sequence[Certificate]: ...
    def for_device(self, device_id: str) -> Sequence[Certificate]: ...
    def mobile_valid(self, at: datetime) -> Sequence[Certificate]: ...
    def status_changes_since(self, since: datetime | None) -> Sequence[StatusChange]: ...
    def status_rows(self, serials: Sequence[str]) -> Sequence[StatusRow]: ...
    def issued_successor_of(self, cert_id: int) -> Certificate | None: ...

    def serial_boundary(self, after: str | None, count: int) -> str | None:
        """The ``count``-th serial after ``after`` (from the first when None), in the store's
        order of serials; None when fewer than ``count`` follow. Splits the certificates into
        ranges of ``count`` (jpki.lifecycle.audit_state)."""
        ...

    def state_rows(self, after: str | None, upto: str | None,
                   batch: int = 5_000) -> Iterator[CertificateStateRow]:
        """The state of every certificate whose serial lies in (``after``, ``upto``] (either
        end open when None), in the order of serials, read ``batch`` rows at a time."""
        ...


class IssuanceRecords(Protocol):
    """What issuance reads and writes of the certificates on its path (architecture §3.3), and
    nothing else: plain statements, no mapped entities, since every certificate passes here."""

    def keys_in_use(self, public_key_sha256s: Sequence[str]) -> set[str]:
        """Those of these SubjectPublicKeyInfo hashes that a certificate, pending or issued,
        already holds (an abandoned intent holds none)."""
        ...

    def history(self, resident_id: str,
                kinds: Sequence[CertKind]) -> Sequence[CertificateFacts]:
        """The resident's certificates of these kinds, abandoned intents included, oldest
        first."""
        ...

    # The subjects of a batch of card orders, read and written as plain values with one
    # statement per batch (jpki.issuance.card.plan_many): what the lifecycle rules
    # (jpki.lifecycle) decide on, without an ORM load or flush per order.

    def residents(self, resident_ids: Sequence[str]) -> Mapping[str, ResidentFacts]:
        """These residents, by id, locked for this transaction (the absent ones missing)."""
        ...

    def proofings(self, proofing_ids: Sequence[str]) -> Mapping[str, ProofingFacts]:
        """These identity-proofing records, by id, locked for this transaction."""
        ...

    def active_cards(self, resident_ids: Sequence[str]) -> Mapping[str, CardFacts]:
        """Each resident's active card, by resident id (those with none missing)."""
        ...

    def card_numbers_taken(self, numbers: Sequence[str]) -> set[str]:
        """Those of these card numbers that a card record already has."""
        ...

    def histories(self, resident_ids: Sequence[str],
                  kinds: Sequence[CertKind]) -> Mapping[str, Sequence[CertificateFacts]]:
        """:meth:`history` of each resident (those with none missing)."""
        ...

    def add_cards(self, cards: Sequence[NewCard]) -> list[int]:
        """Insert active cards; their ids, in the order given. A number taken raises."""
        ...

    def use_proofings(self, uses: Sequence[tuple[str, str, datetime]]) -> None:
        """(id, purpose, when) each: mark an unused record used. Raises
        :class:`jpki.errors.InternalError` when one was used meanwhile (they are read locked,
        so that is a bug)."""
        ...

    def record_intents(self, rows: Sequence[PendingCertificate]) -> list[int]:
        """Insert pending certificates; their ids, in the order given. A serial already taken
        raises (the unique index is what makes "record the intent, then sign" safe)."""
        ...

    def mark_issued(self, updates: Sequence[tuple[int, bytes, int | None]],
                    at: datetime) -> None:
        """(id, signed DER, sibling id) each: pending → issued, the TBS dropped. Raises
        :class:`jpki.errors.InternalError` when a row is no longer pending (abandoned in
        between), so an abandoned intent is never revived."""
        ...

    def set_sibling(self, cert_id: int, sibling_id: int) -> None: ...


class CaRepository(Protocol):
    def add_generation(self, generation: CaGeneration) -> None: ...
    def generations(self, ca: CaKind | None = None) -> Sequence[CaGeneration]: ...
    def current(self, ca: CaKind) -> CaGeneration | None: ...
    def get(self, generation_id: int) -> CaGeneration | None: ...
    def add_responder(self, responder: OcspResponder) -> None: ...
    def responders(self, generation_id: int) -> Sequence[OcspResponder]: ...


class ProofingRepository(Protocol):
    def add(self, record: ProofingRecord) -> None: ...
    def get(self, proofing_id: str, *, for_update: bool = False) -> ProofingRecord | None: ...


class MobileRepository(Protocol):
    def add_device(self, device: MobileDevice) -> None: ...
    def device(self, device_id: str) -> MobileDevice | None: ...
    def active_devices(self, resident_id: str) -> Sequence[MobileDevice]: ...
    def devices_not_seen_since(self, before: datetime) -> Sequence[MobileDevice]: ...
    def add_challenge(self, challenge: MobileChallenge) -> None: ...
    def challenge(self, digest: str, *, for_update: bool = False) -> MobileChallenge | None: ...
    def outstanding_challenges(self, now: datetime, source: str | None = None,
                               ) -> tuple[int, datetime | None]: ...
    def delete_spent_challenges(self, now: datetime) -> int: ...


class ClientRepository(Protocol):
    def add(self, client: ApiClient) -> None: ...
    def get_by_client_id(self, client_id: str) -> ApiClient | None: ...
    def all(self) -> Sequence[ApiClient]: ...

    def credentials(self, client_id: str) -> ClientCredentials | None:
        """The client's row and its relying party's standing, in one statement."""
        ...

    def changes_since(self, since: datetime) -> ClientChanges:
        """The clients whose ``changed_at``, and the relying parties whose ``updated_at``, is
        at or after ``since`` (the change feed of jpki.access.kept_clients)."""
        ...

    def replace_secret_hash(self, client_id: str, old: str, new: str,
                            at: datetime) -> str | None:
        """Replace the stored hash ``old`` (current or previous secret) by ``new``, only if it
        is still stored, stamping the change ``at``; which one ("current", "previous"), or
        None."""
        ...


class RelyingPartyRepository(Protocol):
    def add(self, rp: RelyingParty) -> None: ...
    def get(self, rp_id: str) -> RelyingParty | None: ...
    def all(self) -> Sequence[RelyingParty]: ...
    def clients_of(self, rp_id: str) -> Sequence[ApiClient]: ...


class ConsentRepository(Protocol):
    def add(self, consent: Consent) -> None:
        """Raise :class:`jpki.errors.DuplicateResource` when the nonce was used before."""
        ...

    def get(self, consent_id: str, *, for_update: bool = False) -> Consent | None: ...
    def nonce_used(self, nonce_digest: str) -> bool: ...

    def standing(self, consent_id: str, *, for_update: bool = False) -> StandingConsent | None:
        """The consent with its holder's resident record and signer certificate, in one
        statement (``for_update``: the consent row locked)."""
        ...


class AuditRepository(Protocol):
    def head(self, *, for_update: bool = False) -> tuple[int, str]:
        """(seq, mac) of the newest record; (0, genesis) on an empty log."""
        ...

    def append_many(self, records: Sequence[AuditRecord]) -> None: ...

    @property
    def staged(self) -> list[tuple[datetime, str, str, str, str, str | None]]:
        """Records staged in this unit of work (at, actor, action, subject, payload, request
        id), appended to the chain when it commits; a savepoint that rolls back drops the ones
        staged inside it."""
        ...
    def set_head(self, seq: int, mac: str) -> None: ...
    def iterate(self, batch: int = 1000) -> Iterator[AuditRecord]: ...
    def count(self) -> int: ...

    def about_subjects(self, actions: Sequence[str], after: str | None, upto: str | None,
                       batch: int = 5_000) -> Iterator[AuditRecord]:
        """The records of ``actions`` whose subject lies in (``after``, ``upto``] — the same
        order as :meth:`CertificateRepository.state_rows` — in chain order, ``batch`` at a
        time."""
        ...


class CrlRepository(Protocol):
    def next_number(self, generation_id: int, scope: str) -> int: ...
    def add(self, publication: CrlPublication) -> None: ...
    def latest(self, generation_id: int, scope: str, kind: str) -> CrlPublication | None: ...
    def older_than(self, generation_id: int, scope: str, kind: str,
                   keep: int) -> Sequence[CrlPublication]: ...


class OcspResponseRepository(Protocol):
    def put(self, generation_id: int, algorithm: str, serial: str, der: bytes,
            this_update: datetime, next_update: datetime) -> None: ...
    def put_many(self, rows: Sequence[tuple[int, str, str, bytes, datetime, datetime]]
                 ) -> None: ...
    def get(self, generation_id: int, algorithm: str,
            serial: str) -> tuple[bytes, datetime, datetime] | None: ...
    def entries_for(self, serials: Sequence[str]) -> list[StoredOcspResponse]: ...
    def oldest_servable(self, now: datetime) -> datetime | None: ...
    def delete(self, keys: Sequence[tuple[int, str, str]]) -> None: ...
    def stored_after(self, after: tuple[int, str, str] | None,
                     limit: int) -> list[StoredOcspResponse]: ...
    def missing(self, algorithm: str, fresh_from: datetime, now: datetime,
                limit: int) -> list[tuple[int, str]]: ...
    def count_missing(self, algorithm: str, fresh_from: datetime, now: datetime,
                      limit: int) -> int: ...


class JobRunRepository(Protocol):
    def record(self, run: JobRun) -> None:
        """Make ``run`` the job's latest and add it to the job's totals."""
        ...

    def all(self) -> Sequence[JobRun]: ...


class CrlSnapshot(Protocol):
    """One consistent read of the revocation state, for one CRL."""

    def full_stats(self, generation_id: int, shard: str, at: datetime,
                   floor: datetime) -> tuple[int, int]:
        """(number of entries, total DER length) of a full CRL."""
        ...

    def full_entries(self, generation_id: int, shard: str, at: datetime, floor: datetime,
                     batch: int = 20_000) -> Iterator[bytes]: ...
    def delta(self, generation_id: int, shard: str, since: datetime, at: datetime,
              floor: datetime) -> list[DeltaRow]: ...


class CrlEntrySource(Protocol):
    def snapshot(self) -> AbstractContextManager[CrlSnapshot]: ...


class DvRequestRepository(Protocol):
    """Requests to set or lift DV support measures (jpki.registry.dv_support)."""

    def add(self, request: DvRequest) -> None: ...
    def get(self, request_id: str, *, for_update: bool = False) -> DvRequest | None: ...
    def pending(self, resident_id: str | None = None) -> Sequence[DvRequest]: ...
    def decide(self, request_id: str, status: str, by: str, at: datetime) -> None: ...


class ConsoleRepository(Protocol):
    """The operator console's accounts and sessions (jpki.access.console_accounts)."""

    def add_account(self, account: ConsoleAccount) -> int: ...
    def account(self, username: str, *, for_update: bool = False) -> ConsoleAccount | None: ...
    def account_by_id(self, account_id: int, *,
                      for_update: bool = False) -> ConsoleAccount | None: ...
    def accounts(self) -> Sequence[ConsoleAccount]: ...
    def update_account(self, account_id: int, **values: object) -> None: ...
    def add_session(self, session: ConsoleSession) -> None: ...
    def session(self, token_sha256: str) -> ConsoleSession | None: ...
    def touch_session(self, token_sha256: str, at: datetime) -> None: ...
    def delete_session(self, token_sha256: str) -> None: ...
    def delete_sessions_of(self, account_id: int) -> int: ...
    def delete_sessions_seen_before(self, before: datetime) -> int: ...


class UnitOfWork(Protocol):
    """One database transaction. Repositories flush; only the service that owns the use case
    commits (architecture §2). Leaving the block without commit() rolls back."""

    # Read-only properties so that adapters may expose their own repository classes.
    @property
    def municipalities(self) -> MunicipalityRepository: ...
    @property
    def residents(self) -> ResidentRepository: ...
    @property
    def cards(self) -> CardRepository: ...
    @property
    def certificates(self) -> CertificateRepository: ...
    @property
    def issuance(self) -> IssuanceRecords: ...
    @property
    def cas(self) -> CaRepository: ...
    @property
    def clients(self) -> ClientRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def crls(self) -> CrlRepository: ...
    @property
    def ocsp(self) -> OcspResponseRepository: ...
    @property
    def proofings(self) -> ProofingRepository: ...
    @property
    def mobile(self) -> MobileRepository: ...
    @property
    def relying_parties(self) -> RelyingPartyRepository: ...
    @property
    def consents(self) -> ConsentRepository: ...
    @property
    def jobs(self) -> JobRunRepository: ...
    @property
    def console(self) -> ConsoleRepository: ...
    @property
    def dv_requests(self) -> DvRequestRepository: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` inside the transaction, just before its next commit."""
        ...

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the next commit has succeeded (never if it rolls back)."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: what happens inside is undone if the block raises."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


# --- The group commit's transaction -----------------------------------------------------------


class SuccessorReads(Protocol):
    """The certificates a holder's line is followed through (old→new links, the card line of
    a phone's certificate): jpki.relying_parties.linkage, jpki.relying_parties.latest_basic4."""

    def get(self, cert_id: int) -> Certificate | None: ...
    def issued_successor_of(self, cert_id: int) -> Certificate | None: ...


class StandingConsentReads(Protocol):
    def standing(self, consent_id: str, *, for_update: bool = False) -> StandingConsent | None:
        """:meth:`ConsentRepository.standing`."""
        ...


class LineReads(Protocol):
    """What following a certificate line reads (a unit of work, or an :class:`AuditBatch`)."""

    @property
    def certificates(self) -> SuccessorReads: ...


class DisclosureReads(LineReads, Protocol):
    """What a group-commit record's check may read, in the transaction that records it
    (jpki.group_audit): a standing consent, locked, and the certificate line behind it."""

    @property
    def consents(self) -> StandingConsentReads: ...


class AuditBatch(DisclosureReads, Protocol):
    """One transaction of the group commit (jpki.group_audit): the records' checks read in it,
    then the batch's records are chained onto the head and committed, durably, together.

    Not a unit of work: nothing but the audit chain is written in it, so the store may run it
    on a connection of its own, as plain statements (jpki.store.audit_writer). It takes the
    same locks a unit of work does — on SQLite the database's write lock (and this process's
    writer lock before it), on PostgreSQL the head row ``FOR UPDATE`` — so it serialises with
    every other writer of the chain, in this process or another. Leaving the block without
    :meth:`commit` rolls back everything."""

    def head(self) -> tuple[int, str]:
        """(seq, mac) of the newest record, locked until the transaction ends."""
        ...

    def append(self, records: Sequence[AuditRecord]) -> None:
        """Insert ``records`` (consecutive, following the head read) and make the last the
        head."""
        ...

    def commit(self) -> None:
        """Commit durably: once this returns, the records survive a killed process."""
        ...


AuditBatchFactory = Callable[[], AbstractContextManager[AuditBatch]]


# --- Narrow ports -----------------------------------------------------------------------------
# A service that needs only a few repositories is given a unit of work typed as just those, so
# that the type checker refuses a reach into the rest (architecture §2.3). The store's unit of
# work satisfies each of them structurally; the composition root passes the same factory.


class CrlUnitOfWork(Protocol):
    """What CRL publication reads and writes: the CA generations, the municipalities (a shard
    each) and the record of publications. Revocations reach it through :class:`CrlEntrySource`,
    never through the certificate repository."""

    @property
    def cas(self) -> CaRepository: ...
    @property
    def municipalities(self) -> MunicipalityRepository: ...
    @property
    def crls(self) -> CrlRepository: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
    def commit(self) -> None: ...


CrlUnitOfWorkFactory = Callable[[], CrlUnitOfWork]


class StatusChangeFeed(Protocol):
    """The status-change feed (jpki.change_feed, architecture §5.5): every change of a
    certificate's status stamps ``revocation_recorded_at`` in the transaction that makes it, and
    this is how a reader asks for the changes since an instant. The store implements it
    (jpki.store.status_feed) as one index range read; the OCSP responder's refresh job reads it
    (jpki.revocation.ocsp.jobs)."""

    def changes_since(self, since: datetime | None) -> Sequence[StatusChange]:
        """Every certificate whose status changed at or after ``since`` (every one that ever
        changed when None), with the instant of its last change; a read made after a change
        committed includes it."""
        ...
