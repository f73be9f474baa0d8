"""The signing-password reset with an online password (reference §4.5; this project's design
where the real one is not public, architecture §7.1).

1. **The holder app** (a registered API client with a registered key) asks for a challenge; the
   holder enters the card's 4-digit PIN, the card signs the challenge with its auth key; the
   app reads the face image from the card's 券面事項確認AP, compares it with the camera's photo
   on the device, and signs a :class:`~jpki.protocol.pin_reset.FaceCheckAssertion` with its
   key. :meth:`PinResetService.issue_online_password` checks all of it and answers a one-time
   **online password**: bound to the card, valid :data:`~jpki.pin_reset.rules.PASSWORD_LIFETIME`,
   kept as a scrypt hash only; an earlier one of the card is superseded.
2. **The kiosk** (a registered API client of an operator chain) asks for a challenge; the holder
   presents the card and enters the 4-digit PIN (the card counts wrong ones down), the card signs
   the challenge with its auth key; the holder enters the online password and the new signing
   password (which never leaves the kiosk); the kiosk asks the card for a fresh challenge and
   sends it to :meth:`PinResetService.authorise_reset`, which checks the card, the holder and the
   password, consumes the password and answers an **authorisation**: the card-management key's
   signature over that card challenge and the card's auth certificate
   (:func:`~jpki.protocol.pin_reset.card_reset_message`), made in the HSM. The kiosk relays it to
   the card (EXTERNAL AUTHENTICATE P2 9B), resets the signing PIN with the new value (RESET RETRY
   COUNTER) and reports the outcome (:meth:`PinResetService.report_result`).

Every refusal changes nothing it was asked to change — the request's transaction is rolled back,
its challenge stays as it was — and is then recorded apart, in a transaction of its own: an
audit record with the error's code (identifiers only, architecture §9.7) and a row the per-app,
per-kiosk and per-card limits count. A wrong online password also spends one of its tries there,
as a card spends one on a wrong PIN.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from jpki.access.authz import Grant, Operation
from jpki.access.clients import ClientService, NewClient, check_client_name
from jpki.audit import AuditLog
from jpki.errors import InvalidInput, InvalidPublicKey, JpkiError, Unavailable
from jpki.model import (
    Certificate,
    ClientRole,
    KioskReset,
    OnlinePassword,
    PinResetChallenge,
)
from jpki.pin_reset.ports import PinResetUnitOfWork, PinResetUnitOfWorkFactory
from jpki.pin_reset.rules import (
    CHALLENGE_LIFETIME,
    MAX_OUTSTANDING_CHALLENGES,
    PASSWORD_LIFETIME,
    PASSWORD_TRIES,
    AppNotRegistered,
    AssertionInvalid,
    ChallengeInvalid,
    HolderProofInvalid,
    Limits,
    OnlinePasswordWrong,
    ResetNotOpen,
    TooManyAttempts,
    check_assertion,
    check_auth_certificate,
    check_eligible,
    check_limit,
    hash_online_password,
    new_online_password,
    online_password_matches,
    tries_after_failure,
    usable_password,
)
from jpki.ports import Clock, KeyStore
from jpki.protocol.pin_reset import (
    CHALLENGE_BYTES,
    MIN_CARD_CHALLENGE,
    FaceCheckAssertion,
    PinResetError,
    ResetPurpose,
    card_reset_message,
    holder_auth_message,
    normalise_online_password,
)
from jpki.serials import serial_hex

CARD_KEY_LABEL = "card-management"
MAX_CARD_CHALLENGE = 256
# What a kiosk may report of a card that refused it (reference §4.5 status words).
CARD_REFUSALS = frozenset({"card.wrong_pin", "card.pin_blocked", "card.removed",
                           "card.refused"})
_RESET_ID = re.compile(r"[0-9a-f]{32}")
_CODE = re.compile(r"[a-z0-9_.]{1,64}")
_PURPOSE = {Operation.ONLINE_PASSWORD_ISSUE: ResetPurpose.ONLINE_PASSWORD,
            Operation.KIOSK_RESET: ResetPurpose.KIOSK_RESET}


class CardKeyMissing(Unavailable):
    code = "pin_reset.card_key_missing"
    title = "The CA holds no card-management key; resets at kiosks are not possible"


class TooManyChallenges(TooManyAttempts):
    code = "pin_reset.too_many_challenges"


@dataclass(frozen=True)
class IssuedOnlinePassword:
    value: str = ""  # shown once to the holder; never stored
    expires_at: datetime | None = None
    card: str = ""  # the auth certificate's serial

    def __repr__(self) -> str:  # the value never reaches a log (architecture §9.7)
        return f"IssuedOnlinePassword(card={self.card!r}, expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class ResetAuthorisation:
    reset_id: str
    authorisation: bytes  # the card-management key's signature for the card


@dataclass(frozen=True)
class _HolderProof:
    challenge: bytes
    certificate_der: bytes
    signature: bytes


class PinResetService:
    def __init__(self, uow_factory: PinResetUnitOfWorkFactory, clock: Clock, audit: AuditLog,
                 keys: KeyStore, *, card_key_label: str = CARD_KEY_LABEL,
                 limits: Limits | None = None) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._audit = audit
        self._keys = keys
        self.card_key_label = card_key_label
        self.limits = limits or Limits()

    # --- registration -------------------------------------------------------------------------

    def register_app(self, grant: Grant[Literal[Operation.CLIENT_CREATE]],
                     clients: ClientService, *, name: str, public_key: bytes) -> NewClient:
        """A holder app: an API client (its credentials) and the key its assertions are signed
        with (ECDSA P-256 or RSA of 2048 bits or more, PEM or DER SubjectPublicKeyInfo)."""
        actor = grant.require(Operation.CLIENT_CREATE)
        spki = _app_key_der(public_key)
        check_client_name(name)
        new = clients.prepare(name=name, role=ClientRole.HOLDER_APP, scope_text="")
        now = self._clock.now()
        with self._uow() as uow:
            uow.clients.add(new.client)
            uow.pin_reset.add_app_key(new.client.client_id, spki, now)
            self._audit.record(uow, actor=actor.actor, action="client.created",
                               subject=new.client.client_id,
                               payload={"role": ClientRole.HOLDER_APP.value, "scopes": [],
                                        "station_kind": None,
                                        "key_sha256": hashlib.sha256(spki).hexdigest()})
            uow.commit()
        return new

    def record_card_key(self, grant: Grant[Literal[Operation.CA_CEREMONY]],
                        public_key_der: bytes, *, imported: bool) -> str:
        """Audit that the card-management key is in the HSM (imported from the issuer's copy,
        or generated there); its SubjectPublicKeyInfo's SHA-256, which the audit names."""
        actor = grant.require(Operation.CA_CEREMONY)
        fingerprint = hashlib.sha256(public_key_der).hexdigest()
        with self._uow() as uow:
            self._audit.record(uow, actor=actor.actor, action="pin_reset.card_key_installed",
                               subject=self.card_key_label,
                               payload={"spki_sha256": fingerprint, "imported": imported})
            uow.commit()
        return fingerprint

    # --- challenges ---------------------------------------------------------------------------

    def new_challenge(self, grant: Grant[Literal[Operation.ONLINE_PASSWORD_ISSUE,
                                                 Operation.KIOSK_RESET]],
                      ) -> tuple[bytes, datetime]:
        """A single-use challenge for the app's or the kiosk's next request, valid
        CHALLENGE_LIFETIME; at most MAX_OUTSTANDING_CHALLENGES unused ones per client."""
        principal = grant.require(Operation.ONLINE_PASSWORD_ISSUE, Operation.KIOSK_RESET)
        client_id = _client_id(principal.client_id)
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        now = self._clock.now()
        expires = now + CHALLENGE_LIFETIME
        with self._uow() as uow:
            if uow.pin_reset.outstanding_challenges(client_id, now) >= \
                    MAX_OUTSTANDING_CHALLENGES:
                raise TooManyChallenges(f"at most {MAX_OUTSTANDING_CHALLENGES} unused "
                                        "challenges", retry_after=60)
            uow.pin_reset.add_challenge(PinResetChallenge(
                _digest(challenge), _PURPOSE[grant.operation].value, client_id, expires))
            uow.commit()
        return challenge, expires

    def purge_challenges(self) -> int:
        """Delete the challenges that can no longer be used (expired, or used): the maintenance
        job runs this beside the mobile challenges' purge. A replayed one is then unknown,
        which is refused alike."""
        with self._uow() as uow:
            deleted = uow.pin_reset.delete_spent_challenges(self._clock.now())
            uow.commit()
        return deleted

    # --- the holder app -----------------------------------------------------------------------

    def issue_online_password(self, grant: Grant[Literal[Operation.ONLINE_PASSWORD_ISSUE]], *,
                              challenge: bytes, auth_certificate: bytes, auth_signature: bytes,
                              assertion: bytes, assertion_signature: bytes,
                              ) -> IssuedOnlinePassword:
        principal = grant.require(Operation.ONLINE_PASSWORD_ISSUE)
        app = _client_id(principal.client_id)
        proof = _HolderProof(challenge, auth_certificate, auth_signature)
        value = new_online_password()
        stored = hash_online_password(value)  # slow: before the transaction, not inside it
        limits = self.limits
        with self._refusals(principal.actor, subjects=[f"app:{app}"]) as seen:
            now = self._clock.now()
            with self._uow() as uow:
                check_limit(uow.pin_reset.refusals(f"app:{app}", now - limits.window),
                            limits.refusals_per_app, limits.window, "refused requests per app")
                cert = self._holder(uow, proof, ResetPurpose.ONLINE_PASSWORD, app, now, seen)
                key = uow.pin_reset.app_key(app)
                if key is None:
                    raise AppNotRegistered("this app has no registered key")
                _verify_app_signature(key, assertion_signature, assertion)
                check_assertion(FaceCheckAssertion.parse(assertion), app=app,
                                challenge=challenge, auth_serial=cert.serial, now=now)
                card_id = _card_id(cert.card_id)
                check_eligible(uow.residents.get(cert.resident_id), uow.cards.get(card_id),
                               uow.certificates.for_card(card_id), now)
                since = now - limits.window
                check_limit(uow.pin_reset.passwords_issued(card_id=card_id, since=since),
                            limits.passwords_per_card, limits.window,
                            "online passwords per card")
                check_limit(uow.pin_reset.passwords_issued(app_client_id=app, since=since),
                            limits.passwords_per_app, limits.window, "online passwords per app")
                uow.pin_reset.end_passwords(card_id, "superseded", now)
                password = OnlinePassword(
                    id=uuid.uuid4().hex, card_id=card_id, app_client_id=app,
                    password_hash=stored, status="active", tries_left=PASSWORD_TRIES,
                    created_at=now, expires_at=now + PASSWORD_LIFETIME)
                uow.pin_reset.add_password(password)
                self._audit.record(uow, actor=principal.actor,
                                   action="pin_reset.online_password_issued", subject=cert.serial,
                                   payload={"password_id": password.id,
                                            "expires_at": password.expires_at.isoformat()})
                uow.commit()
        return IssuedOnlinePassword(value, password.expires_at, cert.serial)

    # --- the kiosk ----------------------------------------------------------------------------

    def authorise_reset(self, grant: Grant[Literal[Operation.KIOSK_RESET]], *,
                        challenge: bytes, auth_certificate: bytes, auth_signature: bytes,
                        online_password: str, card_challenge: bytes) -> ResetAuthorisation:
        principal = grant.require(Operation.KIOSK_RESET)
        kiosk = _client_id(principal.client_id)
        proof = _HolderProof(challenge, auth_certificate, auth_signature)
        limits = self.limits
        with self._refusals(principal.actor, subjects=[f"kiosk:{kiosk}"]) as seen:
            typed = normalise_online_password(online_password)
            if not MIN_CARD_CHALLENGE <= len(card_challenge) <= MAX_CARD_CHALLENGE:
                raise PinResetError(f"card_challenge is {MIN_CARD_CHALLENGE}-"
                                    f"{MAX_CARD_CHALLENGE} bytes", field="card_challenge")
            now = self._clock.now()
            with self._uow() as uow:
                since = now - limits.window
                check_limit(uow.pin_reset.refusals(f"kiosk:{kiosk}", since),
                            limits.refusals_per_kiosk, limits.window,
                            "refused requests per kiosk")
                cert = self._holder(uow, proof, ResetPurpose.KIOSK_RESET, kiosk, now, seen)
                card_id = _card_id(cert.card_id)
                check_limit(uow.pin_reset.refusals(f"card:{card_id}", since),
                            limits.refusals_per_card, limits.window,
                            "refused attempts per card")
                check_eligible(uow.residents.get(cert.resident_id), uow.cards.get(card_id),
                               uow.certificates.for_card(card_id), now)
                password = usable_password(
                    uow.pin_reset.active_password(card_id, for_update=True), now)
                if not online_password_matches(typed, password.password_hash):
                    left, status = tries_after_failure(password)
                    seen.also = lambda u, p=password, n=now: u.pin_reset.update_password(
                        p.id, tries_left=left, status=status,
                        ended_at=n if status != "active" else None)
                    raise OnlinePasswordWrong("the online password is wrong", tries_left=left)
                if not self._keys.has_key(self.card_key_label):
                    raise CardKeyMissing("the CA holds no card-management key")
                der = cert.der or b""
                signature = self._keys.rsa_key(self.card_key_label).sign(
                    card_reset_message(card_challenge, der), padding.PKCS1v15(),
                    hashes.SHA256())
                uow.pin_reset.update_password(password.id, status="consumed", ended_at=now,
                                              consumed_by=kiosk)
                reset = KioskReset(id=uuid.uuid4().hex, card_id=card_id, kiosk_client_id=kiosk,
                                   online_password_id=password.id, status="authorised",
                                   created_at=now)
                uow.pin_reset.add_reset(reset)
                self._audit.record(uow, actor=principal.actor,
                                   action="pin_reset.reset_authorised", subject=cert.serial,
                                   payload={"reset_id": reset.id, "password_id": password.id,
                                            "chain": principal.chain})
                uow.commit()
        return ResetAuthorisation(reset.id, signature)

    def report_result(self, grant: Grant[Literal[Operation.KIOSK_RESET]], reset_id: str, *,
                      done: bool, code: str | None = None) -> KioskReset:
        """The kiosk's report of what the card did with the authorisation: the reset is
        closed, done or failed (with the card's refusal, a code of CARD_REFUSALS)."""
        principal = grant.require(Operation.KIOSK_RESET)
        kiosk = _client_id(principal.client_id)
        if not _RESET_ID.fullmatch(reset_id):
            raise InvalidInput("a reset id is 32 lower-case hex digits", field="reset_id")
        if done and code is not None:
            raise InvalidInput("a reset that was done has no error code", field="code")
        if not done and code not in CARD_REFUSALS:
            raise InvalidInput(f"code is one of {', '.join(sorted(CARD_REFUSALS))}",
                               field="code")
        now = self._clock.now()
        with self._uow() as uow:
            reset = uow.pin_reset.reset(reset_id, for_update=True)
            if reset is None or reset.kiosk_client_id != kiosk or reset.status != "authorised":
                raise ResetNotOpen("no open reset of this kiosk has that id")
            status = "done" if done else "failed"
            uow.pin_reset.finish_reset(reset_id, status, now, code)
            self._audit.record(uow, actor=principal.actor, action=f"pin_reset.reset_{status}",
                               subject=reset_id, payload={"code": code})
            uow.commit()
        return KioskReset(reset.id, reset.card_id, reset.kiosk_client_id,
                          reset.online_password_id, status, reset.created_at, now, code)

    def report_card_refusal(self, grant: Grant[Literal[Operation.KIOSK_RESET]], *,
                            challenge: bytes, code: str) -> None:
        """The kiosk's report that the card refused the holder before anything reached the CA
        (a wrong 4-digit PIN, a blocked one, the card pulled out): it uses the kiosk's
        challenge, counts against the kiosk and is audited — the card itself counted the try."""
        principal = grant.require(Operation.KIOSK_RESET)
        kiosk = _client_id(principal.client_id)
        if code not in CARD_REFUSALS:
            raise InvalidInput(f"code is one of {', '.join(sorted(CARD_REFUSALS))}",
                               field="code")
        now = self._clock.now()
        with self._uow() as uow:
            if uow.pin_reset.use_challenge(_digest(challenge), kiosk,
                                           ResetPurpose.KIOSK_RESET.value, now) is None:
                raise ChallengeInvalid("the challenge is unknown, used, expired or another "
                                       "client's")
            uow.pin_reset.add_refusal(f"kiosk:{kiosk}", code, now)
            self._audit.record(uow, actor=principal.actor, action="pin_reset.refused",
                               subject=principal.actor, payload={"code": code})
            uow.commit()

    # --- shared steps ------------------------------------------------------------------------

    def _holder(self, uow: PinResetUnitOfWork, proof: _HolderProof, purpose: ResetPurpose,
                client_id: str, now: datetime, seen: _Refusal) -> Certificate:
        """Use the challenge, then check the card's auth certificate and its signature."""
        if len(proof.challenge) != CHALLENGE_BYTES or uow.pin_reset.use_challenge(
                _digest(proof.challenge), client_id, purpose.value, now) is None:
            raise ChallengeInvalid("the challenge is unknown, used, expired or another "
                                   "client's")
        try:
            presented = x509.load_der_x509_certificate(proof.certificate_der)
        except ValueError as exc:
            raise HolderProofInvalid("auth_certificate is not a DER certificate") from exc
        cert = check_auth_certificate(
            uow.certificates.get_by_serial(serial_hex(presented.serial_number)),
            proof.certificate_der, now)
        seen.serial, seen.card_id = cert.serial, cert.card_id
        key = presented.public_key()
        try:
            if not isinstance(key, rsa.RSAPublicKey):
                raise InvalidSignature
            key.verify(proof.signature, holder_auth_message(purpose, proof.challenge),
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise HolderProofInvalid("the card's signature does not verify",
                                     serial=cert.serial) from exc
        return cert

    @contextmanager
    def _refusals(self, actor: str, subjects: list[str]) -> Iterator[_Refusal]:
        """Record a refusal apart from the request's rolled-back transaction (module doc)."""
        seen = _Refusal()
        try:
            yield seen
        except JpkiError as exc:
            self._record_refusal(actor, subjects, seen, exc)
            raise

    def _record_refusal(self, actor: str, subjects: list[str], seen: _Refusal,
                        exc: JpkiError) -> None:
        now = self._clock.now()
        with self._uow() as uow:
            # A request refused for the limits was not looked at: counting it too would extend
            # the lock-out for as long as someone keeps trying.
            if not isinstance(exc, TooManyAttempts):
                for subject in subjects:
                    uow.pin_reset.add_refusal(subject, exc.code, now)
                if seen.card_id is not None:
                    uow.pin_reset.add_refusal(f"card:{seen.card_id}", exc.code, now)
            if seen.also is not None:
                seen.also(uow)
            payload: dict[str, str | int | None] = {"code": exc.code}
            if seen.serial is not None:
                payload["card"] = seen.serial
            self._audit.record(uow, actor=actor, action="pin_reset.refused", subject=actor,
                               payload=payload)
            uow.commit()


class _Refusal:
    """What a refused request got as far as learning (identifiers only), and any change its
    refusal itself makes (a wrong online password's spent try)."""

    def __init__(self) -> None:
        self.serial: str | None = None
        self.card_id: int | None = None
        self.also: Callable[[PinResetUnitOfWork], None] | None = None


def _digest(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _client_id(value: str | None) -> str:
    if value is None:  # the table admits API clients only; anything else is a wiring bug
        raise InvalidInput("this call is for API clients")
    return value


def _card_id(value: int | None) -> int:
    if value is None:
        raise HolderProofInvalid("the certificate is bound to no card")
    return value


def _app_key_der(data: bytes) -> bytes:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InvalidPublicKey("not a PEM or DER SubjectPublicKeyInfo") from exc
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidPublicKey("an app's EC key is on P-256")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InvalidPublicKey("an app's RSA key has at least 2048 bits")
    else:
        raise InvalidPublicKey("an app's key is ECDSA P-256 or RSA")
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _verify_app_signature(spki: bytes, signature: bytes, message: bytes) -> None:
    key = serialization.load_der_public_key(spki)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise InvalidSignature
    except InvalidSignature as exc:
        raise AssertionInvalid("the assertion is not signed by this app's registered key",
                               field="assertion_signature") from exc
