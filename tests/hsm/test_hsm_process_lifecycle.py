"""One process, one SoftHSM configuration at a time; switching needs every store closed.

Runs in a child process: the test session's own process has SoftHSM loaded with the
session-wide data directory and must keep it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.hsm

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from hsm import (HsmUnavailable, KeyStore, TokenConfig, TokenNotFound,
                     activate_softhsm_config, default_module_path, ensure_token)

    module = default_module_path()
    a, b = Path(sys.argv[1]), Path(sys.argv[2])

    def config(label):
        return TokenConfig(module, label, "user-pin-" + label, pool_size=2)

    def make(data_dir, label):
        ensure_token(data_dir, label, "so-pin-" + label, "user-pin-" + label)

    activate_softhsm_config(a)
    make(a, "A")
    store_a = KeyStore(config("A"))
    store_a.generate_hmac_key("key-a")

    activate_softhsm_config(b)
    make(b, "B")
    try:
        KeyStore(config("B"))
        print("switch while open: opened")
    except HsmUnavailable:
        print("switch while open: refused")
    store_a.close()

    store_b = KeyStore(config("B"))
    print("keys in B:", store_b.key_labels())
    make(b, "B2")
    try:
        KeyStore(config("B2"))
        print("new token while open: found")
    except TokenNotFound:
        print("new token while open: not found")
    store_b.close()

    with KeyStore(config("B2")) as store:
        store.generate_hmac_key("key-b2")
        expected = store.hmac_sha256("key-b2", b"x")
        results = []
        def work():
            results.extend(store.hmac_sha256("key-b2", b"x") for _ in range(300))
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("threads after re-initialisation:", len(results), set(results) == {expected})

    activate_softhsm_config(a)
    with KeyStore(config("A")) as store:
        print("back to A:", store.key_labels())
    """
)


def test_switching_softhsm_configurations(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "a"), str(tmp_path / "b")],
        capture_output=True,
        text=True,
        env=subprocess_env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "switch while open: refused",
        "keys in B: []",
        "new token while open: not found",
        "threads after re-initialisation: 1200 True",
        "back to A: ['key-a']",
    ]
