"""Domain entities: residents, cards, CA generations, certificates, API clients, audit records.

Plain dataclasses. The store (``jpki.store``) maps them onto tables imperatively, so the core never
sees SQLAlchemy; a service mutates an entity inside a unit of work and the unit of work persists it.

Personal data: a :class:`Resident` holds the basic 4 information. Those fields are excluded from the
dataclass ``repr`` so that a resident printed in a log line or a traceback shows only identifiers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum, StrEnum
from typing import NamedTuple

from jpki.basic4 import Basic4, Sex


class CaKind(StrEnum):
    """The two independent roots of each generation (reference §1.1)."""

    SIGN = "sign"  # 署名用認証局
    AUTH = "auth"  # 利用者証明用認証局


class CertKind(StrEnum):
    """What a certificate is for and where its key lives (architecture §3)."""

    CARD_SIGN = "card_sign"  # 署名用電子証明書
    CARD_AUTH = "card_auth"  # 利用者証明用電子証明書
    MOBILE_SIGN = "mobile_sign"  # 移動端末設備用署名用電子証明書
    MOBILE_AUTH = "mobile_auth"  # 移動端末設備用利用者証明用電子証明書

    @property
    def ca(self) -> CaKind:
        return CaKind.SIGN if self in (CertKind.CARD_SIGN, CertKind.MOBILE_SIGN) else CaKind.AUTH

    @property
    def is_signing(self) -> bool:
        return self.ca is CaKind.SIGN

    @property
    def is_mobile(self) -> bool:
        return self in (CertKind.MOBILE_SIGN, CertKind.MOBILE_AUTH)

    @property
    def counterpart(self) -> CertKind:
        """The other certificate of the same holder and form factor (signing↔auth)."""
        return {CertKind.CARD_SIGN: CertKind.CARD_AUTH, CertKind.CARD_AUTH: CertKind.CARD_SIGN,
                CertKind.MOBILE_SIGN: CertKind.MOBILE_AUTH,
                CertKind.MOBILE_AUTH: CertKind.MOBILE_SIGN}[self]

    @property
    def card_kind(self) -> CertKind:
        """The card certificate a mobile certificate of this kind is linked to."""
        return CertKind.CARD_SIGN if self.is_signing else CertKind.CARD_AUTH


class CertStatus(StrEnum):
    """Where a certificate is in the issuance pipeline (not its revocation status)."""

    PENDING = "pending"  # intent recorded, serial reserved; the HSM may or may not have signed
    ISSUED = "issued"  # signed, checked and stored
    ABANDONED = "abandoned"  # a pending intent that never completed; treated as revoked


class RevocationReason(IntEnum):
    """RFC 5280 §5.3.1 CRLReason; the JPKI meaning of each is in reference §3.2."""

    UNSPECIFIED = 0  # J-LIS: destroyed before delivery (交付前に破棄)
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3  # J-LIS: certificate contents changed (basic 4 information)
    SUPERSEDED = 4  # J-LIS: certificate renewed
    CESSATION_OF_OPERATION = 5  # J-LIS: no longer needed
    CERTIFICATE_HOLD = 6  # J-LIS: suspended; never released for card certificates
    REMOVE_FROM_CRL = 8  # only in delta CRLs, never a stored reason
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10

    @property
    def rfc_name(self) -> str:
        return _RFC_NAMES[self]

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        """Accept the RFC 5280 camelCase name, snake_case, kebab-case, or the number."""
        from jpki.errors import InvalidReason

        key = text.strip().replace("-", "").replace("_", "").lower()
        for reason, name in _RFC_NAMES.items():
            if key in (name.lower(), str(int(reason))):
                if reason is cls.REMOVE_FROM_CRL:
                    break
                return reason
        raise InvalidReason(
            "reason must be one of: " + ", ".join(n for r, n in _RFC_NAMES.items()
                                                  if r is not cls.REMOVE_FROM_CRL),
        )  # never echo the submitted text: an operator may have typed anything into it


_RFC_NAMES = {
    RevocationReason.UNSPECIFIED: "unspecified",
    RevocationReason.KEY_COMPROMISE: "keyCompromise",
    RevocationReason.CA_COMPROMISE: "cACompromise",
    RevocationReason.AFFILIATION_CHANGED: "affiliationChanged",
    RevocationReason.SUPERSEDED: "superseded",
    RevocationReason.CESSATION_OF_OPERATION: "cessationOfOperation",
    RevocationReason.CERTIFICATE_HOLD: "certificateHold",
    RevocationReason.REMOVE_FROM_CRL: "removeFromCRL",
    RevocationReason.PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
    RevocationReason.AA_COMPROMISE: "aACompromise",
}


class RegistrySource(StrEnum):
    """The resident record the basic 4 information comes from (reference §1.3, emigrants)."""

    JUMINHYO = "juminhyo"  # 住民票: residents of Japan
    KOSEKI_FUHYO = "koseki_fuhyo"  # 戸籍の附票: emigrants (国外転出者), since 2024-05-27


class ResidentStatus(StrEnum):
    ACTIVE = "active"
    DECEASED = "deceased"  # death: every certificate revoked, nothing new issued


class CardStatus(StrEnum):
    ACTIVE = "active"
    LOST = "lost"  # certificates on hold (一時保留), never released
    RETURNED = "returned"  # 返納: certificates revoked
    REPLACED = "replaced"  # a new card was issued: certificates revoked


class ClientRole(StrEnum):
    OPERATOR = "operator"  # municipal operator: residents, events, revocation
    STATION = "station"  # enrolment station: issuance and renewal
    CALLCENTER = "callcenter"  # may hold mobile certificates and nothing else
    RP = "rp"  # relying party (署名検証者)
    # The signing-password reset with an online password (architecture §7.1): a
    # convenience-store kiosk (one machine of an operator chain), and an installed holder app
    # with a registered key.
    KIOSK = "kiosk"
    HOLDER_APP = "holder_app"


class ClientStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(eq=False)
class Resident:
    id: str
    municipality_code: str
    registry_source: RegistrySource
    status: ResidentStatus
    dv_support: bool
    created_at: datetime
    updated_at: datetime
    # Personal data: kept out of repr (architecture §9.7).
    name: str = field(repr=False)
    birth_date: date = field(repr=False)
    sex: int = field(repr=False)
    address: str = field(repr=False)
    emigrated_on: date | None = None
    version: int = 1
    # The name's reading (氏名の振り仮名, on the 住民票 since 2025-05-26), full-width katakana:
    # not basic 4 information and never in a certificate, but what people give at a counter.
    name_kana: str | None = field(default=None, repr=False)

    @property
    def basic4(self) -> Basic4:
        return Basic4(name=self.name, birth_date=self.birth_date, sex=Sex(self.sex),
                      address=self.address)

    def set_basic4(self, b4: Basic4) -> None:
        self.name = b4.name
        self.birth_date = b4.birth_date
        self.sex = int(b4.sex)
        self.address = b4.address


@dataclass(frozen=True, slots=True)
class ResidentFacts:
    """What issuance reads of a resident (jpki.issuance.card): the fields its rules and the
    signing certificate's basic 4 need, as a plain value read by a Core statement — no mapped
    entity, no identity map. Personal data kept out of ``repr`` as in :class:`Resident`."""

    id: str
    municipality_code: str
    registry_source: RegistrySource
    status: ResidentStatus
    name: str = field(repr=False)
    birth_date: date = field(repr=False)
    sex: int = field(repr=False)
    address: str = field(repr=False)
    emigrated_on: date | None = field(default=None, repr=False)

    @property
    def basic4(self) -> Basic4:
        return Basic4(name=self.name, birth_date=self.birth_date, sex=Sex(self.sex),
                      address=self.address)


@dataclass(eq=False)
class Card:
    id: int | None
    resident_id: str
    number: str
    expires_on: date
    status: CardStatus
    created_at: datetime
    status_changed_at: datetime


@dataclass(frozen=True, slots=True)
class CardFacts:
    """A card as issuance's rules read it (jpki.lifecycle.cards.choose_card)."""

    id: int
    resident_id: str
    number: str
    expires_on: date
    status: CardStatus


