"""The rules of the signing-password reset with an online password (reference §4.5, "Resetting
the signing password at a convenience store"; this project's design, architecture §7.1), apart
from the transactions, the HSM and the HTTP that jpki.pin_reset.service runs them in. Each takes
the records the service read and answers, or refuses with the error the caller sees.

- **Whose card.** The holder proves the card and its 4-digit PIN with a signature by the card's
  user-authentication key: the certificate must be one this CA issued (byte for byte), a card
  auth certificate, valid now, on an active card of an active resident who is 15 or over
  (reference §1.4: no signing certificate under 15, so no signing password to reset), and the
  card must hold a signing certificate that is not revoked (a revoked one is replaced at the
  window, not unlocked at a shop).
- **The face check** is asserted by a registered app: signed with its key, naming this app, this
  challenge and this card, matched, and made within :data:`ASSERTION_MAX_AGE` (and not from the
  future beyond :data:`CLOCK_SKEW`).
- **The online password** is the card's newest active one: unexpired, with tries left; the
  holder has :data:`PASSWORD_TRIES` tries at kiosks, after which it is locked. A new one
  supersedes the card's earlier ones. Its hash is scrypt (RFC 7914) with a salt of its own.
- **Limits** (per card, per app, per kiosk) count what the store holds, so every CA node sees
  the same counts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from jpki.errors import (
    CardInactive,
    Conflict,
    Forbidden,
    PolicyViolation,
    ResidentInactive,
    UnderageSigning,
)
from jpki.model import (
    Card,
    CardStatus,
    Certificate,
    CertKind,
    OnlinePassword,
    Resident,
    ResidentStatus,
)
from jpki.protocol.pin_reset import (
    ONLINE_PASSWORD_ALPHABET,
    ONLINE_PASSWORD_LENGTH,
    FaceCheckAssertion,
    PinResetError,
)
from jpki.rate_limits import RateLimited
from jpki.validity import MINIMUM_SIGNING_AGE, age_on, jst_date

CHALLENGE_LIFETIME = timedelta(minutes=5)
MAX_OUTSTANDING_CHALLENGES = 20  # per app or kiosk
ASSERTION_MAX_AGE = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=60)
PASSWORD_LIFETIME = timedelta(minutes=30)
PASSWORD_TRIES = 3




@dataclass(frozen=True)
class Limits:
    """How much each party may try (architecture §7.1). The defaults are this project's choice:
    a holder needs one password a visit, an app serves one person, a kiosk many."""

    window: timedelta = timedelta(hours=24)
    passwords_per_card: int = 3  # online passwords issued to one card per window
    passwords_per_app: int = 10  # issued through one app per window
    refusals_per_app: int = 10  # refused requests of one app per window
    refusals_per_kiosk: int = 20  # refused requests of one kiosk per window
    refusals_per_card: int = 10  # refused kiosk attempts about one card per window


class ChallengeInvalid(PinResetError):
    code = "pin_reset.challenge_invalid"
    title = "The challenge is unknown, used, expired or not this caller's"


class HolderProofInvalid(PolicyViolation):
    code = "pin_reset.holder_refused"
    title = "The card's authentication signature or certificate is not acceptable"


class SigningCertificateRevoked(PolicyViolation):
    code = "pin_reset.signing_revoked"
    title = "The card has no valid signing certificate; its password is reset at the window"


class AssertionInvalid(PolicyViolation):
    code = "pin_reset.assertion_invalid"
    title = "The face-check assertion is not acceptable"


class AppNotRegistered(Forbidden):
    code = "pin_reset.app_unregistered"
    title = "This holder app has no registered key"


class OnlinePasswordMissing(PolicyViolation):
    code = "pin_reset.no_online_password"
    title = "This card has no online password in force"


class OnlinePasswordExpired(PolicyViolation):
    code = "pin_reset.online_password_expired"
    title = "The online password has expired"


class OnlinePasswordWrong(PolicyViolation):
    code = "pin_reset.online_password_wrong"
    title = "The online password is not this card's"


class OnlinePasswordLocked(PolicyViolation):
    code = "pin_reset.online_password_locked"
    title = "The online password was entered wrongly too often and is locked"


class ResetNotOpen(Conflict):
    code = "pin_reset.reset_closed"
    title = "The reset is unknown, another kiosk's, or already finished"


class TooManyAttempts(RateLimited):
    code = "pin_reset.too_many"
    title = "Too many attempts; try again later"


# --- the card and its holder --------------------------------------------------------------


def check_auth_certificate(cert: Certificate | None, presented_der: bytes,
                           now: datetime) -> Certificate:
    """The card auth certificate of ours the holder signed with, valid now."""
    if cert is None or cert.der is None or cert.der != presented_der:
        raise HolderProofInvalid("the certificate was not issued by this CA")
    if cert.kind is not CertKind.CARD_AUTH:
        raise HolderProofInvalid("sign with the card's user-authentication key")
    if not cert.is_valid(now) or cert.card_id is None:
        raise HolderProofInvalid("the auth certificate is revoked, expired or not issued",
                                 serial=cert.serial)
    return cert


def check_eligible(resident: Resident | None, card: Card | None,
                   card_certificates: Iterable[Certificate], now: datetime) -> Certificate:
    """Whether this card's signing password may be reset: the resident active and 15 or over
    (JST date), the card active, and a valid signing certificate on it (which it returns)."""
    if resident is None or resident.status is not ResidentStatus.ACTIVE:
        raise ResidentInactive("the holder's resident record has ended")
    if card is None or card.status is not CardStatus.ACTIVE:
        raise CardInactive("the card is not active")
    if not holder_old_enough(resident.birth_date, jst_date(now)):
        raise UnderageSigning(f"no signing password under {MINIMUM_SIGNING_AGE}")
    sign = [c for c in card_certificates if c.kind is CertKind.CARD_SIGN and c.is_valid(now)]
    if not sign:
        raise SigningCertificateRevoked("the card's signing certificate is revoked or expired")
    return max(sign, key=lambda c: c.created_at)


def holder_old_enough(birth: date, today: date) -> bool:
    """reference §1.4: a signing certificate (and so its password) from 15."""
    return age_on(birth, today) >= MINIMUM_SIGNING_AGE


# --- the face check ----------------------------------------------------------------------------


def check_assertion(assertion: FaceCheckAssertion, *, app: str, challenge: bytes,
                    auth_serial: str, now: datetime) -> None:
    """What a verified assertion must say: this app, this challenge, this card, a match, and
    recently. Its signature is checked before (jpki.pin_reset.service)."""
    if assertion.app != app:
        raise AssertionInvalid("the assertion names another app", field="app")
    if not hmac.compare_digest(assertion.challenge, challenge):
        raise AssertionInvalid("the assertion names another challenge", field="challenge")
    if assertion.card != auth_serial:
        raise AssertionInvalid("the assertion names another card", field="card")
    if not assertion.matched:
        raise AssertionInvalid("the face check did not match", field="matched")
    if assertion.checked_at > now + CLOCK_SKEW or now - assertion.checked_at > ASSERTION_MAX_AGE:
        raise AssertionInvalid("the face check is not recent", field="checked_at")


# --- the online password -------------------------------------------------------------------

# scrypt (RFC 7914 §2): N = 2^14, r = 8, p = 1 — 16 MiB and some 50 ms a check, the
# parameters RFC 7914 §2 calls interactive; a kiosk's check is one per attempt.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
SCRYPT_SALT_BYTES = 16
_HASH_PREFIX = "scrypt"


def new_online_password() -> str:
    return "".join(secrets.choice(ONLINE_PASSWORD_ALPHABET)
                   for _ in range(ONLINE_PASSWORD_LENGTH))


def hash_online_password(value: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64): what the store keeps of an online password."""
    salt = salt if salt is not None else secrets.token_bytes(SCRYPT_SALT_BYTES)
    digest = hashlib.scrypt(value.encode("ascii"), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, dklen=32)
    return "$".join((_HASH_PREFIX, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))


