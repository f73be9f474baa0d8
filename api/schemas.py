"""Request and response bodies. API schemas are not table models (architecture §10)."""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.config import JsonDict

from api.request_fields import (
    AS_TEXT,
    CardNumber,
    ClientId,
    ConsentId,
    Documented,
    IsoDate,
    MunicipalityCode,
    PemPublicKey,
    ProofingId,
    Purpose,
    RelyingPartyId,
    ResidentId,
    SerialText,
    SexCode,
    SignedData,
)
from jpki.model import RevocationReason
from jpki.municipalities import ROMAJI_PATTERN
from jpki.registry.cards import CardEvent
from jpki.registry.municipalities import KANA_PATTERN, NAME_JA_PATTERN
from jpki.registry.proofing import DocumentType, Measure, Presence
from jpki.registry.residents import EventKind

# Rules across fields that the service checks (400), stated in the document (api.openapi).


def _present(name: str) -> JsonDict:
    """The field is there, and not null."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def exactly_one_of(*names: str) -> JsonDict:
    return {"oneOf": [_present(name) for name in names]}


def at_least_one_of(*names: str) -> JsonDict:
    return {"anyOf": [_present(name) for name in names]}


def required_when(field: str, cases: dict[str, list[str]]) -> JsonDict:
    """When ``field`` has one of these values, the fields listed for it are present."""
    return {"allOf": [{"if": {"properties": {field: {"const": value}}, "required": [field]},
                       "then": {"allOf": [_present(name) for name in names]}}
                      for value, names in cases.items()]}


class Strict(BaseModel):
    """Every request body: unknown fields refused, and no coercion — JSON 0 is not a date, true
    is not a sex code, "yes" is not a boolean (dates, codes and enums: api.request_fields)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=4096)


# Why measures are set (jpki.registry.dv_support.DvCategory, but "ended", which lifts them).
DvSetCategory = Literal["dv", "stalking", "child_abuse", "other"]


class ResidentIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    # The name's reading (氏名の振り仮名), in kana: what a counter finds the record by.
    name_kana: str | None = Field(default=None, min_length=1, max_length=200)
    birth_date: IsoDate
    sex: SexCode
    address: str = Field(min_length=1, max_length=400)
    municipality_code: MunicipalityCode
    # Ask for DV support measures with the registration, naming why: a supervisor decides
    # (jpki.registry.dv_support, the two-person rule); until then the resident is not under them.
    dv_request: DvSetCategory | None = None


class DvRequestIn(Strict):
    """Set (``turn_on``, with why) or lift (``category`` "ended") a resident's measures."""

    turn_on: bool
    category: DvSetCategory | Literal["ended"]


class DvRequestOut(BaseModel):
    id: str
    resident_id: str
    turn_on: bool
    category: str
    status: Literal["pending", "approved", "rejected"]
    requested_by: str
    requested_at: dt.datetime
    decided_by: str | None = None
    decided_at: dt.datetime | None = None


class DvDecisionIn(Strict):
    approve: bool


class ResidentSearchIn(Strict):
    """What a person tells a counter: their name (in kanji or in kana) and date of birth. Sent
    in the body, never in the URL, so that it reaches no access log."""

    name: str = Field(min_length=1, max_length=200)
    birth_date: IsoDate


class ResidentSearchOut(BaseModel):
    residents: list[ResidentOut]


class ResidentOut(BaseModel):
    id: str
    municipality_code: str
    registry_source: str
    status: str
    dv_support: bool
    emigrated_on: date | None
    # Whether a signing certificate may be issued today (15 or over, reference §1.4): what
    # a station needs to know, without the date of birth.
    signing_eligible: bool = False
    # Present only for operators (municipal staff keep the resident registry); for anyone else
    # the keys are absent from the JSON, not null (see convert.resident_out).
    name: str | None = None
    name_kana: str | None = None
    birth_date: date | None = None
    sex: int | None = None
    address: str | None = None


class ResidentEventIn(Strict):
    # What each kind of event needs (jpki.registry.residents.ResidentService._apply).
    model_config = ConfigDict(json_schema_extra=required_when("kind", {
        "address": ["address"], "name": ["name"], "sex": ["sex"], "birth": ["birth_date"],
        "emigration": ["date", "address"]}))

    kind: Annotated[EventKind, AS_TEXT]
    address: str | None = Field(default=None, min_length=1, max_length=400)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    sex: SexCode | None = None
    birth_date: IsoDate | None = None
    date: IsoDate | None = Field(default=None, description="date of death or departure")
    municipality_code: MunicipalityCode | None = None


class RevocationOut(BaseModel):
    serial: str
    reason: str
    revoked_at: datetime
    changed: bool


