"""The key store's observer (hsm.pool.HsmObserver): every signature and MAC is timed, and a
borrower that finds every session in use reports how long it waited — and only then."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from hsm import HsmRsaPrivateKey, KeyStore, TokenConfig

pytestmark = pytest.mark.hsm


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.operations: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)

    def operated(self, operation: str, seconds: float) -> None:
        with self._lock:
            self.operations.append((operation, seconds))


def test_operations_are_timed_and_an_idle_pool_reports_no_wait(
        keystore: KeyStore, rsa_key: HsmRsaPrivateKey, hmac_labels: tuple[str, str]) -> None:
    recorder = Recorder()
    keystore.observe(recorder)
    try:
        rsa_key.sign(b"observed", PKCS1v15(), hashes.SHA256())
        keystore.hmac_sha256(hmac_labels[0], b"observed")
    finally:
        keystore.observe(None)
    assert [op for op, _ in recorder.operations] == ["sign", "hmac"]
    assert all(seconds > 0 for _, seconds in recorder.operations)
    assert recorder.waits == []
    assert keystore.sessions_in_use == 0 and keystore.pool_size >= 1


def test_a_borrower_that_waits_for_a_session_reports_it(token_config: TokenConfig,
                                                         rsa_key: HsmRsaPrivateKey) -> None:
    recorder = Recorder()
    with KeyStore(dataclasses.replace(token_config, pool_size=1)) as store:
        store.observe(recorder)
        key = store.rsa_key(rsa_key.label)
        borrowed = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with store.session():
                borrowed.set()
                release.wait(5)

        holder = threading.Thread(target=hold)
        holder.start()
        borrowed.wait(5)
        assert store.sessions_in_use == 1
        threading.Timer(0.2, release.set).start()
        key.sign(b"after a wait", PKCS1v15(), hashes.SHA256())  # waits for the only session
        holder.join(5)
    assert len(recorder.waits) == 1 and recorder.waits[0] >= 0.1
    assert [op for op, _ in recorder.operations] == ["sign"]
