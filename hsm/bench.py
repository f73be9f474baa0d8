"""Raw signing throughput of a key store, for bench/issuance.py."""

from __future__ import annotations

import os
import threading
import time

from hsm.keystore import KeyStore


def raw_sign_rate(store: KeyStore, label: str, seconds: float = 2.0, threads: int = 1) -> float:
    """PKCS#1 v1.5 SHA-256 signatures per second over 32-byte messages.

    ``threads`` threads sign for ``seconds`` each with :meth:`KeyStore.sign_pkcs1v15`;
    more threads than the store's pool size just queue for sessions. One warm-up
    signature first, so that loading the key is not timed.
    """
    if threads < 1 or seconds <= 0:
        raise ValueError("need at least one thread and a positive duration")
    message = os.urandom(32)
    store.sign_pkcs1v15(label, message)

    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def worker(index: int) -> None:
        start.wait()
        n = 0
        while time.perf_counter() < deadline:
            store.sign_pkcs1v15(label, message)
            n += 1
        counts[index] = n

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - began)