class EventOut(BaseModel):
    resident_id: str
    changed: bool
    revoked: list[RevocationOut]


class CardIn(Strict):
    number: CardNumber | None = None
    expires_on: IsoDate | None = None


class CardRegistrationIn(CardIn):
    resident_id: ResidentId


class CardEventIn(Strict):
    kind: Annotated[CardEvent, AS_TEXT]


class CardOut(BaseModel):
    number: str
    resident_id: str
    expires_on: date
    status: str
    revoked: list[RevocationOut] = []


class IssuanceIn(Strict):
    # At least one key (api.routers.certificates): a request for no certificate is refused.
    model_config = ConfigDict(
        json_schema_extra=at_least_one_of("sign_public_key", "auth_public_key"))

    resident_id: ResidentId
    card: CardIn | None = None
    # min_length: an empty key is a failed card read, not "no key" (leave the field out for that).
    sign_public_key: PemPublicKey | None = None
    auth_public_key: PemPublicKey | None = None
    proofing_id: ProofingId | None = Field(default=None,
                                           description="The identity proofing recorded for "
                                                       "this resident (POST "
                                                       "/v1/stations/proofings)")


class DocumentIn(Strict):
    type: Annotated[DocumentType, AS_TEXT]
    has_photo: bool = False
    issued_on: IsoDate | None = None


class EvidenceIn(Strict):
    """The identity documents checked at the counter (reference §5: patterns A–E)."""

    # Proxy documents belong to a proxy pick-up (jpki.registry.proofing.evaluate).
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"presence": {"const": "in_person"}}, "required": ["presence"]},
        "then": {"properties": {"proxy_documents": {"maxItems": 0}}}})

    presence: Annotated[Presence, AS_TEXT]
    applicant_documents: list[DocumentIn] = Field(default_factory=list, max_length=16)
    measures: list[Annotated[Measure, AS_TEXT]] = Field(default_factory=list, max_length=8)
    proxy_documents: list[DocumentIn] = Field(default_factory=list, max_length=16)
    proxy_measures: list[Annotated[Measure, AS_TEXT]] = Field(default_factory=list,
                                                               max_length=8)
    delegation_letter: bool = False
    hardship_proof: bool = False
    applicant_in_facility: bool = False


class ProofingIn(EvidenceIn):
    resident_id: ResidentId


class StationTaskIn(Strict):
    resident_id: ResidentId
    station: ClientId = Field(description="The station's client id")
    kind: Literal["issue", "renew", "pin_auth", "pin_sign"] = Field(
        description="Issue or renew the card's certificates, or reset its user-authentication "
                    "PIN (pin_auth) or signing password (pin_sign)")
    proofing: EvidenceIn