@dataclass(frozen=True, slots=True)
class NewCard:
    """A card issuance creates on a resident's first issuance (architecture §4.3)."""

    resident_id: str
    number: str
    expires_on: date
    created_at: datetime


@dataclass(eq=False)
class CaGeneration:
    """One key and self-signed root of one CA; every generation shares the CA's DN (§1.1)."""

    id: int | None
    ca: CaKind
    generation: int
    key_label: str
    certificate_der: bytes = field(repr=False)
    subject_key_id: bytes = field(repr=False)
    not_before: datetime
    not_after: datetime
    created_at: datetime


@dataclass(eq=False)
class OcspResponder:
    """A delegated OCSP responder certificate issued by one CA generation (RFC 6960 §4.2.2.2)."""

    id: int | None
    ca_generation_id: int
    key_label: str
    serial: str
    certificate_der: bytes = field(repr=False)
    not_before: datetime
    not_after: datetime
    created_at: datetime


@dataclass(eq=False)
class Certificate:
    id: int | None
    serial: str  # lower-case hex of the positive serial number, no leading zeros
    kind: CertKind
    resident_id: str
    card_id: int | None
    ca_generation_id: int
    status: CertStatus
    not_before: datetime
    not_after: datetime
    shard: str  # CRL shard: the municipality code written into the CRL distribution point
    registry_source: RegistrySource
    public_key_sha256: str
    created_at: datetime
    updated_at: datetime
    tbs_der: bytes | None = field(default=None, repr=False)
    der: bytes | None = field(default=None, repr=False)
    predecessor_id: int | None = None
    sibling_id: int | None = None
    revoked_at: datetime | None = None
    revocation_reason: RevocationReason | None = None
    revocation_recorded_at: datetime | None = None
    # The DER of this certificate's CRL entry, set with the revocation (jpki.lifecycle.crl_entries).
    crl_entry: bytes | None = field(default=None, repr=False)
    # When a hold was last released (removeFromCRL in the next delta CRL).
    hold_released_at: datetime | None = None
    # Who asked for it, and — for certificates a station writes onto a card — when the station
    # confirmed the card holds it (an undelivered one is revoked, §3.2 "destroyed before
    # delivery").
    issued_by: str | None = None
    delivery_required: bool = False
    delivered_at: datetime | None = None
    # Mobile certificates: the card certificate they are linked to (same notAfter, revoked
    # with it) and the device that holds their key.
    linked_id: int | None = None
    device_id: str | None = None

    def is_revoked(self, at: datetime) -> bool:
        # A revocation may be recorded ahead of its date (emigration on the departure date).
        return self.revoked_at is not None and self.revoked_at <= at

    def is_valid(self, at: datetime) -> bool:
        return (self.status is CertStatus.ISSUED and self.not_before <= at <= self.not_after
                and not self.is_revoked(at))


