"""Tables, and the imperative mapping of the domain dataclasses onto them.

The domain (``jpki.model``) knows nothing of SQLAlchemy; this module maps its dataclasses
imperatively (``registry.map_imperatively``), so the core can mutate entities inside a unit of work
and the session persists them. Alembic's env imports only :data:`metadata` and
:func:`include_for` from here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import registry
from sqlalchemy.sql.expression import false

from jpki.model import (
    ApiClient,
    CaGeneration,
    CaKind,
    Card,
    CardStatus,
    Certificate,
    CertKind,
    CertStatus,
    ClientRole,
    ClientStatus,
    Consent,
    CrlPublication,
    DeviceStatus,
    MobileChallenge,
    MobileDevice,
    OcspResponder,
    ProofingRecord,
    RegistrySource,
    RelyingParty,
    RelyingPartyKind,
    Resident,
    ResidentStatus,
    RevocationReason,
)
from jpki.store.types import IntEnumType, UtcDateTime
from jpki.telemetry import OCSP_BUCKETS

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _enum(cls: type[StrEnum], name: str) -> Enum:
    # Stored as the value text with a CHECK constraint: portable, readable in SQL, no native
    # PostgreSQL enum type to migrate when a member is added.
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=32,
                values_callable=lambda e: [m.value for m in e], validate_strings=True)


municipalities = Table(
    "municipalities", metadata,
    Column("code", String(6), primary_key=True),
    Column("name_ja", String(100), nullable=False),
    Column("name_romaji", String(100), nullable=False),
    # Added by migration 0020 (the registry, architecture §5.6); the three above are what
    # certificates issued before it name, and stay as they were.
    Column("name_kana", String(100), nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("merged_into", String(6), nullable=True),
    # The CRL shard new certificates are issued under (crl_shards.name). Written for every row;
    # nullable only because SQLite cannot add a NOT NULL column without a default.
    Column("shard", String(16), nullable=True),
)

# CRL shards (architecture §5.6): each freezes the distribution-point name it was opened with,
# so a rename never changes the name certificates already issued point at (reference §1.2).
# No two shards share a distribution-point name: a CRL of one would answer for the other's
# certificates (RFC 5280 §6.3.3 (b)(2)).
crl_shards = Table(
    "crl_shards", metadata,
    Column("name", String(16), primary_key=True),
    Column("municipality_code", String(6), ForeignKey("municipalities.code"), nullable=False,
           index=True),
    Column("prefecture_romaji", String(100), nullable=False),
    Column("city_romaji", String(100), nullable=False),
    Column("opened_at", UtcDateTime, nullable=True),  # NULL: opened before the registry
    Column("closed_at", UtcDateTime, nullable=True),  # no new certificate since
    UniqueConstraint("prefecture_romaji", "city_romaji", name="uq_crl_shards_dp_name"),
)

residents = Table(
    "residents", metadata,
    Column("id", String(32), primary_key=True),
    Column("municipality_code", String(6), ForeignKey("municipalities.code"), nullable=False,
           index=True),
    Column("registry_source", _enum(RegistrySource, "registry_source"), nullable=False),
    Column("status", _enum(ResidentStatus, "resident_status"), nullable=False),
    Column("dv_support", Boolean, nullable=False, default=False),
    Column("name", String(200), nullable=False),
    Column("birth_date", Date, nullable=False),
    Column("sex", SmallInteger, nullable=False),
    Column("address", String(400), nullable=False),
    Column("name_kana", String(200), nullable=True),
    Column("emigrated_on", Date, nullable=True),
    Column("version", Integer, nullable=False, default=1),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

cards = Table(
    "cards", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("resident_id", String(32), ForeignKey("residents.id"), nullable=False),
    Column("number", String(32), nullable=False, unique=True),
    Column("expires_on", Date, nullable=False),
    Column("status", _enum(CardStatus, "card_status"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("status_changed_at", UtcDateTime, nullable=False),
    Index("ix_cards_resident_status", "resident_id", "status"),
)

ca_generations = Table(
    "ca_generations", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ca", _enum(CaKind, "ca_kind"), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("key_label", String(64), nullable=False, unique=True),
    Column("certificate_der", LargeBinary, nullable=False),
    Column("subject_key_id", LargeBinary(32), nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("ca", "generation", name="uq_ca_generations_ca_generation"),
)

ocsp_responders = Table(
    "ocsp_responders", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ca_generation_id", Id, ForeignKey("ca_generations.id"), nullable=False, index=True),
    Column("key_label", String(64), nullable=False),
    Column("serial", String(40), nullable=False, unique=True),
    Column("certificate_der", LargeBinary, nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

certificates = Table(
    "certificates", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Unique serials are what makes "record the intent, then sign" safe (architecture §3).
    Column("serial", String(40), nullable=False, unique=True),
    Column("kind", _enum(CertKind, "cert_kind"), nullable=False),
    Column("resident_id", String(32), ForeignKey("residents.id"), nullable=False),
    Column("card_id", Id, ForeignKey("cards.id"), nullable=True, index=True),
    Column("ca_generation_id", Id, ForeignKey("ca_generations.id"), nullable=False),
    Column("status", _enum(CertStatus, "cert_status"), nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    Column("shard", String(16), nullable=False),
    Column("registry_source", _enum(RegistrySource, "cert_registry_source"), nullable=False),
    Column("public_key_sha256", String(64), nullable=False, index=True),
    Column("tbs_der", LargeBinary, nullable=True),
    Column("der", LargeBinary, nullable=True),
    Column("predecessor_id", Id, ForeignKey("certificates.id"), nullable=True, index=True),
    Column("sibling_id", Id, ForeignKey("certificates.id"), nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revocation_reason", IntEnumType(RevocationReason), nullable=True),
    Column("revocation_recorded_at", UtcDateTime, nullable=True),
    Column("crl_entry", LargeBinary, nullable=True),
    Column("hold_released_at", UtcDateTime, nullable=True),
    Column("issued_by", String(128), nullable=True),
    Column("linked_id", Id, ForeignKey("certificates.id"), nullable=True, index=True),
    Column("device_id", String(32), ForeignKey("mobile_devices.id"), nullable=True),
    Column("delivery_required", Boolean, nullable=False, default=False,
           server_default=false()),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_certificates_resident_kind", "resident_id", "kind"),
    Index("ix_certificates_status_created", "status", "created_at"),
    # CRL shards (per CA generation and municipality) and delta CRLs read these.
    Index("ix_certificates_shard_revoked", "ca_generation_id", "shard", "revoked_at"),
    Index("ix_certificates_revocation_recorded", "revocation_recorded_at"),
    # A delta CRL's second statement (jpki.store.crls.SqlCrlSnapshot.delta): changes recorded
    # since its base, per shard.
    Index("ix_certificates_shard_recorded", "ca_generation_id", "shard",
          "revocation_recorded_at"),
)

# A full CRL reads a shard's stored entries in one pass (jpki.store.crls). A partial covering
# index holds exactly those rows, so the read never touches the table, whose rows carry the
# certificate's DER (~1.5 KB each): measured on 10^6 entries by bench/crl.py. The two engines
# spell "covering" differently, hence one index per dialect.
DIALECT_INDEXES = {"ix_certificates_crl_entries": "sqlite",
                   "ix_certificates_crl_entries_pg": "postgresql"}
_HAS_CRL_ENTRY = certificates.c.crl_entry.is_not(None)
Index("ix_certificates_crl_entries", certificates.c.ca_generation_id, certificates.c.shard,
      certificates.c.revoked_at, certificates.c.not_after, certificates.c.crl_entry,
      sqlite_where=_HAS_CRL_ENTRY).ddl_if(dialect="sqlite")
Index("ix_certificates_crl_entries_pg", certificates.c.ca_generation_id, certificates.c.shard,
      certificates.c.revoked_at, postgresql_include=["not_after", "crl_entry"],
      postgresql_where=_HAS_CRL_ENTRY).ddl_if(dialect="postgresql")
# A phone's certificates (SqlCertificates.for_device: the mobile sweep, suspension, loss). Partial:
# nine rows in ten are card certificates, without a device (migration 0023 says what it cost).
_HAS_DEVICE = certificates.c.device_id.is_not(None)
Index("ix_certificates_device_id", certificates.c.device_id, sqlite_where=_HAS_DEVICE,
      postgresql_where=_HAS_DEVICE)


def include_for(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's ``include_object`` for comparing the models with a database of ``dialect``:
    leaves out the other dialect's indexes, which that database never has."""
    def include(_obj: Any, name: str | None, type_: str, _reflected: bool,
                _compare_to: Any) -> bool:
        return not (type_ == "index" and name in DIALECT_INDEXES
                    and DIALECT_INDEXES[name] != dialect)
    return include

