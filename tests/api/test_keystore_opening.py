"""Which key stores sign bulk work in a child process (api.keystore)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.keystore import bulk_signing_process
from jpki.settings import Settings

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
NETWORK_HSM = "/opt/safenet/lunaclient/lib/libCryptoki2_64.so"


def test_auto_uses_a_process_for_softhsm_only() -> None:
    assert bulk_signing_process("auto", SOFTHSM)
    assert not bulk_signing_process("auto", NETWORK_HSM)


def test_an_explicit_choice_wins() -> None:
    assert bulk_signing_process("process", NETWORK_HSM)
    assert not bulk_signing_process("pool", SOFTHSM)


def test_the_setting_defaults_to_auto_and_takes_nothing_else(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().hsm_bulk_signer == "auto"
    monkeypatch.setenv("JPKI_HSM_BULK_SIGNER", "pool")
    assert Settings().hsm_bulk_signer == "pool"
    monkeypatch.setenv("JPKI_HSM_BULK_SIGNER", "threads")
    with pytest.raises(ValidationError):
        Settings()