@dataclass(eq=False)
class CrlPublication:
    """One CRL as published: a full or delta CRL of one scope (a shard, or "arl")."""

    id: int | None
    ca_generation_id: int
    scope: str
    kind: str  # "full" | "delta"
    number: int
    base_number: int | None
    this_update: datetime
    next_update: datetime
    entries: int
    size: int
    sha256: str
    path: str  # relative to the data directory's crl/ folder
    created_at: datetime


@dataclass(frozen=True)
class DeltaRow:
    """A certificate whose CRL state changed since a base CRL."""

    serial: str
    revoked_at: datetime | None
    crl_entry: bytes | None
    hold_released_at: datetime | None


@dataclass(eq=False)
class ProofingRecord:
    """An identity proofing done at a station: its shape (document types, measures, the
    pattern), never document numbers or personal data. Single-use, short-lived."""

    id: str
    resident_id: str
    station: str  # the actor who recorded it
    presence: str
    pattern: str
    evidence: str  # JSON of document types and measures
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    used_for: str | None = None


@dataclass(frozen=True, slots=True)
class ProofingFacts:
    """What issuance checks of an identity-proofing record (jpki.lifecycle.proofing)."""

    id: str
    resident_id: str
    station: str
    expires_at: datetime
    used_at: datetime | None


class DeviceStatus(StrEnum):
    ACTIVE = "active"
    REPLACED = "replaced"  # a newer device took over (one device per person)
    REVOKED = "revoked"  # the holder revoked it (sale, disposal) or the sweep did


