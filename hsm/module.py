"""The loaded PKCS#11 modules of this process and the logins to their tokens.

python-pkcs11 loads a module once per process (``pkcs11.lib`` caches it by path) and
a PKCS#11 login is per process and token, so this state is process-wide too: one
:class:`Pkcs11Module` per module file, shared by every :class:`hsm.keystore.KeyStore`.

It re-initialises the module (``C_Finalize`` + ``C_Initialize``) in three cases, and
only while no key store is open on it, since that ends every session of the process:

* right after loading, to turn on the module's own locking (see :mod:`hsm.os_locking`);
* when ``SOFTHSM2_CONF`` changed since the last ``C_Initialize`` (SoftHSM reads it there);
* when a token label is not found: SoftHSM lists only the tokens that existed at
  ``C_Initialize``, so a token made by ``softhsm2-util`` afterwards needs a rescan.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pkcs11
from pkcs11.exceptions import PKCS11Error
from pkcs11.types import Token

from hsm import os_locking
from hsm.errors import HsmError, HsmUnavailable, TokenNotFound
from hsm.login import TokenLogin
from hsm.softhsm import CONF_ENV


class Pkcs11Module:
    """One PKCS#11 module file loaded in this process. Use :func:`load_module`."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Guards the login table and every re-initialisation of the module.
        self.lock = threading.Lock()
        self._logins: dict[tuple[int, bytes], TokenLogin] = {}
        self.thread_safe = False
        self._initialized = False
        self._conf: str | None = None
        try:
            self.lib = pkcs11.lib(path)
        except PKCS11Error as exc:
            raise HsmUnavailable(
                f"cannot load PKCS#11 module {path}: {type(exc).__name__} {exc}".rstrip()
                + self._conf_hint()
            ) from None
        self._initialize()

    def _conf_hint(self) -> str:
        conf = os.environ.get(CONF_ENV)
        return f" ({CONF_ENV}={conf})" if conf else f" ({CONF_ENV} is not set)"

    def _initialize(self) -> None:
        try:
            self.thread_safe = os_locking.initialize_with_os_locking(self.path)
        except os_locking.Pkcs11InitError as exc:
            self._initialized = False
            raise HsmUnavailable(
                f"cannot initialise PKCS#11 module {self.path}: {exc}{self._conf_hint()}"
            ) from None
        self._initialized = True
        self._conf = os.environ.get(CONF_ENV)

    def _reinitialize_if_stale(self) -> None:
        conf_changed = os.environ.get(CONF_ENV) != self._conf
        if self._initialized and not conf_changed:
            return
        if self._logins:
            raise HsmUnavailable(
                f"{CONF_ENV} changed from {self._conf} to {os.environ.get(CONF_ENV)} while key "
                f"stores are open on {self.path}; SoftHSM reads it only at C_Initialize, which "
                "would end their sessions: close them first"
            )
        self._initialize()

    def _find_token(self, label: str) -> Token:
        # Caller holds self.lock.
        self._reinitialize_if_stale()
        token = self._lookup(label)
        if token is None and not self._logins:
            self._initialize()
            token = self._lookup(label)
        if token is None:
            hint = (
                "; tokens created after this process initialised the module are seen "
                "only once every key store on it is closed"
                if self._logins
                else ""
            )
            raise TokenNotFound(f"no token labelled {label!r} in {self.path}{hint}")
        return token

    def _lookup(self, label: str) -> Token | None:
        try:
            tokens = list(self.lib.get_tokens(token_label=label))
        except PKCS11Error as exc:
            raise HsmUnavailable(f"cannot list the slots of {self.path}: {exc!r}") from None
        if len(tokens) > 1:
            raise HsmError(f"{len(tokens)} tokens are labelled {label!r}; labels must be unique")
        return tokens[0] if tokens else None

    def login(self, label: str, user_pin: str) -> tuple[Token, TokenLogin]:
        """Find the token labelled ``label`` and log in, or join the login held already.

        One locked step, so that no other thread re-initialises the module between
        finding the token and logging in. Rescans the slots once if the label is not
        listed and nothing is logged in.
        """
        with self.lock:
            token = self._find_token(label)
            key = (token.slot.slot_id, token.serial)
            login = self._logins.get(key)
            if login is None:
                login = TokenLogin(token, user_pin)
                self._logins[key] = login
            elif not login.pin_matches(user_pin):
                raise HsmUnavailable(f"token {label!r} rejected the user PIN")
            login.refs += 1
            return token, login

    @contextlib.contextmanager
    def exclusive(self, label: str) -> Iterator[Token]:
        """The token labelled ``label``, for code that logs in by itself (the replication
        export logs in as SO, then as user: :mod:`hsm.replication`).

        Holds the module lock throughout, so no key store of this process logs in meanwhile,
        and refuses while one is open on the token: its login would turn the SO's C_Login into
        CKR_USER_ANOTHER_ALREADY_LOGGED_IN and a C_Logout here would end its sessions' login.
        """
        with self.lock:
            token = self._find_token(label)
            if (token.slot.slot_id, token.serial) in self._logins:
                raise HsmUnavailable(
                    f"a key store of this process is open on token {label!r}; the security "
                    "officer's login needs it closed"
                )
            yield token

    def ensure_login(self, login: TokenLogin, user_pin: str, *, logged_out: bool) -> None:
        with self.lock:
            login.ensure(user_pin, logged_out=logged_out)

    def release(self, login: TokenLogin) -> None:
        """Drop one key store's share of the login; the last one logs out."""
        with self.lock:
            login.refs -= 1
            if login.refs <= 0:
                self._logins = {k: v for k, v in self._logins.items() if v is not login}
                login.close()


_MODULES: dict[str, Pkcs11Module] = {}
_MODULES_LOCK = threading.Lock()


def load_module(path: str) -> Pkcs11Module:
    """The process's :class:`Pkcs11Module` for the module file at ``path``."""
    # One entry per file, whatever the spelling: loading it twice under two names
    # would give two python-pkcs11 objects calling C_Initialize on one library.
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        raise HsmUnavailable(f"PKCS#11 module {path} not found")
    with _MODULES_LOCK:
        module = _MODULES.get(real)
        if module is None:
            module = Pkcs11Module(real)
            _MODULES[real] = module
        return module
