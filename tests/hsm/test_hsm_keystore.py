"""Finding keys by label, opening and sharing the token, and the errors on the way."""

from __future__ import annotations

import subprocess
import sys
import threading
from contextlib import ExitStack
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from hsm import (
    HsmError,
    HsmRsaPrivateKey,
    HsmUnavailable,
    KeyExists,
    KeyNotFound,
    KeyStore,
    TokenConfig,
    TokenNotFound,
)

pytestmark = pytest.mark.hsm


def test_keys_are_found_by_label(keystore: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    assert keystore.has_key(rsa_key.label)
    assert keystore.rsa_key(rsa_key.label) is rsa_key  # one handle object per label
    assert rsa_key.label in keystore.key_labels()
    assert rsa_key.key_size == 2048


def test_another_key_store_finds_the_key(
    token_config: TokenConfig, rsa_key: HsmRsaPrivateKey
) -> None:
    with KeyStore(token_config) as other:
        again = other.rsa_key(rsa_key.label)
        assert again is not rsa_key
        assert again.public_key() == rsa_key.public_key()
        signature = again.sign(b"other store", PKCS1v15(), hashes.SHA256())
    rsa_key.public_key().verify(signature, b"other store", PKCS1v15(), hashes.SHA256())


def test_closing_a_second_store_keeps_the_first_logged_in(
    token_config: TokenConfig, keystore: KeyStore, rsa_key: HsmRsaPrivateKey
) -> None:
    KeyStore(token_config).close()
    signature = keystore.sign_pkcs1v15(rsa_key.label, b"still logged in")
    rsa_key.public_key().verify(signature, b"still logged in", PKCS1v15(), hashes.SHA256())


def test_missing_keys(keystore: KeyStore) -> None:
    assert not keystore.has_key("no-such-key")
    with pytest.raises(KeyNotFound):
        keystore.rsa_key("no-such-key")
    with pytest.raises(KeyNotFound):
        keystore.sign_pkcs1v15("no-such-key", b"data")
    with pytest.raises(KeyNotFound):
        keystore.hmac_sha256("no-such-key", b"data")
    with pytest.raises(KeyNotFound):
        keystore.key_protection("no-such-key")


def test_labels_are_not_reused(
    keystore: KeyStore, rsa_key: HsmRsaPrivateKey, hmac_labels: tuple[str, str]
) -> None:
    with pytest.raises(KeyExists):
        keystore.generate_rsa_key(rsa_key.label)
    with pytest.raises(KeyExists):
        keystore.generate_hmac_key(rsa_key.label)
    with pytest.raises(KeyExists):
        keystore.generate_hmac_key(hmac_labels[0])
    with pytest.raises(KeyExists):
        keystore.generate_rsa_key(hmac_labels[0])


def test_hmac_key_is_not_an_rsa_key(keystore: KeyStore, hmac_labels: tuple[str, str]) -> None:
    with pytest.raises(KeyNotFound):
        keystore.rsa_key(hmac_labels[0])


def test_small_rsa_keys_are_refused(keystore: KeyStore) -> None:
    with pytest.raises(ValueError):
        keystore.generate_rsa_key("too-small", bits=1024)
    assert not keystore.has_key("too-small")


def test_unknown_token(softhsm_module: str, keystore: KeyStore) -> None:
    config = TokenConfig(softhsm_module, "no-such-token", "user-secret-5521")
    with pytest.raises(TokenNotFound):
        KeyStore(config)


def test_missing_module() -> None:
    with pytest.raises(HsmUnavailable):
        KeyStore(TokenConfig("/nonexistent/libpkcs11.so", "jpki-test", "1234"))


def test_wrong_pin_while_logged_in(token_config: TokenConfig, keystore: KeyStore) -> None:
    # The token is logged in already, where C_Login would not even look at the PIN:
    # the key store compares it with the PIN that logged in.
    wrong = TokenConfig(token_config.module_path, token_config.token_label, "wrong-pin-4711")
    with pytest.raises(HsmUnavailable) as caught:
        KeyStore(wrong)
    assert "wrong-pin-4711" not in str(caught.value)
    assert "user-secret-5521" not in str(caught.value)
    assert "wrong-pin-4711" not in repr(wrong)


def test_wrong_pin_rejected_by_the_token(
    token_config: TokenConfig, keystore: KeyStore, subprocess_env: dict[str, str]
) -> None:
    # A fresh process, where nobody is logged in, so SoftHSM itself checks the PIN.
    script = (
        "import sys, traceback\n"
        "from hsm import KeyStore, TokenConfig, HsmUnavailable\n"
        f"config = TokenConfig({token_config.module_path!r}, {token_config.token_label!r},"
        " 'wrong-pin-4711')\n"
        "try:\n"
        "    KeyStore(config)\n"
        "except HsmUnavailable:\n"
        "    traceback.print_exc(file=sys.stdout)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=subprocess_env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "rejected the user PIN" in proc.stdout
    assert "wrong-pin-4711" not in proc.stdout.replace(script, "")
    assert "wrong-pin-4711" not in proc.stderr


def test_dead_sessions_are_reopened(keystore: KeyStore, rsa_key: HsmRsaPrivateKey) -> None:
    # Close every pooled session behind the pool's back: their handles become invalid.
    with ExitStack() as stack:
        pool_size = keystore.config.pool_size
        sessions = [stack.enter_context(keystore.session()) for _ in range(pool_size)]
        for session in sessions:
            session.close()

    errors: list[BaseException] = []

    def sign_some() -> None:
        try:
            for i in range(10):
                message = f"after the crash {i}".encode()
                signature = keystore.sign_pkcs1v15(rsa_key.label, message)
                rsa_key.public_key().verify(signature, message, PKCS1v15(), hashes.SHA256())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sign_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_dead_session_is_replaced(token_config: TokenConfig, rsa_key: HsmRsaPrivateKey) -> None:
    with KeyStore(replace(token_config, pool_size=1)) as store:
        with store.session() as session:
            dead = session
            session.close()
        signature = store.sign_pkcs1v15(rsa_key.label, b"reopened")
        rsa_key.public_key().verify(signature, b"reopened", PKCS1v15(), hashes.SHA256())
        with store.session() as session:
            assert session is not dead


def test_closed_store_refuses_work(token_config: TokenConfig, rsa_key: HsmRsaPrivateKey) -> None:
    store = KeyStore(token_config)
    store.close()
    store.close()  # idempotent
    with pytest.raises(HsmError, match="closed"):
        store.sign_pkcs1v15(rsa_key.label, b"too late")


def test_repr_shows_no_pin(keystore: KeyStore, token_config: TokenConfig) -> None:
    assert "user-secret-5521" not in repr(keystore)
    assert "user-secret-5521" not in repr(token_config)
