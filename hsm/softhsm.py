"""A private SoftHSM2 configuration and token per data directory.

SoftHSM2 is a library, not a daemon: whichever process loads it reads the file named
by ``SOFTHSM2_CONF`` and keeps its tokens in the directory that file names. Giving
every data directory its own config keeps jpki's tokens away from the system-wide
``/var/lib/softhsm/tokens`` and from other test runs.

One process, one SoftHSM config at a time: SoftHSM reads ``SOFTHSM2_CONF`` only in
``C_Initialize``, and python-pkcs11 keeps one initialised library per path for the
whole process. :class:`hsm.keystore.KeyStore` re-initialises the library to pick up
a changed ``SOFTHSM2_CONF`` (or a token created after the library was loaded) only
while no key store is open, because ``C_Finalize`` ends every session in the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hsm.errors import HsmError, HsmUnavailable

MODULE_ENV = "JPKI_HSM_MODULE"
"""Environment variable that overrides :func:`default_module_path`."""

CONF_ENV = "SOFTHSM2_CONF"
CONF_NAME = "softhsm2.conf"
OBJECT_STORE_DIR = "tokens"
UTIL = "softhsm2-util"

# Debian/Ubuntu first (the package installs there on every architecture), then the
# multiarch, Fedora/RHEL and source-build locations.
_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)

# PKCS#11 token labels are a fixed 32-byte, blank-padded UTF-8 field.
MAX_LABEL_BYTES = 32


def default_module_path() -> str:
    """The SoftHSM2 PKCS#11 module to load.

    ``$JPKI_HSM_MODULE`` wins when set (even if the file is missing, so that a typo
    fails loudly instead of silently falling back). Otherwise the first existing
    file among the usual install locations; if none exists, the Debian path, so that
    the error raised when loading it names the expected place.
    """
    override = os.environ.get(MODULE_ENV)
    if override:
        return override
    for candidate in _MODULE_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    return _MODULE_CANDIDATES[0]


def config_path(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / CONF_NAME


def write_softhsm_config(data_dir: Path) -> Path:
    """Write ``<data_dir>/softhsm2.conf`` pointing at ``<data_dir>/tokens``; return its path.

    Idempotent: the token directory is created (mode 0700, since it holds the key
    material, encrypted under the PINs) and the file is rewritten only when its content
    would change, atomically, so a process loading SoftHSM concurrently never reads half
    a file.
    """
    data_dir = Path(data_dir).resolve()
    token_dir = data_dir / OBJECT_STORE_DIR
    token_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing directory.
    token_dir.chmod(0o700)

    path = data_dir / CONF_NAME
    content = (
        "# Written by hsm.softhsm: a SoftHSM2 configuration private to this data directory.\n"
        f"directories.tokendir = {token_dir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    with contextlib.suppress(FileNotFoundError):
        if path.read_text(encoding="utf-8") == content:
            return path
    fd, tmp = tempfile.mkstemp(prefix=".softhsm2.conf.", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def activate_softhsm_config(data_dir: Path) -> Path:
    """Write the data directory's SoftHSM config and point ``SOFTHSM2_CONF`` at it.

    Call this before the first :class:`hsm.keystore.KeyStore` of the process is opened:
    SoftHSM reads ``SOFTHSM2_CONF`` only in ``C_Initialize``, which runs when
    python-pkcs11 first loads the library, and the library then stays loaded for the
    life of the process. Activating another data directory later takes effect only once
    every key store of the process is closed (the next one re-initialises the library).
    """
    path = write_softhsm_config(data_dir)
    os.environ[CONF_ENV] = str(path)
    return path


def validate_token_label(label: str) -> None:
    encoded = label.encode("utf-8")
    if not encoded or len(encoded) > MAX_LABEL_BYTES or label != label.strip():
        raise ValueError(
            f"token label must be 1-{MAX_LABEL_BYTES} bytes of UTF-8 without surrounding "
            f"blanks (PKCS#11 pads labels with blanks): {label!r}"
        )


def ensure_token(data_dir: Path, label: str, so_pin: str, user_pin: str) -> bool:
    """Create the token ``label`` in the data directory unless it exists; True if created.

    Runs ``softhsm2-util`` with ``SOFTHSM2_CONF`` set to the data directory's config, so
    it works whatever this process has loaded. The check and the creation hold a lock
    file, so two processes cannot both create a token with the same label.

    The PINs are passed on the ``softhsm2-util`` command line (that is the only
    non-interactive way) but never appear in an exception or a log: a failure reports
    the tool's stderr, which does not echo them.

    A process that already loaded SoftHSM does not see a token created afterwards until
    the library is re-initialised; :class:`hsm.keystore.KeyStore` does that by itself
    when it is safe (no key store open).
    """
    validate_token_label(label)
    conf = write_softhsm_config(data_dir)
    env = {**os.environ, CONF_ENV: str(conf)}
    with _token_dir_lock(conf.parent):
        if label in _existing_token_labels(env):
            return False
        _run_util(
            ["--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", user_pin],
            env,
            action=f"create token {label!r}",
        )
    return True


def existing_token_labels(data_dir: Path) -> list[str]:
    """Labels of the initialised tokens in the data directory (via ``softhsm2-util``)."""
    conf = write_softhsm_config(data_dir)
    return _existing_token_labels({**os.environ, CONF_ENV: str(conf)})


def _existing_token_labels(env: dict[str, str]) -> list[str]:
    out = _run_util(["--show-slots"], env, action="list tokens")
    # The free slot at the end shows an empty label; only initialised tokens count.
    labels = []
    for line in out.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key == "Label" and value.strip():
            labels.append(value.strip())
    return labels


def _run_util(args: list[str], env: dict[str, str], *, action: str) -> str:
    exe = shutil.which(UTIL, path=env.get("PATH"))
    if exe is None:
        raise HsmUnavailable(f"{UTIL} not found on PATH (install the softhsm2 package)")
    # Not check=True: CalledProcessError's message would contain the argv, PINs included.
    proc = subprocess.run(
        [exe, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise HsmError(f"{UTIL} could not {action}: {detail}")
    return proc.stdout


@contextlib.contextmanager
def _token_dir_lock(data_dir: Path, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
    with open(data_dir / ".softhsm2.lock", "a") as f:
        fcntl.flock(f, mode)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def token_readers_lock(data_dir: Path) -> Iterator[None]:
    """Hold while a process opens the data directory's tokens (C_Initialize, finding the token
    by label): shared with other readers, exclusive of :func:`ensure_token`. SoftHSM makes a
    token in two steps — its directory, then the file holding its label — and a process that
    scanned the directory between them saw a token without its label ("no token labelled").
    """
    with _token_dir_lock(data_dir, fcntl.LOCK_SH):
        yield
