"""The process's login to one token, shared by every key store open on it.

PKCS#11 logins belong to the application, not to a session: after one ``C_Login``
every session of the process on that token sees the private objects, a second
``C_Login`` fails with ``CKR_USER_ALREADY_LOGGED_IN`` *without checking the PIN*
(SoftHSM 2.6.1), and one ``C_Logout`` - which python-pkcs11's ``Session.close()``
issues for any session opened with a PIN - logs out every session.

So the login is held by one "anchor" session that this object owns, the pooled
sessions are opened without a PIN, and the login is reference counted across the
key stores of the process. A key store opened while the token is already logged in
cannot have its PIN checked by the token, so the PIN is compared with a salted
digest of the one that logged in.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os

from pkcs11.exceptions import (
    PinExpired,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    SessionClosed,
    SessionHandleInvalid,
    UserAlreadyLoggedIn,
    UserPinNotInitialized,
)
from pkcs11.types import Session, Token

from hsm.errors import HsmUnavailable

_REJECTED_PIN = (PinIncorrect, PinInvalid, PinLenRange)


class TokenLogin:
    """A user login to ``token``, kept alive by an anchor session.

    Not thread-safe by itself: :class:`hsm.module.Pkcs11Module` calls it under its lock.
    """

    def __init__(self, token: Token, user_pin: str) -> None:
        self.token = token
        self.label = token.label
        self.refs = 0
        self._salt = os.urandom(16)
        self._pin_digest = self._digest(user_pin)
        self._anchor: Session | None = self._open_anchor(user_pin, already_ok=False)

    def _digest(self, pin: str) -> bytes:
        return hashlib.sha256(self._salt + pin.encode("utf-8")).digest()

    def pin_matches(self, user_pin: str) -> bool:
        return hmac.compare_digest(self._digest(user_pin), self._pin_digest)

    def _open_anchor(self, user_pin: str, *, already_ok: bool) -> Session | None:
        # Read-only is enough: the login covers the R/W sessions of the pool too.
        # A failed C_Login leaves the session python-pkcs11 opened for it open and out
        # of reach; that costs one session handle per wrong PIN, nothing more.
        try:
            return self.token.open(user_pin=user_pin)
        except _REJECTED_PIN:
            raise HsmUnavailable(f"token {self.label!r} rejected the user PIN") from None
        except PinLocked:
            raise HsmUnavailable(f"the user PIN of token {self.label!r} is locked") from None
        except PinExpired:
            raise HsmUnavailable(f"the user PIN of token {self.label!r} has expired") from None
        except UserPinNotInitialized:
            raise HsmUnavailable(f"token {self.label!r} has no user PIN set") from None
        except UserAlreadyLoggedIn:
            if already_ok:
                # Our pooled sessions kept the login alive after the anchor died.
                return None
            raise HsmUnavailable(
                f"token {self.label!r} is already logged in by code outside hsm.KeyStore "
                "in this process, so the PIN cannot be checked"
            ) from None
        except PKCS11Error as exc:
            raise HsmUnavailable(
                f"cannot log in to token {self.label!r}: {type(exc).__name__}"
            ) from None

    def ensure(self, user_pin: str, *, logged_out: bool = False) -> None:
        """Log in again if the anchor session has died or the token reported a logout.

        ``logged_out`` is set when a call failed with ``CKR_USER_NOT_LOGGED_IN``: some
        code outside this package called ``C_Logout``, so the anchor is replaced even
        though its handle is still valid.
        """
        if self._anchor is not None and logged_out:
            self.close()
        if self._anchor is not None:
            try:
                # Any call that needs a live session handle; this one touches no object.
                self._anchor.generate_random(64)
                return
            except (SessionHandleInvalid, SessionClosed):
                self._anchor = None
        self._anchor = self._open_anchor(user_pin, already_ok=True)

    def close(self) -> None:
        """Log out (python-pkcs11 calls C_Logout, then C_CloseSession)."""
        anchor, self._anchor = self._anchor, None
        if anchor is not None:
            with contextlib.suppress(PKCS11Error):
                anchor.close()
