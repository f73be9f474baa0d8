"""Fixtures for the HSM tests, on top of the session-wide SoftHSM token of tests/conftest.py.

SoftHSM reads SOFTHSM2_CONF only at C_Initialize and python-pkcs11 keeps the module
loaded for the whole process, so every test of the session - these and the rest of
the suite - shares the one data directory, token and KeyStore defined in
tests/conftest.py (``softhsm_module``, ``hsm_data_dir``, ``token_created``,
``token_config``, ``keystore``). Defining a second data directory here would switch
SOFTHSM2_CONF under the open key store. The RSA test key is generated once (slow).

Without SoftHSM every test here skips on a workstation and fails when CI is set:
``softhsm_module`` decides, and the autouse fixture below makes each test ask it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hsm
from hsm import HsmRsaPrivateKey, KeyStore

RSA_LABEL = "test-hsm-rsa"


@pytest.fixture(autouse=True)
def _require_softhsm(softhsm_module: str) -> None:
    """Every test here needs SoftHSM: skip, or in CI fail, before it runs."""


@pytest.fixture(scope="session")
def rsa_key(keystore: KeyStore) -> HsmRsaPrivateKey:
    if keystore.has_key(RSA_LABEL):
        return keystore.rsa_key(RSA_LABEL)
    return keystore.generate_rsa_key(RSA_LABEL)


@pytest.fixture(scope="session")
def hmac_labels(keystore: KeyStore) -> tuple[str, str]:
    labels = ("test-hsm-hmac-a", "test-hsm-hmac-b")
    for label in labels:
        if not keystore.has_key(label):
            keystore.generate_hmac_key(label)
    return labels


@pytest.fixture(scope="session")
def subprocess_env(hsm_data_dir: Path) -> dict[str, str]:
    """Environment for a child Python that imports hsm and sees the session's SoftHSM."""
    root = str(Path(hsm.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}
