"""Stored client secrets (jpki.access.client_secrets): the HMAC form in the HSM, and the bounded
verifier of legacy Argon2id hashes."""

from __future__ import annotations

import threading
import time

import pytest
from argon2 import PasswordHasher

from hsm import KeyStore
from jpki.access.client_secrets import LegacyVerifier, SecretHasher, is_hmac
from jpki.authority.recipe import load_recipe
from jpki.errors import CaNotInitialised, VerifierBusy

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
CLIENT = "jpki_" + "1" * 24


@pytest.mark.hsm
def test_hmac_hashes_are_keyed_bound_to_the_client_and_checked_in_one_form(
        keystore: KeyStore, ca_material: object) -> None:
    hasher = SecretHasher(keystore, load_recipe().client_secret_key_label)
    stored = hasher.hash(CLIENT, "s3cret")
    assert is_hmac(stored) and stored.startswith("hmac-sha256$client-secret-mac$")
    assert len(stored.rsplit("$", 1)[1]) == 64 and "s3cret" not in stored
    assert hasher.hash(CLIENT, "s3cret") == stored  # deterministic: no salt needed at 256 bits
    other = hasher.hash(CLIENT, "other")
    assert hasher.match([other, stored], CLIENT, "s3cret") == stored
    assert hasher.match([other, stored], CLIENT, "s3cre") is None
    # The same secret under another client id is another hash.
    assert hasher.match([stored], "jpki_" + "2" * 24, "s3cret") is None
    # Legacy and foreign forms are not HMAC hashes; they never match here.
    assert hasher.match([CHEAP.hash("s3cret"), "plain$s3cret"], CLIENT, "s3cret") is None


@pytest.mark.hsm
def test_without_the_key_no_new_secret_is_made(keystore: KeyStore, ca_material: object) -> None:
    hasher = SecretHasher(keystore, "no-such-key")
    assert hasher.available() is False
    with pytest.raises(CaNotInitialised):
        hasher.hash(CLIENT, "s3cret")
    hasher.burn(CLIENT, "s3cret")  # nothing to burn against; no error either


def test_the_legacy_verifier_runs_and_queues_a_bounded_number_of_checks() -> None:
    verifier = LegacyVerifier(workers=2, queue=1)
    release = threading.Event()
    running: list[int] = []
    peak = [0]
    lock = threading.Lock()

    def work() -> bool:
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        release.wait(10)
        with lock:
            running.pop()
        return True

    accepted = [verifier.submit(work) for _ in range(3)]
    for _ in range(5):
        with pytest.raises(VerifierBusy) as busy:
            verifier.submit(work)
        assert busy.value.retry_after == 1 and busy.value.code == "auth.busy"
    release.set()
    assert all(f.result(timeout=10) for f in accepted)
    assert peak[0] == 2  # never more running than workers
    # The slots come back once the checks end.
    deadline = time.monotonic() + 5
    while True:
        try:
            assert verifier.submit(lambda: True).result(timeout=5)
            break
        except VerifierBusy:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    verifier.close()


def test_legacy_checks_verify_argon2id_and_refuse_hashes_asking_for_too_much_memory() -> None:
    verifier = LegacyVerifier()
    good = CHEAP.hash("s3cret")
    assert verifier.submit(lambda: verifier.verify(good, "s3cret")).result(10) is True
    assert verifier.submit(lambda: verifier.verify(good, "wrong")).result(10) is False
    assert verifier.verify("$argon2id$garbage", "s3cret") is False
    greedy = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("s3cret").replace(
        "m=8,", "m=4194304,")  # 4 GiB asked for: refused before anything is allocated
    before = verifier.checks
    assert verifier.verify(greedy, "s3cret") is False
    assert verifier.checks == before
    verifier.close()
