"""One error hierarchy for the whole domain.

Every refusal the service can give is a subclass of :class:`JpkiError` with a stable ``code`` that
clients and scripts may depend on, and a :class:`Category` that the HTTP layer (and only it) maps to
a status code. Checks raise; they never return False.

Personal data rule (architecture §9.7): an error's ``detail`` and ``context`` must
never carry any of the basic 4 information. Name the field and the rule that failed ("name: a
character at position 3 cannot be encoded"), never the value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Category(StrEnum):
    """What kind of refusal this is; the API maps each to one HTTP status."""

    INVALID_INPUT = "invalid_input"  # the request itself is malformed or out of range
    NOT_FOUND = "not_found"  # a named object does not exist
    CONFLICT = "conflict"  # the request collides with the current state
    POLICY = "policy"  # well-formed, but a lifecycle rule forbids it
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # a component (HSM, database) cannot serve now
    INTERNAL = "internal"  # an invariant broke; never the caller's fault


class JpkiError(Exception):
    """Base of every error the domain raises on purpose."""

    code: ClassVar[str] = "jpki.error"
    category: ClassVar[Category] = Category.INTERNAL
    title: ClassVar[str] = "Unexpected error"

    def __init__(self, detail: str | None = None, **context: str | int | None) -> None:
        self.detail = detail or self.title
        # context: identifiers only (serials, resident ids, field names), never personal data.
        self.context = {k: v for k, v in context.items() if v is not None}
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r})"

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


# --- categories ---------------------------------------------------------------------------


class InvalidInput(JpkiError):
    code = "request.invalid"
    category = Category.INVALID_INPUT
    title = "The request is invalid"


class NotFound(JpkiError):
    code = "not_found"
    category = Category.NOT_FOUND
    title = "Not found"


class Conflict(JpkiError):
    code = "conflict"
    category = Category.CONFLICT
    title = "Conflicts with the current state"


class PolicyViolation(JpkiError):
    code = "policy"
    category = Category.POLICY
    title = "Refused by policy"


class Unauthenticated(JpkiError):
    code = "auth.required"
    category = Category.UNAUTHENTICATED
    title = "Authentication required"


class Forbidden(JpkiError):
    code = "auth.forbidden"
    category = Category.FORBIDDEN
    title = "Not allowed for this client"


class TooLarge(JpkiError):
    code = "request.too_large"
    category = Category.TOO_LARGE
    title = "The request is too large"


class Unavailable(JpkiError):
    code = "unavailable"
    category = Category.UNAVAILABLE
    title = "A component is unavailable"


class InternalError(JpkiError):
    code = "internal"
    category = Category.INTERNAL
    title = "Internal error"


# --- request and input --------------------------------------------------------------------


class MalformedRequest(InvalidInput):
    code = "request.malformed"
    title = "The request body could not be parsed"


class InvalidBasic4(InvalidInput):
    code = "basic4.invalid"
    title = "The basic 4 information is invalid"


class InvalidDate(InvalidInput):
    code = "date.invalid"
    title = "A date is invalid"


class InvalidPublicKey(InvalidInput):
    code = "public_key.invalid"
    title = "The public key could not be parsed"


class UnsupportedKeyAlgorithm(InvalidInput):
    code = "public_key.algorithm"
    title = "The public key algorithm is not accepted"


class WeakPublicKey(InvalidInput):
    code = "public_key.weak"
    title = "The public key is too weak"


class InvalidSerial(InvalidInput):
    code = "serial.invalid"
    title = "The serial number is invalid"


class InvalidReason(InvalidInput):
    code = "revocation.reason_invalid"
    title = "The revocation reason is not accepted"


class InvalidMunicipalityCode(InvalidInput):
    code = "municipality.invalid"
    title = "The municipality code is invalid"


class UnstorableValue(InvalidInput):
    code = "request.unstorable"
    title = "A value in the request cannot be stored"


class InvalidRecipe(InvalidInput):
    code = "recipe.invalid"
    title = "The key ceremony recipe is invalid"


# --- not found ----------------------------------------------------------------------------


class ResidentNotFound(NotFound):
    code = "resident.not_found"
    title = "No such resident"


class CardNotFound(NotFound):
    code = "card.not_found"
    title = "No such card"


class CertificateNotFound(NotFound):
    code = "certificate.not_found"
    title = "No such certificate"


class MunicipalityNotFound(NotFound):
    code = "municipality.not_found"
    title = "No such municipality"


class MunicipalityExists(Conflict):
    code = "municipality.exists"
    title = "A municipality with this code is registered already"


class MunicipalityMerged(Conflict):
    code = "municipality.merged"
    title = "The municipality was merged into another (市町村合併)"


class CrlNameTaken(Conflict):
    code = "municipality.crl_name_taken"
    title = "Another municipality's CRL shard has this distribution-point name"


class CaNotInitialised(NotFound):
    code = "ca.not_initialised"
    title = "The certificate authority has not been initialised"


class ClientNotFound(NotFound):
    code = "client.not_found"
    title = "No such API client"


# --- conflicts ----------------------------------------------------------------------------


class DuplicatePublicKey(Conflict):
    code = "public_key.duplicate"
    title = "This public key is already certified"


class CardConflict(Conflict):
    code = "card.conflict"
    title = "The card does not match the resident's current card"


class DuplicateResource(Conflict):
    code = "conflict.duplicate"
    title = "Already exists"


# --- lifecycle policy ---------------------------------------------------------------------


class UnderageSigning(PolicyViolation):
    code = "policy.under_15"
    title = "No signing certificate is issued to a resident under 15"


class RenewalOutsideWindow(PolicyViolation):
    code = "policy.renewal_window"
    title = "Renewal is possible only from 3 months before expiry"


class ResidentInactive(PolicyViolation):
    code = "resident.inactive"
    title = "The resident record is not active"


class CardInactive(PolicyViolation):
    code = "card.inactive"
    title = "The card is not active"


class CardExpired(PolicyViolation):
    code = "card.expired"
    title = "The card has expired"


class CertificateNotRenewable(PolicyViolation):
    code = "certificate.not_renewable"
    title = "This certificate cannot be renewed"


class CertificateRevoked(PolicyViolation):
    code = "certificate.revoked"
    title = "The certificate is revoked"


class EmigrationPending(PolicyViolation):
    code = "policy.emigration_pending"
    title = "A signing certificate for an emigrant is issued only from the departure date"


class HoldNotReleasable(PolicyViolation):
    code = "revocation.hold_not_releasable"
    title = "This hold cannot be released"


# --- authentication -----------------------------------------------------------------------


class BadCredentials(Unauthenticated):
    code = "auth.invalid_credentials"
    title = "The credentials are invalid"


class ClientSuspended(Forbidden):
    code = "auth.client_suspended"
    title = "The client is suspended"


class ConsoleLoginFailed(Unauthenticated):
    """A console sign-in refused: wrong user name, password or code, or a locked or suspended
    account — one answer for all, so that it does not tell which (the audit record does)."""

    code = "console.login_failed"
    title = "The user name, password or code is wrong, or the account cannot sign in now"


class ConsoleSessionEnded(Unauthenticated):
    code = "console.session_ended"
    title = "The console session has ended; sign in again"


class RetryLater(JpkiError):
    """Refused for now: the caller may try again in ``retry_after`` seconds (HTTP
    Retry-After)."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class AuthThrottled(RetryLater):
    """Too many failed authentications from this address or for this client id: refused
    without checking anything (jpki.access.auth_throttle)."""

    code = "auth.throttled"
    category = Category.RATE_LIMITED
    title = "Too many failed authentications"


class VerifierBusy(RetryLater, Unavailable):
    """The bounded verifier of legacy (Argon2id) secret hashes is full (jpki.access.client_secrets):
    the caller is asked to come back rather than queued without bound."""

    code = "auth.busy"
    title = "Too many credential checks in progress"


class MissingScope(Forbidden):
    code = "auth.scope_missing"
    title = "The client lacks the scope this call needs"


class WrongRole(Forbidden):
    code = "auth.role_forbidden"
    title = "The client's role may not make this call"


# --- components and invariants -------------------------------------------------------------


class KeyStoreUnavailable(Unavailable):
    code = "hsm.unavailable"
    title = "The key store cannot be reached"


class LintFailure(InternalError):
    code = "profile.lint_failed"
    title = "The certificate failed the profile checks before signing"


class SignatureMismatch(InternalError):
    code = "hsm.signature_mismatch"
    title = "The signed certificate does not match the checked one"


class AuditChainBroken(InternalError):
    code = "audit.chain_broken"
    title = "The audit chain does not verify"


class AuditStateMismatch(InternalError):
    code = "audit.state_mismatch"
    title = "The certificates' state differs from what the audit log says"