@dataclass(eq=False)
class MobileDevice:
    """A phone holding a resident's mobile certificates (one active device per person)."""

    id: str
    resident_id: str
    device_ref: str  # the identifier the phone reports (opaque)
    platform: str  # token label: JPKIAPGPSETOKEN (Android) or JPKIAPIOSTOKEN (iPhone)
    status: DeviceStatus
    created_at: datetime
    last_seen_at: datetime
    flagged_at: datetime | None = None


@dataclass(eq=False)
class MobileChallenge:
    """A single-use server nonce the phone signs into an application or request."""

    digest: str  # SHA-256 of the challenge (the challenge itself is never stored)
    purpose: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    # Who asked (a source address, an IPv6 /64): kept until the challenge is deleted, minutes
    # later, to bound what one source holds. None for the operator's own tools.
    source: str | None = None


@dataclass(frozen=True)
class StationTask:
    """Work a counter clerk gives an enrolment station: issue or renew a resident's card
    certificates, with the identity proofing the clerk checked (document types and measures
    only), and what the station reported since (jpki.registry.station_tasks)."""

    id: str
    station: str  # the station's actor, as the audit log names it ("client:<id>")
    resident_id: str
    kind: str  # issue | renew
    proofing: str  # JSON: the evidence, as the station records it with the CA
    status: str  # queued | claimed | done | failed | cancelled
    created_by: str
    created_at: datetime
    updated_at: datetime
    step: str | None = None  # the last step the station reported
    error_code: str | None = None  # a failed task's problem code
    serials: str | None = None  # JSON {kind: serial}: what a finished task issued


@dataclass(frozen=True)
class DvRequest:
    """A request to set or lift a resident's DV support measures, and its decision
    (jpki.registry.dv_support)."""

    id: str
    resident_id: str
    turn_on: bool
    category: str  # jpki.registry.dv_support.DvCategory
    status: str  # pending | approved | rejected
    requested_by: str  # an actor, as the audit log names it
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True)
class ConsoleAccount:
    """A person who signs in to the operator console (jpki.access.console_accounts): a counter
    clerk (scoped to one municipality), a call-centre agent or a supervisor."""

    id: int | None
    username: str
    role: str  # jpki.access.console_accounts.ConsoleRole
    municipality_code: str | None
    password_hash: str = field(repr=False)
    totp_sealed: str = field(repr=False)
    totp_last_step: int | None
    failed_logins: int
    locked_until: datetime | None
    status: str  # ClientStatus values: active, suspended
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class ConsoleSession:
    token_sha256: str = field(repr=False)
    account_id: int
    stage: str  # "password" (second factor awaited) or "active"
    csrf: str = field(repr=False)
    created_at: datetime
    last_seen_at: datetime


@dataclass(eq=False)
class ApiClient:
    id: int | None
    client_id: str
    name: str
    role: ClientRole
    scopes: str  # space-separated
    secret_hash: str = field(repr=False)
    status: ClientStatus
    created_at: datetime
    station_kind: str | None = None  # "counter" or "post_office" for station clients
    # Relying-party clients: the registered relying party they act for
    # (jpki.relying_parties.service).
    relying_party_id: str | None = None
    # Secret rotation: the secret replaced by the newest one stays valid until this instant.
    previous_secret_hash: str | None = field(default=None, repr=False)
    previous_secret_expires_at: datetime | None = None
    # Stamped by every change of the secret, the status, the role or the scopes: the feed that
    # keeps each server process's copy of the credentials in step (jpki.access.kept_clients).
    changed_at: datetime | None = None

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


@dataclass(frozen=True)
class RpStanding:
    """A relying party as one read found it: what admission checks
    (jpki.relying_parties.service)."""

    relying_party: str
    status: ClientStatus
    parent_status: ClientStatus | None  # a service provider's platform operator's
    purposes: tuple[str, ...]
    parent: str | None = None  # that platform operator's id


@dataclass(frozen=True)
class ClientCredentials:
    """What authenticating a client reads, in one statement: its row and, for a relying-party
    client, its relying party's standing (jpki.access.clients)."""

    client_id: str
    role: ClientRole
    scopes: str
    status: ClientStatus
    secret_hash: str = field(repr=False)
    previous_secret_hash: str | None = field(repr=False)
    previous_secret_expires_at: datetime | None
    relying_party_id: str | None
    standing: RpStanding | None  # None for other clients (or a party that no longer exists)
    station_kind: str | None = None  # a station's: counter or post_office (jpki.access.principals)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