class StationReportIn(Strict):
    step: Literal["claimed", "pin_format", "proofing", "issuer_auth", "keygen", "issue",
                  "write", "pins", "verify", "delivery"]
    outcome: Literal["running", "done", "failed"] = "running"
    # A problem's code as the CA's problem documents spell them (jpki.errors: card.removed).
    error_code: str | None = Field(default=None, max_length=64,
                                   pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
    serials: dict[Literal["card_sign", "card_auth"],
                  Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,40}$")]] | None = None


class StationTaskOut(BaseModel):
    id: str
    station: str
    resident_id: str
    kind: str
    status: Literal["queued", "claimed", "done", "failed", "cancelled"]
    step: str | None
    error_code: str | None
    serials: dict[str, str] | None
    proofing: dict[str, Any]
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime


class ProofingOut(BaseModel):
    id: str
    resident_id: str
    pattern: str
    presence: str
    expires_at: dt.datetime


class PinResetIn(Strict):
    resident_id: ResidentId
    pin: Literal["auth", "sign"]
    proofing_id: ProofingId


class PinResetOut(BaseModel):
    resident_id: str
    pin: str
    authorised_at: dt.datetime


class DeliveryOut(BaseModel):
    serial: str
    delivered_at: dt.datetime


class CertificateOut(BaseModel):
    serial: str
    kind: str
    status: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    predecessor: str | None = None
    successor: str | None = None
    sibling: str | None = None
    shard: str | None = None
    issuer: str | None = None
    pem: str | None = None


class IssuanceOut(BaseModel):
    card_number: str
    certificates: list[CertificateOut]


# A batch is one chunk of the bulk path (jpki.issuance.service.issue_batch signs 32 orders per
# chunk): larger batches belong in several requests, each bounded in time. 32 orders with two
# PEM keys each are about 32 KB, within the default body limit (JPKI_MAX_BODY_BYTES, 64 KiB).
MAX_BATCH_ORDERS = 32


class IssuanceBatchIn(Strict):
    """Several residents' issuances in one request: a municipality's pre-delivery run
    (交付前設定), each card's keys generated on the card at the station first."""

    orders: list[IssuanceIn] = Field(min_length=1, max_length=MAX_BATCH_ORDERS)


class BatchItemOut(BaseModel):
    """One order's outcome: ``status`` 201 with what was issued, or the problem (RFC 9457)
    that refused it — an order refused leaves nothing behind and does not stop the others."""

    status: int
    issued: IssuanceOut | None = None
    problem: dict[str, Any] | None = None


class IssuanceBatchOut(BaseModel):
    results: list[BatchItemOut]


class RevocationIn(Strict):
    # RevocationReason.parse also takes snake_case, kebab-case and the number; removeFromCRL is
    # for delta CRLs only (RFC 5280 §5.3.1).
    reason: str = Field(min_length=1, max_length=40,
                        description="RFC 5280 CRLReason name, e.g. keyCompromise",
                        json_schema_extra={"enum": [
                            r.rfc_name for r in RevocationReason
                            if r is not RevocationReason.REMOVE_FROM_CRL]})


class ChallengeIn(Strict):
    purpose: Literal["application", "revocation", "lift", "check_in"]


class ChallengeOut(BaseModel):
    challenge: str  # base64
    expires_at: dt.datetime


class SignedIn(Strict):
    signed_data: SignedData = Field(description="A CMS SignedData (DER), base64")


class MobileCertificateOut(BaseModel):
    serial: str
    kind: str
    not_after: dt.datetime
    linked_to: str | None = None
    pem: str


class MobileIssuedOut(BaseModel):
    device_id: str
    certificates: list[MobileCertificateOut]
    chain: list[str]


class CheckInOut(BaseModel):
    device_id: str
    last_seen_at: dt.datetime


class HoldIn(Strict):
    resident_id: ResidentId


class HoldOut(BaseModel):
    held: list[RevocationOut]


# --- relying parties (jpki.relying_parties.service, status_lookup, linkage, consents,
# latest_basic4) --


class RelyingPartyIn(Strict):
    # A service provider names its platform operator; a platform operator has no parent
    # (jpki.relying_parties.service.RelyingPartyService.register).
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"properties": {"kind": {"const": "platform_operator"}, "parent_id": {"type": "null"}}},
        {"properties": {"kind": {"const": "service_provider"},
                        "parent_id": {"type": "string"}}, "required": ["parent_id"]}]})

    name: str = Field(min_length=1, max_length=100)
    kind: Literal["platform_operator", "service_provider"]
    parent_id: RelyingPartyId | None = Field(default=None,
                                             description="A service provider's platform operator")
    purposes: list[Purpose] = Field(min_length=1, max_length=20,
                                    description="Purpose codes, e.g. account_opening")
    scopes: list[Literal["status", "linkage", "basic4"]] = Field(min_length=1, max_length=3)


class RpClientOut(BaseModel):
    client_id: str
    status: str
    scopes: list[str]
    previous_secret_valid_until: dt.datetime | None = None


class RelyingPartyOut(BaseModel):
    id: str
    name: str
    kind: str
    parent_id: str | None = None
    purposes: list[str]
    status: str
    clients: list[RpClientOut]


class RelyingPartyCreatedOut(BaseModel):
    relying_party: RelyingPartyOut
    client_id: str
    client_secret: str = Field(description="Shown once; only a hash is kept")


class SecretRotationIn(Strict):
    client_id: ClientId | None = None
    overlap_seconds: int | None = Field(default=None, ge=0, le=90 * 86400,
                                        description="How long the old secret stays valid")


class SecretRotationOut(BaseModel):
    client_id: str
    client_secret: str = Field(description="Shown once; only a hash is kept")
    previous_valid_until: dt.datetime | None = None


class RelyingPartyStatusIn(Strict):
    status: Literal["active", "suspended"]


class PingOut(BaseModel):
    ok: bool


class StatusIn(Strict):
    purpose: Purpose = Field(description="A declared purpose code")
    # The limit (1,000) is checked by the service, which answers status.batch_too_large.
    serials: list[SerialText] = Field(json_schema_extra={"minItems": 1, "maxItems": 1000},
                               description="Certificate serials, hexadecimal")


class SerialStatusOut(BaseModel):
    serial: str
    status: Literal["good", "revoked", "unknown"]
    reason: str | None = None
    revoked_at: dt.datetime | None = None
    form: Literal["card", "mobile"] | None = None
    usage: Literal["sign", "auth"] | None = None
    not_after: dt.datetime | None = None
    expired: bool | None = None


