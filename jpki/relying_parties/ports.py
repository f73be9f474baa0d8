"""What each relying-party service reads and writes, as the narrow units of work it is given
(architecture §2.3: narrow ports).

Each service takes a factory of one of these, not of the whole :class:`jpki.ports.UnitOfWork`,
with the repositories typed as the methods it calls; the store's unit of work (jpki.store.uow)
satisfies them structurally, which mypy checks where the composition root (api.composition)
passes it. The audit records these services share with concurrent calls go through the group
commit (jpki.group_audit), which the composition root hands them ready-made: none of them
builds one from its own factory, which would need the group commit's reads (a standing consent,
the certificate line behind it) whether the service reads them or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from jpki.lifecycle.residents import ResidentReads
from jpki.model import ApiClient, Certificate, Consent, RelyingParty, StatusChange, StatusRow
from jpki.ports import AuditedWork, LineReads, RelyingPartyRepository, Transaction

# --- The repositories, as much of each as the relying-party services call -------------------


class SignerLookup(Protocol):
    def get_by_serial(self, serial: str, *, for_update: bool = False) -> Certificate | None: ...


class HolderLineCertificates(SignerLookup, Protocol):
    """A holder's signer, and the line of certificates it is followed through (old→new links,
    the card line of a phone's certificate; jpki.relying_parties.linkage)."""

    def get(self, cert_id: int) -> Certificate | None: ...
    def issued_successor_of(self, cert_id: int) -> Certificate | None: ...


class StatusReads(Protocol):
    """The status rows of jpki.relying_parties.status_lookup, and the changes that refresh
    them (the feed of jpki.change_feed)."""

    def status_changes_since(self, since: datetime | None) -> Sequence[StatusChange]: ...
    def status_rows(self, serials: Sequence[str]) -> Sequence[StatusRow]: ...


class ConsentReads(Protocol):
    def get(self, consent_id: str, *, for_update: bool = False) -> Consent | None: ...


class ConsentWrites(Protocol):
    """Recording a new consent: its nonce checked unused, then the consent added."""

    def nonce_used(self, nonce_digest: str) -> bool: ...

    def add(self, consent: Consent) -> None:
        """Raise :class:`jpki.errors.DuplicateResource` when the nonce was used before."""
        ...


class RelyingPartyReads(Protocol):
    def get(self, rp_id: str) -> RelyingParty | None: ...


class ClientAdding(Protocol):
    def add(self, client: ApiClient) -> None: ...


# --- What the shared steps read and write ----------------------------------------------------


class SignerWork(Protocol):
    """What :func:`jpki.relying_parties.holder_signatures.verify_holder_signature` reads."""

    @property
    def certificates(self) -> SignerLookup: ...


class StandingConsentWork(Protocol):
    """What :func:`jpki.relying_parties.consents.load_standing_consent` reads."""

    @property
    def consents(self) -> ConsentReads: ...


class ConsentRecording(SignerWork, AuditedWork, Protocol):
    """What :func:`jpki.relying_parties.consents.record_consent` reads and writes."""

    @property
    def consents(self) -> ConsentWrites: ...


# --- The units of work, one per service -------------------------------------------------------


class RelyingPartiesUnitOfWork(Transaction, AuditedWork, Protocol):
    """jpki.relying_parties.service: registration, secrets, suspension."""

    @property
    def relying_parties(self) -> RelyingPartyRepository: ...
    @property
    def clients(self) -> ClientAdding: ...


class AdmissionUnitOfWork(Transaction, Protocol):
    """jpki.relying_parties.service's admission: the calling relying party and its platform
    operator, read (on the read-only engine)."""

    @property
    def relying_parties(self) -> RelyingPartyReads: ...


class StatusUnitOfWork(Transaction, Protocol):
    """jpki.relying_parties.status_lookup: reads only, on the read-only engine."""

    @property
    def certificates(self) -> StatusReads: ...


class ConsentsUnitOfWork(Transaction, SignerWork, AuditedWork, Protocol):
    """jpki.relying_parties.consents: a holder's withdrawal of a consent."""

    @property
    def consents(self) -> ConsentReads: ...


class LinkageUnitOfWork(Transaction, SignerWork, LineReads, StandingConsentWork, AuditedWork,
                        Protocol):
    """jpki.relying_parties.linkage: the signer or the consent, the line of certificates."""

    @property
    def certificates(self) -> HolderLineCertificates: ...


class Basic4UnitOfWork(Transaction, ConsentRecording, LineReads, Protocol):
    """jpki.relying_parties.latest_basic4 with a new consent: the consent recorded, its
    holder's resident record and current signing certificate read (a standing consent is read
    in the group commit's transaction, jpki.ports.DisclosureReads)."""

    @property
    def certificates(self) -> HolderLineCertificates: ...
    @property
    def residents(self) -> ResidentReads: ...


RelyingPartiesUnitOfWorkFactory = Callable[[], RelyingPartiesUnitOfWork]
AdmissionUnitOfWorkFactory = Callable[[], AdmissionUnitOfWork]
StatusUnitOfWorkFactory = Callable[[], StatusUnitOfWork]
ConsentsUnitOfWorkFactory = Callable[[], ConsentsUnitOfWork]
LinkageUnitOfWorkFactory = Callable[[], LinkageUnitOfWork]
Basic4UnitOfWorkFactory = Callable[[], Basic4UnitOfWork]