@dataclass(frozen=True)
class ClientChanges:
    """What the change feed of API clients reported (jpki.access.kept_clients): the clients, and the
    relying parties, stamped at or after an instant."""

    clients: frozenset[str]
    relying_parties: frozenset[str]


class RelyingPartyKind(StrEnum):
    """reference §3.1: platform operators (PF) are certified and query the CA themselves;
    service providers (SP) act under a platform operator."""

    PLATFORM_OPERATOR = "platform_operator"
    SERVICE_PROVIDER = "service_provider"


@dataclass(eq=False)
class RelyingParty:
    """A registered relying party (署名検証者): a business, never a person."""

    id: str
    name: str
    kind: RelyingPartyKind
    purposes: str  # JSON list of declared purpose codes
    status: ClientStatus
    created_at: datetime
    # Stamped by every change (its status): the feed of jpki.access.kept_clients reads it too.
    updated_at: datetime
    parent_id: str | None = None  # a service provider's platform operator

    @property
    def purpose_list(self) -> tuple[str, ...]:
        return tuple(json.loads(self.purposes))


@dataclass(eq=False)
class Consent:
    """A holder's consent, signed with a signing key, that one relying party may receive the
    latest basic 4 information items it names, for one purpose, until it expires."""

    id: str
    resident_id: str
    relying_party_id: str
    items: str  # space-separated item names (name birth_date sex address)
    purpose: str
    nonce_digest: str  # SHA-256 of the statement's nonce: unique, so a consent counts once
    expires_at: datetime
    signed_der: bytes = field(repr=False)  # the CMS SignedData as the holder signed it
    signer_id: int
    signer_serial: str
    signed_at: datetime
    created_at: datetime
    withdrawn_at: datetime | None = None

    @property
    def item_list(self) -> tuple[str, ...]:
        return tuple(self.items.split())


@dataclass(frozen=True)
class CertificateLine:
    """A certificate as following a holder's certificate line needs it
    (jpki.relying_parties.latest_basic4):
    no DER, no personal data."""

    id: int
    serial: str
    kind: CertKind
    status: CertStatus
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    linked_id: int | None

    def is_valid(self, at: datetime) -> bool:
        # Certificate.is_valid, on these columns.
        return (self.status is CertStatus.ISSUED and self.not_before <= at <= self.not_after
                and not (self.revoked_at is not None and self.revoked_at <= at))


@dataclass(frozen=True)
class StandingConsent:
    """A standing consent read, in one statement, with what disclosing under it needs: the
    holder's resident record and the certificate that signed the consent, and whether that
    certificate has an issued successor (jpki.relying_parties.latest_basic4)."""

    id: str
    relying_party_id: str
    items: str  # space-separated item names
    purpose: str
    expires_at: datetime
    withdrawn_at: datetime | None
    resident_id: str
    resident_status: ResidentStatus
    dv_support: bool
    signer: CertificateLine
    has_successor: bool
    # Personal data: kept out of repr (architecture §9.7).
    name: str = field(repr=False)
    birth_date: date = field(repr=False)
    sex: int = field(repr=False)
    address: str = field(repr=False)

    @property
    def item_list(self) -> tuple[str, ...]:
        return tuple(self.items.split())


@dataclass(frozen=True)
class StatusRow:
    """The columns a status lookup reads (jpki.relying_parties.status_lookup, jpki.revocation.ocsp):
    no DER, no personal
    data."""

    serial: str
    kind: CertKind
    status: CertStatus
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: RevocationReason | None
    ca_generation_id: int

    @classmethod
    def of(cls, cert: Certificate) -> StatusRow:
        return cls(serial=cert.serial, kind=cert.kind, status=cert.status,
                   not_after=cert.not_after, revoked_at=cert.revoked_at,
                   revocation_reason=cert.revocation_reason,
                   ca_generation_id=cert.ca_generation_id)


class StatusChange(NamedTuple):
    """A certificate's status as the status-change feed reports it (jpki.change_feed): the row,
    and when its status last changed (``revocation_recorded_at``)."""

    row: StatusRow
    changed_at: datetime


