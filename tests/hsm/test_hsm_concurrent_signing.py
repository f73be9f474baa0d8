"""Threads sign at the same time through the session pool, and every signature verifies."""

from __future__ import annotations

import threading

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from hsm import HsmRsaPrivateKey, KeyStore
from hsm.bench import raw_sign_rate

pytestmark = pytest.mark.hsm

THREADS = 4
SIGNATURES_PER_THREAD = 200


def test_threads_sign_concurrently(keystore: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    results: list[list[tuple[bytes, bytes]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        try:
            start.wait()
            for i in range(SIGNATURES_PER_THREAD):
                message = f"thread {index} signature {i}".encode()
                if i % 2:
                    signature = keystore.sign_pkcs1v15(rsa_key.label, message)
                else:
                    signature = rsa_key.sign(message, PKCS1v15(), hashes.SHA256())
                results[index].append((message, signature))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    public_key = rsa_key.public_key()
    bad = 0
    for signed in results:
        assert len(signed) == SIGNATURES_PER_THREAD
        for message, signature in signed:
            try:
                public_key.verify(signature, message, PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                bad += 1
    assert bad == 0


@pytest.mark.parametrize("threads", [1, 2])
def test_raw_sign_rate(keystore: KeyStore, rsa_key: HsmRsaPrivateKey, threads: int) -> None:
    rate = raw_sign_rate(keystore, rsa_key.label, seconds=0.3, threads=threads)
    assert rate > 50
