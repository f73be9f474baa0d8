"""PKCS#11 key store (SoftHSM2 in development and tests, a real HSM in production).

The CA signs through :class:`HsmRsaPrivateKey`, a cryptography ``RSAPrivateKey``
whose private half never leaves the token. This package never imports ``jpki`` or
``api``: the domain sees only cryptography's key interface.
"""

from hsm.errors import (
    HsmError,
    HsmUnavailable,
    KeyExists,
    KeyNotExportable,
    KeyNotFound,
    KeyUsageNotPermitted,
    TokenNotFound,
)
from hsm.keystore import KeyStore, TokenConfig
from hsm.rsa_key import HsmRsaPrivateKey
from hsm.softhsm import (
    activate_softhsm_config,
    default_module_path,
    ensure_token,
    write_softhsm_config,
)

__all__ = [
    "HsmError",
    "HsmRsaPrivateKey",
    "HsmUnavailable",
    "KeyExists",
    "KeyNotExportable",
    "KeyNotFound",
    "KeyStore",
    "KeyUsageNotPermitted",
    "TokenConfig",
    "TokenNotFound",
    "activate_softhsm_config",
    "default_module_path",
    "ensure_token",
    "write_softhsm_config",
]