class StoredOcspResponse(NamedTuple):
    """A response signed ahead of time, as stored (jpki.revocation.ocsp)."""

    ca_generation_id: int
    hash_algorithm: str
    serial: str
    der: bytes
    this_update: datetime
    next_update: datetime


@dataclass(frozen=True)
class CertificateStateRow:
    """The columns that hold a certificate's state, as the audit log describes it
    (jpki.lifecycle.audit_state): no DER but the stored CRL entry, no personal data."""

    serial: str
    status: CertStatus
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: RevocationReason | None
    hold_released_at: datetime | None
    crl_entry: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What issuance's rules read of a resident's earlier certificates (jpki.issuance.card):
    no DER, no personal data, and no mapped entity to build for each row."""

    id: int
    serial: str
    kind: CertKind
    card_id: int | None
    status: CertStatus
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    created_at: datetime

    def is_valid(self, at: datetime) -> bool:
        """As :meth:`Certificate.is_valid`."""
        return (self.status is CertStatus.ISSUED and self.not_before <= at <= self.not_after
                and not (self.revoked_at is not None and self.revoked_at <= at))


@dataclass(frozen=True, slots=True)
class PendingCertificate:
    """The row an issuance intent inserts (architecture §3.3 step 4): status pending, the
    to-be-signed DER kept until the signed certificate replaces it."""

    serial: str
    kind: CertKind
    resident_id: str
    card_id: int | None
    ca_generation_id: int
    not_before: datetime
    not_after: datetime
    shard: str
    registry_source: RegistrySource
    public_key_sha256: str
    created_at: datetime
    tbs_der: bytes = field(repr=False)
    predecessor_id: int | None
    issued_by: str
    delivery_required: bool
    linked_id: int | None
    device_id: str | None


@dataclass(eq=False)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    payload: str  # canonical JSON; never personal data
    prev_mac: str
    mac: str
    # The request (or job run) that caused it (jpki.correlation); None before the column existed
    # and for work with no request behind it (the CLI).
    request_id: str | None = None


@dataclass
class JobRun:
    """A background job's latest run and its totals (jpki.jobs): when, how long, what it did.

    Recorded, ``runs`` and ``failures`` are what this report adds to the totals (1 and 0 or 1
    for one run; more for a report that sums several, like the OCSP refresh's); read back, they
    are the totals."""

    job: str
    started_at: datetime
    duration_ms: int
    outcome: str  # "ok" | "failed"
    error: str | None  # the exception's type name: never its text, which may quote data
    counts: dict[str, int]
    runs: int = 1
    failures: int = 0
    last_success_at: datetime | None = None


@dataclass
class MobileSweepReport:
    """One run of the layered measures over smartphones (重層的な措置, jpki.mobile.sweep): when,
    with which thresholds, and what it did — mobile certificates revoked (serials), silent
    devices flagged and devices whose certificates it put on hold (device ids). No personal
    data: serials and device ids only."""

    id: str
    started_at: datetime
    outcome: str  # running | ok | failed | interrupted (a run killed midway)
    flag_after_days: int
    hold_after_days: int  # 0: silent devices are flagged only
    actor: str
    finished_at: datetime | None = None
    # How many of each (revoked, flagged, held); the items themselves are read for one report
    # at a time (a list of reports carries the counts only).
    counts: dict[str, int] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PinResetChallenge:
    """A challenge the CA gave a holder app or a kiosk (jpki.pin_reset): its SHA-256 only."""

    digest: str
    purpose: str  # online_password | kiosk_reset (jpki.protocol.pin_reset.ResetPurpose)
    client_id: str
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True)
class OnlinePassword:
    """An online password (jpki.pin_reset): bound to one card, kept as a scrypt hash only."""

    id: str
    card_id: int
    app_client_id: str
    password_hash: str = field(repr=False)
    status: str  # active | consumed | superseded | locked
    tries_left: int
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    consumed_by: str | None = None


@dataclass(frozen=True)
class KioskReset:
    """A reset a kiosk was authorised to make, and its outcome (jpki.pin_reset)."""

    id: str
    card_id: int
    kiosk_client_id: str
    online_password_id: str
    status: str  # authorised | done | failed
    created_at: datetime
    finished_at: datetime | None = None
    error_code: str | None = None