def online_password_matches(value: str, stored: str) -> bool:
    prefix, n, r, p, salt, digest = stored.split("$")
    if prefix != _HASH_PREFIX:
        return False
    computed = hashlib.scrypt(value.encode("ascii"), salt=base64.b64decode(salt), n=int(n),
                              r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(computed, base64.b64decode(digest))


def usable_password(password: OnlinePassword | None, now: datetime) -> OnlinePassword:
    """The card's online password in force, before its value is compared."""
    if password is None:
        raise OnlinePasswordMissing("this card has no online password in force; obtain one "
                                    "in the app")
    if now >= password.expires_at:
        raise OnlinePasswordExpired("the online password has expired; obtain a new one")
    if password.tries_left <= 0:
        raise OnlinePasswordLocked("the online password is locked; obtain a new one")
    return password


def tries_after_failure(password: OnlinePassword) -> tuple[int, str]:
    """(tries left, status) after a wrong entry: locked once none are left."""
    left = max(0, password.tries_left - 1)
    return left, ("active" if left else "locked")


# --- limits -----------------------------------------------------------------------------------


def check_limit(count: int, limit: int, window: timedelta, what: str) -> None:
    """Refuse once ``count`` reached ``limit`` in ``window`` (Retry-After: the window)."""
    if count >= limit:
        raise TooManyAttempts(f"at most {limit} {what} in {_describe(window)}",
                              retry_after=max(1, math.ceil(window.total_seconds())))


def _describe(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g} hours" if hours != 1 else "an hour"
