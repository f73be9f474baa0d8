"""Bulk signing in a child process (hsm.bulk_signer): the same signatures as the pool's, the
token's errors passed on by name, a child that dies or never starts reported as the token being
unavailable, and no PIN where other local users could read it."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from hsm import HsmRsaPrivateKey, HsmUnavailable, KeyNotFound, KeyStore, TokenConfig
from hsm.bulk_signer import MAX_FRAME, pack_strings, read_frame, unpack_strings, write_frame

pytestmark = pytest.mark.hsm

MESSAGES = [b"tbs %d" % i * (i + 1) for i in range(5)]


@pytest.fixture
def bulk(token_config: TokenConfig) -> KeyStore:
    store = KeyStore(replace(token_config, bulk_process=True))
    yield store
    store.close()


def test_signatures_are_the_pools_and_verify(bulk: KeyStore, keystore: KeyStore,
                                             rsa_key: HsmRsaPrivateKey) -> None:
    signatures = bulk.sign_many(rsa_key.label, MESSAGES)
    assert bulk.bulk_signer_pid is not None and bulk.bulk_signer_pid != os.getpid()
    # PKCS#1 v1.5 is deterministic: the child's token session signs exactly as the pool does.
    assert signatures == keystore.sign_many(rsa_key.label, MESSAGES)
    for message, signature in zip(MESSAGES, signatures, strict=True):
        rsa_key.public_key().verify(signature, message, PKCS1v15(), hashes.SHA256())
    assert keystore.bulk_signer_pid is None  # the pool's key store has no child
    assert bulk.sign_many(rsa_key.label, []) == []


def test_an_unknown_label_is_the_tokens_error(bulk: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    with pytest.raises(KeyNotFound, match="no-such-key"):
        bulk.sign_many("no-such-key", MESSAGES)
    # The child answered the error and goes on serving.
    pid = bulk.bulk_signer_pid
    assert bulk.sign_many(rsa_key.label, MESSAGES[:1])
    assert bulk.bulk_signer_pid == pid


def test_a_child_killed_during_a_request_fails_it_and_the_next_starts_another(
        bulk: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    bulk.sign_many(rsa_key.label, MESSAGES[:1])
    pid = bulk.bulk_signer_pid
    assert pid is not None
    outcome: list[object] = []

    def sign_a_lot() -> None:
        try:
            outcome.append(bulk.sign_many(rsa_key.label, [b"m"] * 2000))  # seconds of work
        except HsmUnavailable as exc:
            outcome.append(exc)

    worker = threading.Thread(target=sign_a_lot)
    worker.start()
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], HsmUnavailable)
    assert "signing process ended" in str(outcome[0])
    again = bulk.sign_many(rsa_key.label, MESSAGES)
    assert len(again) == len(MESSAGES) and bulk.bulk_signer_pid not in (None, pid)


def test_a_child_that_died_between_requests_is_replaced(
        bulk: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    bulk.sign_many(rsa_key.label, MESSAGES[:1])
    pid = bulk.bulk_signer_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert len(bulk.sign_many(rsa_key.label, MESSAGES)) == len(MESSAGES)
    assert bulk.bulk_signer_pid not in (None, pid)


def test_a_wrong_pin_is_refused_at_start(token_config: TokenConfig,
                                         rsa_key: HsmRsaPrivateKey) -> None:
    # The parent's own login is shared by every key store of the process (hsm.login), so the
    # wrong PIN reaches only the child: its login fails and the request says so.
    from hsm.bulk_signer import BulkSigner

    signer = BulkSigner(token_config.module_path, token_config.token_label, "0000",
                        dict(os.environ))
    try:
        with pytest.raises(HsmUnavailable):
            signer.sign_sha256_pkcs1v15(rsa_key.label, MESSAGES[:1])
        assert signer.pid is None
    finally:
        signer.close()


def test_the_pin_is_not_on_the_childs_command_line_or_environment(
        token_config: TokenConfig, bulk: KeyStore, rsa_key: HsmRsaPrivateKey,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bulk.sign_many(rsa_key.label, MESSAGES[:1])
    pid = bulk.bulk_signer_pid
    proc = Path(f"/proc/{pid}")
    pin = token_config.user_pin.encode()
    assert pin not in (proc / "cmdline").read_bytes()
    assert pin not in (proc / "environ").read_bytes()


def test_a_pin_in_the_parents_environment_is_not_passed_on(
        token_config: TokenConfig, rsa_key: HsmRsaPrivateKey,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPKI_HSM_USER_PIN", token_config.user_pin)
    with KeyStore(replace(token_config, bulk_process=True)) as store:
        store.sign_many(rsa_key.label, MESSAGES[:1])
        environ = Path(f"/proc/{store.bulk_signer_pid}/environ").read_bytes()
    assert b"JPKI_HSM_USER_PIN" not in environ


def test_close_ends_the_child(token_config: TokenConfig, rsa_key: HsmRsaPrivateKey) -> None:
    store = KeyStore(replace(token_config, bulk_process=True))
    store.sign_many(rsa_key.label, MESSAGES[:1])
    pid = store.bulk_signer_pid
    assert pid is not None
    store.close()
    _wait_gone(pid)


def test_frames_round_trip_and_refuse_what_is_cut_or_oversized() -> None:
    stream = io.BytesIO()
    write_frame(stream, pack_strings(b"label", b"", b"x" * 300))
    stream.seek(0)
    assert unpack_strings(read_frame(stream)) == [b"label", b"", b"x" * 300]
    with pytest.raises(EOFError):
        read_frame(io.BytesIO(b"\x00\x00\x00\x05abc"))
    with pytest.raises(EOFError, match="over the limit"):
        read_frame(io.BytesIO((MAX_FRAME + 1).to_bytes(4, "big")))
    with pytest.raises(ValueError, match="truncated"):
        unpack_strings(b"\x00\x00\x00\x09abc")


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A killed child is a zombie until its parent (this process) waits for it.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] \
            if Path(f"/proc/{pid}/stat").exists() else "X"
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still running")