class StatusOut(BaseModel):
    produced_at: dt.datetime
    results: list[SerialStatusOut]


class LinkageIn(Strict):
    # The evidence: a signature or a consent, not both
    # (jpki.relying_parties.linkage.LinkageService.link).
    model_config = ConfigDict(json_schema_extra=exactly_one_of("signed_data", "consent_id"))

    purpose: Purpose = Field(description="A declared purpose code")
    serial: SerialText
    signed_data: SignedData | None = Field(default=None,
                                           description="A CMS SignedData (DER, base64) made "
                                                       "with this certificate's key")
    consent_id: ConsentId | None = None


class LinkageOut(BaseModel):
    serial: str
    form: Literal["card", "mobile"]
    usage: Literal["sign", "auth"]
    status: Literal["good", "revoked", "unknown"]
    successors: list[str]
    current_serial: str | None = None
    sibling: str | None = None
    current_sibling: str | None = None


class Basic4In(Strict):
    # A new consent or one submitted before
    # (jpki.relying_parties.latest_basic4.LatestBasic4Service.provide).
    model_config = ConfigDict(json_schema_extra=exactly_one_of("consent", "consent_id"))

    purpose: Purpose = Field(description="A declared purpose code")
    consent: SignedData | None = Field(default=None,
                                       description="The consent the holder signed: CMS "
                                                   "SignedData (DER), base64")
    consent_id: ConsentId | None = Field(default=None, description="A consent submitted earlier")


class Basic4ItemsOut(BaseModel):
    name: str | None = None
    birth_date: dt.date | None = None
    sex: int | None = None
    address: str | None = None


class Basic4Out(BaseModel):
    consent_id: str
    current_signing_serial: str
    consent_expires_at: dt.datetime
    items: Basic4ItemsOut


class WithdrawalOut(BaseModel):
    consent_id: str
    withdrawn_at: dt.datetime


# --- the municipality registry (jpki.registry.municipalities, architecture §5.6) --------------

# The service's rules (400), stated in the document.
MunicipalityNameJa = Annotated[str, Field(min_length=1, max_length=81),
                               Documented.of(pattern=NAME_JA_PATTERN)]
MunicipalityKana = Annotated[str, Field(min_length=1, max_length=121),
                             Documented.of(pattern=KANA_PATTERN)]
MunicipalityRomaji = Annotated[str, Field(min_length=1, max_length=58),
                               Documented.of(pattern=ROMAJI_PATTERN)]


class MunicipalityIn(Strict):
    """A municipality to register. The romaji is what certificates' subject and CRL
    distribution point will carry; without it, it is derived from the reading by the documented
    rule (jpki.municipalities.romaji_from_kana)."""

    model_config = ConfigDict(json_schema_extra=at_least_one_of("name_kana", "name_romaji"))

    code: MunicipalityCode = Field(description="全国地方公共団体コード, with its check digit")
    name_ja: MunicipalityNameJa = Field(description="Ending in 市, 区, 町 or 村; a designated "
                                                    "city's ward after one space (札幌市 中央区)")
    name_kana: MunicipalityKana | None = Field(default=None,
                                               description="The reading, in hiragana")
    name_romaji: MunicipalityRomaji | None = None


class MunicipalityRenameIn(Strict):
    """A new name for future certificates. A new romaji opens a new CRL shard; certificates
    already issued keep the distribution point they name."""

    model_config = ConfigDict(json_schema_extra=at_least_one_of("name_ja", "name_kana",
                                                                "name_romaji"))

    name_ja: MunicipalityNameJa | None = None
    name_kana: MunicipalityKana | None = None
    name_romaji: MunicipalityRomaji | None = None


class MunicipalityMergeIn(Strict):
    into: MunicipalityCode = Field(description="The municipality its residents move to")


class CrlShardOut(BaseModel):
    name: str
    prefecture_romaji: str
    city_romaji: str
    closed_at: datetime | None
    crl_url: str = Field(description="The signing CA's current generation's full CRL")


class MunicipalityOut(BaseModel):
    code: str
    name_ja: str
    name_kana: str | None
    name_romaji: str
    prefecture: str
    status: Literal["active", "merged"]
    merged_into: str | None
    shard: str = Field(description="The CRL shard new certificates are issued under")
    shards: list[CrlShardOut]
    residents: int | None = Field(description="Counted when one municipality is asked for")


class MunicipalityRenamedOut(BaseModel):
    municipality: MunicipalityOut
    previous_shard: str
    shard: str


class MunicipalityMergedOut(BaseModel):
    merged: MunicipalityOut
    into: MunicipalityOut
    residents_moved: int
    closed_shard: str
