"""PKCS#11 key store (SoftHSM2 in development and tests, a real HSM in production).

The CA signs through :class:`HsmRsaPrivateKey`, a cryptography ``RSAPrivateKey``
whose private half never leaves the token. This package never imports ``jpki`` or
``api``: the domain sees only cryptography's key interface.

A key made *replicable* leaves only wrapped, for another token, under a key the token's
security officer marked trusted: the key-replication ceremony of :mod:`hsm.replication`
(:mod:`hsm.transport_key` on the receiving token, :mod:`hsm.key_bundle` for the file between).
"""

from hsm.errors import (
    BundleInvalid,
    HsmError,
    HsmUnavailable,
    KeyExists,
    KeyNotExportable,
    KeyNotFound,
    KeyNotReplicable,
    KeyUsageNotPermitted,
    TokenNotFound,
    WrongTransportKey,
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
    "BundleInvalid",
    "HsmError",
    "HsmRsaPrivateKey",
    "HsmUnavailable",
    "KeyExists",
    "KeyNotExportable",
    "KeyNotFound",
    "KeyNotReplicable",
    "KeyStore",
    "KeyUsageNotPermitted",
    "TokenConfig",
    "TokenNotFound",
    "WrongTransportKey",
    "activate_softhsm_config",
    "default_module_path",
    "ensure_token",
    "write_softhsm_config",
]
