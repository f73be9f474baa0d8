"""The private SoftHSM configuration and token creation of a data directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hsm import HsmError, default_module_path, ensure_token, write_softhsm_config
from hsm.softhsm import existing_token_labels

pytestmark = pytest.mark.hsm


def test_config_points_at_a_private_token_directory(tmp_path: Path) -> None:
    path = write_softhsm_config(tmp_path / "data")
    assert path == (tmp_path / "data" / "softhsm2.conf").resolve()
    lines = path.read_text().splitlines()
    token_dir = (tmp_path / "data" / "tokens").resolve()
    assert f"directories.tokendir = {token_dir}" in lines
    assert "objectstore.backend = file" in lines
    assert "log.level = ERROR" in lines
    assert stat.S_IMODE(token_dir.stat().st_mode) == 0o700


def test_config_is_idempotent(tmp_path: Path) -> None:
    first = write_softhsm_config(tmp_path)
    mtime = first.stat().st_mtime_ns
    content = first.read_text()
    (tmp_path / "tokens").chmod(0o755)
    second = write_softhsm_config(tmp_path)
    assert second == first
    assert second.read_text() == content
    assert second.stat().st_mtime_ns == mtime  # not rewritten
    assert stat.S_IMODE((tmp_path / "tokens").stat().st_mode) == 0o700


def test_module_path_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPKI_HSM_MODULE", "/opt/hsm/libvendor.so")
    assert default_module_path() == "/opt/hsm/libvendor.so"
    monkeypatch.delenv("JPKI_HSM_MODULE")
    assert default_module_path().endswith("libsofthsm2.so")


def test_session_token_was_created_once(
    token_created: bool, hsm_data_dir: Path, token_config: object
) -> None:
    assert token_created is True
    assert ensure_token(hsm_data_dir, "jpki-test", "so-secret-8314", "user-secret-5521") is False


def test_ensure_token_is_idempotent(tmp_path: Path) -> None:
    # softhsm2-util runs in its own process, so this does not disturb the
    # SoftHSM loaded in this one.
    assert ensure_token(tmp_path, "second token", "so-pin-0001", "user-pin-0001") is True
    assert ensure_token(tmp_path, "second token", "so-pin-0001", "user-pin-0001") is False
    assert ensure_token(tmp_path, "third", "so-pin-0001", "user-pin-0001") is True
    assert sorted(existing_token_labels(tmp_path)) == ["second token", "third"]


def test_token_errors_never_show_the_pins(tmp_path: Path) -> None:
    # SoftHSM wants 4-255 characters: both PINs are refused.
    with pytest.raises(HsmError) as caught:
        ensure_token(tmp_path, "short-pins", "zq7", "xk9")
    assert "zq7" not in str(caught.value)
    assert "xk9" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


@pytest.mark.parametrize("label", ["", " padded", "x" * 33])
def test_token_labels_must_fit_pkcs11(tmp_path: Path, label: str) -> None:
    with pytest.raises(ValueError):
        ensure_token(tmp_path, label, "so-pin-0001", "user-pin-0001")


def test_opening_a_token_and_making_one_exclude_each_other(tmp_path: Path) -> None:
    """A reader's shared lock (token_readers_lock) keeps ensure_token's exclusive one out, so a
    process never scans a token SoftHSM has made but not yet labelled; readers share."""
    import fcntl

    from hsm.softhsm import token_readers_lock

    lock_file = tmp_path / ".softhsm2.lock"
    with token_readers_lock(tmp_path), open(lock_file, "a") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what ensure_token takes
        with open(lock_file, "a") as reader:
            fcntl.flock(reader, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another reader gets in
    with open(lock_file, "a") as after:
        fcntl.flock(after, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
