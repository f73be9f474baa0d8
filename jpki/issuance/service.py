"""Issuance of card and mobile certificates, in Boulder's order (architecture §3.3).

    1. validate the request (keys, resident, card, lifecycle rules) — the product's planner
    2. build the to-be-signed certificates
    3. lint them (jpki.authority.lint); nothing unchecked is ever signed
    4. record the intent durably: serials reserved (unique), TBS stored, "signing" audited, commit
    5. sign each TBS in the HSM
    6. check each signed TBS equals the linted one and the signature verifies
    7. store the certificates, link them (old→new, signing↔auth, mobile→card), revoke what they
       supersede, audit "issued", commit

Each step yields one frozen value (jpki.issuance.stages) and this service alone opens the
transactions around them; the planners (jpki.issuance.card, jpki.issuance.mobile) only decide.
The public entries — :meth:`IssuanceService.issue`, :meth:`~IssuanceService.renew`,
:meth:`~IssuanceService.renew_serial`, :meth:`~IssuanceService.issue_batch` for cards, and
:meth:`~IssuanceService.issue_for_device` for mobile applications (the port of
jpki.issuance_port) — build a request and run the same pipeline.

A crash between 4 and 7 leaves *pending* rows whose serials are known; :meth:`abandon_stale`
turns them into *abandoned* certificates, which CRLs and OCSP report as revoked (J-LIS's
"unspecified: destroyed before delivery", reference §3.2). The database therefore knows every
serial the HSM may have signed, and an intent is signed at most once (its redeem-once token).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Literal
from weakref import WeakKeyDictionary

from cryptography.hazmat.primitives.serialization import Encoding

from jpki.access.authz import Grant, Operation
from jpki.audit import AuditLog, JsonValue
from jpki.authority.ca import CaService
from jpki.authority.lint import lint_end_entity, require_clean
from jpki.authority.profiles import (
    EndEntitySpec,
    ProfileCache,
    build_end_entity,
    issuance_identifier,
)
from jpki.authority.recipe import Recipe
from jpki.errors import (
    CertificateNotFound,
    InternalError,
    JpkiError,
    KeyStoreUnavailable,
    MunicipalityNotFound,
    Unavailable,
)
from jpki.issuance import card, mobile
from jpki.issuance.stages import (
    CertificatePlan,
    CertificateRef,
    Draft,
    Intent,
    IssuanceOrder,
    IssuancePlan,
    KeyRequest,
    Recorded,
    RedeemToken,
    Signed,
    ValidatedOrder,
)
from jpki.issuance_port import DeviceApplication, DeviceIssued, IssuedCertificate
from jpki.lifecycle.cards import CardSpec
from jpki.lifecycle.revocation import revoke_in, set_revocation
from jpki.model import (
    Certificate,
    CertStatus,
    PendingCertificate,
    RevocationReason,
)
from jpki.municipalities import Municipality
from jpki.ports import Clock, KeyStore, UnitOfWork, UnitOfWorkFactory
from jpki.serials import new_serial, serial_hex
from jpki.signing import sign_tbs, sign_tbs_many, to_be_signed
from jpki.urls import ServiceUrls

# The request and result types callers use, from where they have always been imported.
__all__ = ["IssuanceOrder", "IssuanceService", "IssuedCertificate", "KeyRequest"]

Planner = Callable[[UnitOfWork, datetime], IssuancePlan]
Settle = Callable[[UnitOfWork, datetime], None]

_helpers: ThreadPoolExecutor | None = None
_helpers_lock = threading.Lock()


def _signing_helper() -> ThreadPoolExecutor:
    """Process-wide threads that sign a request's second certificate while the caller signs
    its first: the HSM signs on several sessions at once, and python-pkcs11 releases the GIL
    while it does. As many as the key store's default session pool (JPKI_HSM_POOL_SIZE), so
    concurrent requests do not queue behind one helper."""
    global _helpers
    with _helpers_lock:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jpki-sign")
        return _helpers


class IssuanceService:
    def __init__(self, uow_factory: UnitOfWorkFactory, keys: KeyStore, clock: Clock,
                 recipe: Recipe, urls: ServiceUrls, cas: CaService, audit: AuditLog, *,
                 parallel_signing: bool = True) -> None:
        self._uow = uow_factory
        self._keys = keys
        self._clock = clock
        self._recipe = recipe
        self._urls = urls
        self._cas = cas
        self._audit = audit
        self._parallel = parallel_signing
        # Per unit of work: a rename or a merger (jpki.registry.municipalities) takes effect at
        # the next transaction of every process.
        self._municipalities: WeakKeyDictionary[UnitOfWork, dict[str, Municipality]] = \
            WeakKeyDictionary()
        # The extensions that depend only on kind, CA generation and municipality.
        self._profiles = ProfileCache(recipe, urls)

    # --- the entries -------------------------------------------------------------------

    def issue(self, grant: Grant[Literal[Operation.CERTIFICATE_ISSUE]], resident_id: str,
              requests: list[KeyRequest], card: CardSpec | None = None,
              proofing_id: str | None = None) -> list[IssuedCertificate]:
        """New card certificates for a resident (the first ones, or after a revocation).

        A station must name the identity-proofing record it made for this resident (single
        use, jpki.registry.counter); the CA's own operator CLI issues without one.
        """
        grant.require(Operation.CERTIFICATE_ISSUE)
        return self._issue_card(grant, IssuanceOrder(resident_id, tuple(requests), card,
                                                     proofing_id=proofing_id))

    def renew(self, grant: Grant[Literal[Operation.CERTIFICATE_RENEW]], resident_id: str,
              requests: list[KeyRequest], card: CardSpec | None = None,
              proofing_id: str | None = None) -> list[IssuedCertificate]:
        """Renewal: from 3 months before expiry; the old certificate is revoked as superseded and
        linked old→new; the new one runs to the 6th birthday (reference §1.4)."""
        grant.require(Operation.CERTIFICATE_RENEW)
        return self._issue_card(grant, IssuanceOrder(resident_id, tuple(requests), card,
                                                     renew=True, proofing_id=proofing_id))

    def renew_serial(self, grant: Grant[Literal[Operation.CERTIFICATE_RENEW]], serial: str,
                     public_key: bytes, card: CardSpec | None = None,
                     proofing_id: str | None = None) -> IssuedCertificate:
        grant.require(Operation.CERTIFICATE_RENEW)
        with self._uow() as uow:
            cert = uow.certificates.get_by_serial(serial)
            if cert is None:
                raise CertificateNotFound(f"no certificate with serial {serial}", serial=serial)
            resident_id, kind = cert.resident_id, cert.kind
        issued = self._issue_card(grant, IssuanceOrder(
            resident_id, (KeyRequest(kind, public_key),), card, renew=True, renewing=serial,
            proofing_id=proofing_id))
        return issued[0]

    def issue_for_device(self, application: DeviceApplication) -> DeviceIssued:
        """Mobile certificates (jpki.issuance_port): the application verifies itself inside the
        intent's transaction and settles inside the store's; the certificates follow their card
        certificates (jpki.issuance.mobile)."""
        def planned(uow: UnitOfWork, now: datetime) -> IssuancePlan:
            order = application.verify(uow, now)
            return mobile.plan(order, self._municipality(uow, order.resident.municipality_code))

        signed = self._run(planned, application.settle)
        return DeviceIssued(certificates=tuple(signed.results()),
                            chain=tuple(i.draft.generation.certificate_der
                                        for i in signed.recorded.intents))

    def issue_batch(self, grant: Grant[Literal[Operation.CERTIFICATE_ISSUE_BATCH]],
                    orders: Sequence[IssuanceOrder], *,
                    chunk: int = 32) -> list[list[IssuedCertificate] | JpkiError]:
        """Bulk issuance (a day's applications, a municipality's batch): per order, the issued
        certificates or the error that refused it — an order refused does not stop the others.

        The same steps as a single issuance, with the database work amortised: one intent
        transaction and one store transaction per chunk of orders, the chunk's records read
        and written with one statement per kind (:meth:`_record_chunk`); a refused order
        leaves nothing behind. The HSM signs one chunk on a signer thread while the next chunk
        is validated, built and linted, so the single signing stream is kept busy: each CA
        key's share of a chunk goes to the key store in one call (``KeyStore.sign_many``),
        which with a software token signs in a process of its own (hsm.bulk_signer) rather
        than competing with this thread for the interpreter's lock.
        """
        grant.require(Operation.CERTIFICATE_ISSUE_BATCH)
        results: list[list[IssuedCertificate] | JpkiError | None] = [None] * len(orders)
        pending: tuple[list[tuple[int, Recorded]], Future[list[Signed]]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpki-signer") as signer:
            for start in range(0, len(orders), max(1, chunk)):
                with self._uow() as uow:
                    batch = self._record_chunk(uow, grant, orders,
                                               range(start, min(start + chunk, len(orders))),
                                               results)
                    self._arm_on_commit(uow, [r for _, r in batch])
                    uow.commit()  # 4. this chunk's intents are durable from here on
                # Queued behind the previous chunk's signing on the one signer thread, before
                # that chunk is stored: the HSM never waits for a store step.
                signing = signer.submit(self._sign_all, [r for _, r in batch], bulk=True)
                if pending is not None:
                    self._finish(*pending, results)
                pending = (batch, signing)
            if pending is not None:
                self._finish(*pending, results)
        return [r if r is not None else InternalError("not processed") for r in results]

    def abandon_stale(self, grant: Grant[Literal[Operation.PENDING_ABANDON]],
                      older_than: timedelta) -> list[str]:
        """Turn pending intents older than ``older_than`` into abandoned (revoked) certificates."""
        actor = grant.require(Operation.PENDING_ABANDON)
        now = self._clock.now()
        with self._uow() as uow:
            stale = list(uow.certificates.pending_before(now - older_than))
            for cert in stale:
                self._abandon_one(uow, actor.actor, cert, now)
            uow.commit()
        return [c.serial for c in stale]

    # --- the pipeline ------------------------------------------------------------------

    def _issue_card(self, grant: Grant[Literal[Operation.CERTIFICATE_ISSUE,
                                               Operation.CERTIFICATE_RENEW]],
                    order: IssuanceOrder) -> list[IssuedCertificate]:
        validated = card.validate(order)

        def planned(uow: UnitOfWork, now: datetime) -> IssuancePlan:
            return card.plan(uow, grant, validated, now, self._municipality)

        return self._run(planned).results()

    def _run(self, planned: Planner, settle: Settle | None = None) -> Signed:
        """One request through steps 1–7: two transactions, the HSM between them."""
        with self._uow() as uow:
            now = self._clock.now()
            recorded = self._record(uow, planned(uow, now), now)
            self._arm_on_commit(uow, [recorded])
            uow.commit()  # 4. the intents are durable from here on
        (signed,) = self._sign_all([recorded], parallel=self._parallel)
        with self._uow() as uow:
            now = self._clock.now()
            self._store(uow, [signed], now)
            if settle is not None:
                settle(uow, now)
            uow.commit()
        return signed

    def _record_chunk(self, uow: UnitOfWork,
                      grant: Grant[Literal[Operation.CERTIFICATE_ISSUE_BATCH]],
                      orders: Sequence[IssuanceOrder], indices: range,
                      results: list[list[IssuedCertificate] | JpkiError | None],
                      ) -> list[tuple[int, Recorded]]:
        """1–4 for one chunk of a batch, in the caller's transaction: the rules for all its
        orders with one read per kind of record (card.plan_many), each accepted order's drafts,
        then the writes of all of them together — their cards and proofing records
        (card.settle), their intents and "certificate.signing" records. An order refused at
        any step has written nothing, so it needs no savepoint. An order that names what an
        earlier order of the chunk names (a resident, a key, a proofing record) is planned on
        its own afterwards, in a savepoint, as one order at a time would be."""
        validated: list[tuple[int, ValidatedOrder, datetime]] = []
        for index in indices:
            try:
                validated.append((index, card.validate(orders[index]), self._clock.now()))
            except JpkiError as exc:
                results[index] = exc
        planned = card.plan_many(uow, grant, [(v, now) for _, v, now in validated],
                                 self._municipality) if validated else []
        accepted: list[tuple[int, card.PlannedOrder, list[Draft], datetime]] = []
        deferred: list[tuple[int, ValidatedOrder]] = []
        for (index, v, now), outcome in zip(validated, planned, strict=True):
            if outcome is None:
                deferred.append((index, v))
            elif isinstance(outcome, JpkiError):
                results[index] = outcome
            else:
                try:
                    drafts = self._drafts(uow, outcome.plan, now)
                except JpkiError as exc:
                    results[index] = exc
                    continue
                accepted.append((index, outcome, drafts, now))
        plans = card.settle(uow, [p for _, p, _, _ in accepted])
        recorded = self._record_drafts(uow, [(plan, drafts, now) for plan, (_, _, drafts, now)
                                             in zip(plans, accepted, strict=True)])
        batch = [(index, r) for (index, _, _, _), r in zip(accepted, recorded, strict=True)]
        for index, v in deferred:
            try:
                with uow.savepoint():
                    now = self._clock.now()
                    batch.append((index, self._record(uow, card.plan(
                        uow, grant, v, now, self._municipality), now)))
            except JpkiError as exc:
                results[index] = exc
        return batch

    def _finish(self, batch: list[tuple[int, Recorded]], signing: Future[list[Signed]],
                results: list[list[IssuedCertificate] | JpkiError | None]) -> None:
        try:
            signed = signing.result()
        except JpkiError as exc:
            for index, _ in batch:
                results[index] = exc
            return
        if not batch:
            return
        with self._uow() as uow:
            self._store(uow, signed, self._clock.now())
            uow.commit()
        for (index, _), done in zip(batch, signed, strict=True):
            results[index] = done.results()

    # --- the steps ---------------------------------------------------------------------

    def _draft(self, uow: UnitOfWork, plan: IssuancePlan, cert: CertificatePlan,
               now: datetime) -> Draft:
        """2–3. Build and lint: nothing unchecked is ever signed."""
        kind = cert.kind
        generation, issuer = self._cas.current_cached(uow, kind.ca)
        serial = new_serial()
        spec = EndEntitySpec(kind=kind, issuer=issuer, public_key=cert.key.key, serial=serial,
                             not_before=now, not_after=cert.not_after,
                             municipality=plan.municipality,
                             subject_cn=issuance_identifier(plan.municipality.code, kind),
                             basic4=plan.resident.basic4 if kind.is_signing else None)
        parts = self._profiles.parts(kind, issuer, plan.municipality)
        tbs, lint_cert = to_be_signed(build_end_entity(spec, self._recipe, self._urls, parts),
                                      issuer.public_key)
        require_clean(lint_end_entity(lint_cert, kind=kind, issuer=issuer, recipe=self._recipe,
                                      basic4=spec.basic4), f"{kind.value} certificate")
        return Draft(plan=cert, serial=serial_hex(serial), tbs=tbs,
                     not_before=lint_cert.not_valid_before_utc,
                     not_after=lint_cert.not_valid_after_utc, generation=generation,
                     issuer=issuer)

    def _drafts(self, uow: UnitOfWork, plan: IssuancePlan, now: datetime) -> list[Draft]:
        return [self._draft(uow, plan, cert, now) for cert in plan.certificates]

    def _record(self, uow: UnitOfWork, plan: IssuancePlan, now: datetime) -> Recorded:
        """2–4 inside the caller's transaction: the drafts, then the intent — serials reserved
        by the unique index, TBS kept, "certificate.signing" audited. The tokens are armed by
        the pipeline once this transaction commits (:meth:`_arm_on_commit`)."""
        (recorded,) = self._record_drafts(uow, [(plan, self._drafts(uow, plan, now), now)])
        return recorded

    def _record_drafts(self, uow: UnitOfWork,
                       drafted: Sequence[tuple[IssuancePlan, list[Draft], datetime]],
                       ) -> list[Recorded]:
        """4. The intents of several plans with one multi-row INSERT, then their
        "certificate.signing" records, plan by plan."""
        ids = iter(uow.issuance.record_intents([PendingCertificate(
            serial=d.serial, kind=d.plan.kind, resident_id=plan.resident.id,
            card_id=plan.card_id, ca_generation_id=d.generation.id or 0,
            not_before=d.not_before, not_after=d.not_after, shard=plan.municipality.shard,
            registry_source=plan.resident.registry_source,
            public_key_sha256=d.plan.key.sha256, created_at=now, tbs_der=d.tbs,
            predecessor_id=d.plan.predecessor.id if d.plan.predecessor else None,
            issued_by=plan.actor.actor, delivery_required=plan.delivery_required,
            linked_id=d.plan.linked.id if d.plan.linked else None, device_id=d.plan.device_id)
            for plan, drafts, now in drafted for d in drafts]))
        out = []
        for plan, drafts, _ in drafted:
            intents = tuple(Intent(draft=d, cert_id=next(ids), token=RedeemToken())
                            for d in drafts)
            for intent in intents:
                # Read back by `jpki audit verify --state` (jpki.lifecycle.audit_state): the
                # certificate is pending from here.
                generation = intent.draft.generation
                self._audit.record(uow, actor=plan.actor.actor, action="certificate.signing",
                                   subject=intent.serial,
                                   payload={"kind": intent.draft.plan.kind.value,
                                            "resident": plan.resident.id,
                                            "ca": f"{generation.ca.value}/"
                                                  f"g{generation.generation:02d}",
                                            "tbs_sha256": hashlib.sha256(
                                                intent.draft.tbs).hexdigest()})
            out.append(Recorded(plan=plan, intents=intents))
        return out

    @staticmethod
    def _arm_on_commit(uow: UnitOfWork, recorded: list[Recorded]) -> None:
        """Let these intents be signed once their transaction has committed, and only then
        (architecture §3.3 step 4)."""
        def arm() -> None:
            for r in recorded:
                r.arm()

        uow.after_commit(arm)

    def _sign_all(self, batch: Sequence[Recorded], *, parallel: bool = False,
                  bulk: bool = False) -> list[Signed]:
        """5–6. Redeem each intent's token, sign its recorded TBS in the HSM and check the
        result (``bulk``: each CA key's share in one call to the key store's bulk signing).
        An intent already signed, or not yet recorded, raises before the HSM is asked.
        On a signing failure every intent of the batch is abandoned (reported as revoked) and
        the error raised; a BaseException (a crash) leaves them pending for abandon_stale."""
        intents = [intent for recorded in batch for intent in recorded.intents]
        redeemed: list[Intent] = []
        try:
            for intent in intents:
                intent.token.redeem(intent.serial)
                redeemed.append(intent)
        except JpkiError:
            # The ones this call took can no longer be signed by anyone.
            self._abandon(redeemed, batch)
            raise
        try:
            ders = (self._sign_bulk(intents) if bulk
                    else self._sign_intents(intents, parallel=parallel))
        except Exception as exc:
            self._abandon(intents, batch)
            if isinstance(exc, JpkiError) and not isinstance(exc, Unavailable):
                raise
            raise KeyStoreUnavailable("signing failed; the request was not completed") from exc
        out = []
        at = 0
        for recorded in batch:
            n = len(recorded.intents)
            out.append(Signed(recorded=recorded, certificates=tuple(ders[at:at + n])))
            at += n
        return out

    def _sign_intents(self, intents: list[Intent], *, parallel: bool) -> list[bytes]:
        if not parallel or len(intents) < 2:
            return [self._sign_one(intent) for intent in intents]
        helper = _signing_helper()
        # The caller signs the first; the helper thread the rest, at the same time.
        futures = [helper.submit(self._sign_one, intent) for intent in intents[1:]]
        try:
            first = self._sign_one(intents[0])
        finally:
            wait(futures)  # nothing is left signing behind a failure
        return [first, *(f.result() for f in futures)]

    def _sign_bulk(self, intents: list[Intent]) -> list[bytes]:
        # One call per CA key (a chunk has the auth CA's and the sign CA's certificates).
        by_key: dict[str, list[int]] = {}
        for at, intent in enumerate(intents):
            by_key.setdefault(intent.draft.generation.key_label, []).append(at)
        ders: list[bytes] = [b""] * len(intents)
        for label, places in by_key.items():
            certificates = sign_tbs_many([intents[at].draft.tbs for at in places],
                                         functools.partial(self._keys.sign_many, label),
                                         intents[places[0]].draft.issuer.public_key)
            for at, certificate in zip(places, certificates, strict=True):
                ders[at] = certificate.public_bytes(Encoding.DER)
        return ders

    def _sign_one(self, intent: Intent) -> bytes:
        draft = intent.draft
        signed = sign_tbs(draft.tbs, self._keys.rsa_key(draft.generation.key_label),
                          draft.issuer.public_key)
        return signed.public_bytes(Encoding.DER)

    def _store(self, uow: UnitOfWork, batch: Sequence[Signed], now: datetime) -> None:
        """7. Store the certificates, link them, supersede what they renew, audit."""
        updates: list[tuple[int, bytes, int | None]] = []
        siblings: dict[int, str | None] = {}
        for signed in batch:
            by_kind = {i.draft.plan.kind: i for i in signed.recorded.intents}
            for intent, der in zip(signed.recorded.intents, signed.certificates, strict=True):
                cert = intent.draft.plan
                # signing↔auth linkage (証明書紐付け情報, architecture §4.6): the pair, or the
                # valid certificate of the other kind on the same card or device.
                pair = by_kind.get(cert.kind.counterpart)
                sibling = CertificateRef(pair.cert_id, pair.serial) if pair is not None \
                    else cert.partner
                updates.append((intent.cert_id, der, sibling.id if sibling else None))
                if cert.partner is not None and pair is None:
                    uow.issuance.set_sibling(cert.partner.id, intent.cert_id)
                siblings[intent.cert_id] = sibling.serial if sibling else None
        uow.issuance.mark_issued(updates, now)
        for signed in batch:
            plan = signed.recorded.plan
            for intent in signed.recorded.intents:
                cert = intent.draft.plan
                if cert.renewal and cert.predecessor is not None:
                    old = uow.certificates.get_by_serial(cert.predecessor.serial,
                                                         for_update=True)
                    if old is None:  # pragma: no cover - certificates are never deleted
                        raise InternalError("the renewed certificate is gone")
                    revoke_in(uow, self._audit, plan.actor, old, RevocationReason.SUPERSEDED,
                              now, now, cause=f"renewed by {intent.serial}")
                self._audit.record(uow, actor=plan.actor.actor, action="certificate.issued",
                                   subject=intent.serial,
                                   payload={"kind": cert.kind.value,
                                            "resident": plan.resident.id,
                                            "not_after": intent.draft.not_after.isoformat(),
                                            "predecessor": cert.predecessor.serial
                                            if cert.predecessor else None,
                                            # A renewal, or a first issue / re-issue (whose
                                            # predecessor is the revoked one it replaces).
                                            "renewal": cert.renewal,
                                            "sibling": siblings[intent.cert_id]})

    def _abandon(self, intents: Sequence[Intent], batch: Sequence[Recorded]) -> None:
        """Abandon intents that will never be signed, as their requests' actors."""
        actors = {i.cert_id: r.plan.actor.actor for r in batch for i in r.intents}
        try:
            now = self._clock.now()
            with self._uow() as uow:
                for intent in intents:
                    cert = uow.certificates.get(intent.cert_id)
                    if cert is None or cert.status is not CertStatus.PENDING:
                        continue
                    self._abandon_one(uow, actors[intent.cert_id], cert, now)
                uow.commit()
        except Exception:  # noqa: S110 - abandon_stale will retry; the original error matters
            pass

    def _abandon_one(self, uow: UnitOfWork, actor: str, cert: Certificate,
                     now: datetime) -> None:
        cert.status = CertStatus.ABANDONED
        set_revocation(cert, now, RevocationReason.UNSPECIFIED, now)
        cert.updated_at = now
        self._audit.record(uow, actor=actor, action="certificate.abandoned",
                           subject=cert.serial, payload=_abandoned(cert, now))

    def _municipality(self, uow: UnitOfWork, code: str) -> Municipality:
        """The resident's municipality as it is now — its name and current CRL shard
        (architecture §5.6) — read once per transaction."""
        seen = self._municipalities.setdefault(uow, {})
        cached = seen.get(code)
        if cached is None:
            cached = uow.municipalities.get(code)
            if cached is None:  # pragma: no cover - registered residents have one
                raise MunicipalityNotFound("the resident's municipality is missing")
            seen[code] = cached
        return cached


def _abandoned(cert: Certificate, at: datetime) -> dict[str, JsonValue]:
    """The payload of "certificate.abandoned": with the revocation time it sets, which the
    record's own time may miss by the seconds the transaction took (replayed by
    jpki.lifecycle.audit_state)."""
    return {"kind": cert.kind.value, "revoked_at": at.isoformat()}
