"""Exceptions raised by the HSM key store.

Callers outside :mod:`hsm` catch these, never python-pkcs11's own exceptions, so
that the PKCS#11 binding stays an implementation detail of this package.
None of these messages ever contains a PIN.
"""

from __future__ import annotations


class HsmError(Exception):
    """Base class of every error raised by :mod:`hsm`."""


class TokenNotFound(HsmError):
    """No token with the requested label is visible through the module."""


class KeyNotFound(HsmError):
    """No key with the requested label exists on the token."""


class KeyExists(HsmError):
    """A key with the requested label already exists on the token."""


class KeyNotExportable(HsmError):
    """Private key material never leaves the token (CKA_SENSITIVE, not CKA_EXTRACTABLE)."""


class HsmUnavailable(HsmError):
    """The module cannot be loaded, the token cannot be opened, or the PIN is wrong."""


class KeyUsageNotPermitted(HsmError, NotImplementedError):
    """The key may not do this (token RSA keys sign; they never decrypt)."""


class KeyNotReplicable(HsmError):
    """The token refused to wrap the key for another token.

    ``reason`` is the PKCS#11 return code the token gave: ``CKR_KEY_UNEXTRACTABLE`` (the key
    was created never to leave, e.g. before replication existed) or ``CKR_KEY_NOT_WRAPPABLE``
    (the key may leave only under a wrapping key the security officer marked CKA_TRUSTED).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BundleInvalid(HsmError):
    """A key bundle is malformed, tampered with, or inconsistent with its certificates."""


class WrongTransportKey(HsmError):
    """A key bundle was wrapped for a transport key this token does not hold."""