# CRL numbers: one monotonic sequence per CRL scope (a CA generation's shard or ARL), shared by
# its full and delta CRLs (RFC 5280 §5.2.3).
crl_numbers = Table(
    "crl_numbers", metadata,
    Column("ca_generation_id", Id, ForeignKey("ca_generations.id"), primary_key=True),
    Column("scope", String(16), primary_key=True),
    Column("last_number", BigInteger, nullable=False),
    # The thisUpdate of the scope's newest full and delta CRL (migration 0020): what the
    # maintenance loop asks of every scope each minute (jpki.revocation.crls.CrlService.due),
    # read in one statement rather than two index probes per scope.
    Column("last_full_at", UtcDateTime, nullable=True),
    Column("last_delta_at", UtcDateTime, nullable=True),
)

# Every CRL published: what the HTTP endpoint serves (the newest of each scope and kind) and what
# a delta CRL is computed against (the newest full CRL of its scope).
crl_publications = Table(
    "crl_publications", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ca_generation_id", Id, ForeignKey("ca_generations.id"), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("kind", String(8), nullable=False),  # full | delta
    Column("number", BigInteger, nullable=False),
    Column("base_number", BigInteger, nullable=True),
    Column("this_update", UtcDateTime, nullable=False),
    Column("next_update", UtcDateTime, nullable=False),
    Column("entries", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("path", String(512), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("ca_generation_id", "scope", "number", name="uq_crl_publications_number"),
    Index("ix_crl_publications_latest", "ca_generation_id", "scope", "kind", "number"),
)

# OCSP responses signed ahead of time (RFC 5019 §6 style caching), shared by every worker.
ocsp_responses = Table(
    "ocsp_responses", metadata,
    Column("ca_generation_id", Id, ForeignKey("ca_generations.id"), primary_key=True),
    Column("hash_algorithm", String(8), primary_key=True),
    Column("serial", String(40), primary_key=True),
    Column("der", LargeBinary, nullable=False),
    Column("this_update", UtcDateTime, nullable=False),
    Column("next_update", UtcDateTime, nullable=False),
    Index("ix_ocsp_responses_serial", "serial"),
)

api_clients = Table(
    "api_clients", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("role", _enum(ClientRole, "client_role"), nullable=False),
    Column("scopes", Text, nullable=False, default=""),
    Column("secret_hash", Text, nullable=False),
    Column("status", _enum(ClientStatus, "client_status"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("station_kind", String(16), nullable=True),
    Column("relying_party_id", String(32), ForeignKey("relying_parties.id"), nullable=True,
           index=True),
    Column("previous_secret_hash", Text, nullable=True),
    Column("previous_secret_expires_at", UtcDateTime, nullable=True),
    # The client's change stamp, the feed that keeps each server process's copy of the
    # credentials in step (jpki.access.kept_clients): written by every change of the secret, the
    # status, the role or the scopes. The services stamp it with their clock; an UPDATE that
    # forgets gets the wall clock here, which at worst makes the readers re-read the row.
    Column("changed_at", UtcDateTime, nullable=False, index=True, onupdate=_wall_clock),
)

# Registered relying parties (jpki.relying_parties.service); their API clients point here.
relying_parties = Table(
    "relying_parties", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", _enum(RelyingPartyKind, "relying_party_kind"), nullable=False),
    Column("parent_id", String(32), ForeignKey("relying_parties.id"), nullable=True, index=True),
    Column("purposes", Text, nullable=False),
    Column("status", _enum(ClientStatus, "relying_party_status"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # Also the relying party's change stamp (its status), read by the same feed as
    # api_clients.changed_at (jpki.access.kept_clients); the same safety net.
    Column("updated_at", UtcDateTime, nullable=False, index=True, onupdate=_wall_clock),
)

# Holders' signed consents to the latest basic 4 information (jpki.relying_parties.consents).
consents = Table(
    "consents", metadata,
    Column("id", String(32), primary_key=True),
    Column("resident_id", String(32), ForeignKey("residents.id"), nullable=False, index=True),
    Column("relying_party_id", String(32), ForeignKey("relying_parties.id"), nullable=False,
           index=True),
    Column("items", String(64), nullable=False),
    Column("purpose", String(64), nullable=False),
    # A replayed consent (the same signed statement, or one reusing its nonce) is refused.
    Column("nonce_digest", String(64), nullable=False, unique=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("signed_der", LargeBinary, nullable=False),
    Column("signer_id", Id, ForeignKey("certificates.id"), nullable=False),
    Column("signer_serial", String(40), nullable=False),
    Column("signed_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("withdrawn_at", UtcDateTime, nullable=True),
)

mobile_devices = Table(
    "mobile_devices", metadata,
    Column("id", String(32), primary_key=True),
    Column("resident_id", String(32), ForeignKey("residents.id"), nullable=False, index=True),
    Column("device_ref", String(128), nullable=False),
    Column("platform", String(32), nullable=False),
    Column("status", _enum(DeviceStatus, "device_status"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("flagged_at", UtcDateTime, nullable=True),
    # The sweep's passes over silent devices (jpki.mobile.sweep): an index range each.
    Index("ix_mobile_devices_status_last_seen", "status", "last_seen_at"),
)

# Each run of the layered measures over smartphones (重層的な措置, jpki.mobile.sweep), and what it
# did, item by item: written in the transaction that does it, so a run killed midway leaves a
# report that says exactly what was done. Serials and device ids only: no personal data.
mobile_sweeps = Table(
    "mobile_sweeps", metadata,
    Column("id", String(32), primary_key=True),
    Column("started_at", UtcDateTime, nullable=False, index=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("outcome", String(16), nullable=False),  # running | ok | failed | interrupted
    Column("flag_after_days", Integer, nullable=False),
    Column("hold_after_days", Integer, nullable=False),
    Column("actor", String(128), nullable=False),
)

mobile_sweep_items = Table(
    "mobile_sweep_items", metadata,
    Column("sweep_id", String(32), ForeignKey("mobile_sweeps.id"), primary_key=True),
    Column("action", String(16), primary_key=True),  # revoked | flagged | held
    Column("subject", String(40), primary_key=True),  # a serial (revoked) or a device id
)

mobile_challenges = Table(
    "mobile_challenges", metadata,
    Column("digest", String(64), primary_key=True),
    Column("purpose", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("used_at", UtcDateTime, nullable=True),
    Column("source", String(64), nullable=True),
    # What one source holds, counted on every new challenge (jpki.mobile.service caps it).
    Index("ix_mobile_challenges_source_expires_at", "source", "expires_at"),
)
# The used challenges the maintenance job deletes: a partial index, as few as they are.
_USED = mobile_challenges.c.used_at.is_not(None)
Index("ix_mobile_challenges_used_at", mobile_challenges.c.used_at, sqlite_where=_USED,
      postgresql_where=_USED)

proofings = Table(
    "proofings", metadata,
    Column("id", String(32), primary_key=True),
    Column("resident_id", String(32), ForeignKey("residents.id"), nullable=False, index=True),
    Column("station", String(128), nullable=False),
    Column("presence", String(16), nullable=False),
    Column("pattern", String(1), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("used_for", String(32), nullable=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_mac", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
    # jpki.correlation: the request or job run that caused the record; covered by the MAC when
    # set (jpki.audit). NULL in records written before it existed.
    Column("request_id", String(64), nullable=True),
)

# One row: the newest (seq, mac). Locked for every append, so appends are serialised and a
# truncated tail disagrees with it.
audit_head = Table(
    "audit_head", metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("mac", String(64), nullable=False),
)

# The background jobs' ledger (jpki.jobs): one row per job, its latest run and totals.
job_runs = Table(
    "job_runs", metadata,
    Column("job", String(64), primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", String(128), nullable=True),
    Column("counts", Text, nullable=False),  # JSON object of what the run did
    Column("runs", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("last_success_at", UtcDateTime, nullable=True),
)

# The OCSP endpoint's traffic per minute (UTC) and outcome, added to by every serving process
# (api.ocsp_traffic): the dashboard's request rate and latency are the whole service's, every
# worker and node, not one process's. bucket_<i> counts the requests that took at most
# OCSP_BUCKETS[i] (and more than the bound before it); the last bucket, more than every bound.
ocsp_traffic = Table(
    "ocsp_traffic", metadata,
    Column("minute", UtcDateTime, primary_key=True),
    Column("outcome", String(32), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("seconds", Float, nullable=False),  # the sum of their durations
    *(Column(f"bucket_{i}", BigInteger, nullable=False)
      for i in range(len(OCSP_BUCKETS) + 1)),
)

# Relying parties' calls per JST day, relying party and scope, summed from the audit records of
# the calls by a maintenance job (jpki.store.rp_usage): the dashboard reads days x parties x
# scopes rows, never the audit log, whose RP records grow with every call.
rp_usage = Table(
    "rp_usage", metadata,
    Column("day", Date, primary_key=True),
    Column("relying_party", String(32), primary_key=True),
    Column("scope", String(16), primary_key=True),  # status | linkage | basic4
    Column("calls", BigInteger, nullable=False),  # answered
    Column("refused", BigInteger, nullable=False),
    Column("items", BigInteger, nullable=False),  # serials asked (status), answers (others)
)

# One row: the audit record the roll-up has summed up to (the chain's numbers are a gap-free
# prefix of committed records: jpki.audit appends under the head's lock), and when it ran.
rp_usage_rollup = Table(
    "rp_usage_rollup", metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("at", UtcDateTime, nullable=True),
)

# Finding a resident from what a person tells a counter: the date of birth, then the name or its
# reading among the few thousand born that day (jpki.registry.residents.ResidentService.find).
Index("ix_residents_birth_date", residents.c.birth_date, residents.c.municipality_code)

# DV support measures (DV等支援措置) are set and lifted by two people (jpki.registry.dv_support): a
# counter asks, a supervisor — another person — decides. The request keeps both and the reason's
# category; never a free-text account of someone's situation.
dv_requests = Table(
    "dv_requests", metadata,
    Column("id", String(32), primary_key=True),
    Column("resident_id", String(32), ForeignKey("residents.id"), nullable=False, index=True),
    Column("turn_on", Boolean, nullable=False),
    Column("category", String(16), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("requested_by", String(128), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
)

# Work a counter gives an enrolment station (jpki.registry.station_tasks): the station claims
# its oldest queued task and reports each step, which the console shows as it happens.
station_tasks = Table(
    "station_tasks", metadata,
    Column("id", String(32), primary_key=True),
    Column("station", String(128), nullable=False),
    Column("resident_id", String(32), ForeignKey("residents.id"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("proofing", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("step", String(32), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("serials", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
# A station's next task: its queued ones, oldest first.
Index("ix_station_tasks_queue", station_tasks.c.station, station_tasks.c.status,
      station_tasks.c.created_at)

# The operator console's people (api.console, jpki.access.console_accounts): counter clerks,
# call-centre agents and supervisors, each signing in with a password (Argon2id) and a TOTP
# second factor (RFC 6238). Core statements only (jpki.store.console): nothing maps onto these.
console_accounts = Table(
    "console_accounts", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("municipality_code", String(6), ForeignKey("municipalities.code"), nullable=True),
    Column("password_hash", Text, nullable=False),
    # The TOTP secret sealed with AES-GCM under a key derived in the HSM: a copy of the database
    # alone does not give the second factor away.
    Column("totp_sealed", Text, nullable=False),
    # The last TOTP time step accepted: a code is good once (RFC 6238 §5.2).
    Column("totp_last_step", BigInteger, nullable=True),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
)

# A console session: the cookie carries a random token; only its SHA-256 is stored, so a copy of
# the table cannot be replayed as a cookie. ``stage`` is "password" between the two factors and
# "active" once the code was accepted (a new token then: no fixation across the second factor).
console_sessions = Table(
    "console_sessions", metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("account_id", Id, ForeignKey("console_accounts.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("stage", String(8), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False, index=True),
)

# The limits every node of a deployment must agree on (docs/deployment.md, "What must hold
# across nodes"), kept here rather than in any one process (jpki.store.limits).
#
# One token bucket per (scope, subject): a relying party's calls ("rp"), or a source address's
# requests without credentials ("anonymous"). Nodes lease blocks of tokens from it with one
# atomic statement (jpki.rate_limits). Times are seconds since the epoch on the database's
# clock. ``granted`` is what the last lease took (an UPDATE's RETURNING gives the new row only);
# ``full_at`` when the bucket is whole again, so that a row past it can be deleted: a missing
# row is a whole bucket.
rate_buckets = Table(
    "rate_buckets", metadata,
    Column("scope", String(16), primary_key=True),
    Column("subject", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("refilled_at", Float, nullable=False),
    Column("granted", Integer, nullable=False),
    Column("full_at", Float, nullable=False, index=True),
)

# One budget of failed authentications per (kind, subject): a client id or console user name
# ("client"), or a source address ("address") (jpki.access.auth_throttle). Each failure is
# counted here; ``blocked_until`` is set while the budget is spent, and every node reads the
# blocked keys (an index range) into a short-lived cache.
auth_failures = Table(
    "auth_failures", metadata,
    Column("kind", String(16), primary_key=True),
    Column("subject", String(64), primary_key=True),
    Column("remaining", Float, nullable=False),
    Column("counted_at", Float, nullable=False),
    Column("blocked_until", Float, nullable=True, index=True),
    Column("reported_at", Float, nullable=True),  # when the log last said it was spent
    Column("reported", Integer, nullable=False),  # 1: the last failure was the one said so
    Column("whole_at", Float, nullable=False, index=True),
)

# The signing-password reset with an online password (jpki.pin_reset, architecture §7.1).
# Core statements only (jpki.store.pin_reset). Several CA nodes share these rows: a challenge or
# an online password used on one node is used on all.
#
# Challenges the CA issued to a holder app or a kiosk: only their SHA-256 is kept, single use.
pin_reset_challenges = Table(
    "pin_reset_challenges", metadata,
    Column("digest", String(64), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)
Index("ix_pin_reset_challenges_client_expires", pin_reset_challenges.c.client_id,
      pin_reset_challenges.c.expires_at)

# The key each registered holder app signs its face-check assertions with (SubjectPublicKeyInfo).
holder_app_keys = Table(
    "holder_app_keys", metadata,
    Column("client_id", String(64), ForeignKey("api_clients.client_id"), primary_key=True),
    Column("public_key", LargeBinary, nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
)

# Online passwords: bound to a card, stored only as a scrypt hash, short-lived and single use.
online_passwords = Table(
    "online_passwords", metadata,
    Column("id", String(32), primary_key=True),
    Column("card_id", Id, ForeignKey("cards.id"), nullable=False),
    Column("app_client_id", String(64), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # active | consumed | superseded | locked
    Column("tries_left", SmallInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("consumed_by", String(64), nullable=True),  # the kiosk's client id
)
Index("ix_online_passwords_card_created", online_passwords.c.card_id,
      online_passwords.c.created_at)
Index("ix_online_passwords_app_created", online_passwords.c.app_client_id,
      online_passwords.c.created_at)

# Each reset a kiosk was authorised to make, and what the kiosk reported of it.
kiosk_resets = Table(
    "kiosk_resets", metadata,
    Column("id", String(32), primary_key=True),
    Column("card_id", Id, ForeignKey("cards.id"), nullable=False),
    Column("kiosk_client_id", String(64), nullable=False),
    Column("online_password_id", String(32), ForeignKey("online_passwords.id"), nullable=False),
    Column("status", String(16), nullable=False),  # authorised | done | failed
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("error_code", String(64), nullable=True),
)
Index("ix_kiosk_resets_kiosk_created", kiosk_resets.c.kiosk_client_id, kiosk_resets.c.created_at)

# Refused attempts, by whom they count against ("app:<id>", "kiosk:<id>", "card:<id>"): what
# the per-app, per-kiosk and per-card limits count (jpki.pin_reset.rules).
pin_reset_refusals = Table(
    "pin_reset_refusals", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("subject", String(80), nullable=False),
    Column("code", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)
Index("ix_pin_reset_refusals_subject_at", pin_reset_refusals.c.subject, pin_reset_refusals.c.at)

mapper_registry = registry(metadata=metadata)
_mapped = False


def map_entities() -> None:
    """Map the domain dataclasses once per process (idempotent)."""
    global _mapped
    if _mapped:
        return
    mapper_registry.map_imperatively(Resident, residents)
    mapper_registry.map_imperatively(Card, cards)
    mapper_registry.map_imperatively(CaGeneration, ca_generations)
    mapper_registry.map_imperatively(OcspResponder, ocsp_responders)
    mapper_registry.map_imperatively(Certificate, certificates)
    mapper_registry.map_imperatively(ApiClient, api_clients)
    mapper_registry.map_imperatively(CrlPublication, crl_publications)
    mapper_registry.map_imperatively(ProofingRecord, proofings)
    mapper_registry.map_imperatively(MobileDevice, mobile_devices)
    mapper_registry.map_imperatively(MobileChallenge, mobile_challenges)
    mapper_registry.map_imperatively(RelyingParty, relying_parties)
    mapper_registry.map_imperatively(Consent, consents)
    _mapped = True
