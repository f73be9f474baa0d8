"""How API client secrets are stored and checked.

Every client secret is made by this service: 256 bits from the CSPRNG (jpki.access.clients). A
secret of
that entropy cannot be guessed offline whatever the hash, so the slow, memory-hard password hash
(Argon2id, 64 MiB and three passes per check) protected nothing a keyed fast hash does not — and
made each check cost ~0.1-0.3 s of several cores and 64 MiB, which wrong secrets could ask for
at line rate (a denial of service). Stored secrets are therefore:

``hmac-sha256$<key label>$<64 hex digits>``
    HMAC-SHA-256 computed in the HSM, under a key the key ceremony makes for this alone (recipe
    ``[clients] key_label``; never the audit chain's key), over ``jpki-client-secret/1``, NUL,
    the client id, NUL, the secret. Checking is one HMAC and a constant-time comparison. The
    key never leaves the token, so a copy of the database does not even allow to test a guess;
    the client id in the input ties a hash to its row.

``$argon2id$…`` (legacy)
    What earlier revisions stored. Still accepted, so that deployed clients keep working, but
    checked only by :class:`LegacyVerifier`: a pool of its own (one thread by default) with a
    bounded number of checks waiting, and a cap on the memory a stored hash may ask for. A
    successful check replaces the hash by the HMAC form (jpki.access.clients), so each client pays
    Argon2 once.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from jpki.errors import CaNotInitialised, KeyStoreUnavailable, VerifierBusy
from jpki.ports import KeyStore

T = TypeVar("T")

HMAC_SCHEME = "hmac-sha256"
LEGACY_PREFIX = "$argon2id$"
_CONTEXT = b"jpki-client-secret/1\x00"
_DUMMY = "0" * 64
# A legacy hash asks for its own memory cost; one that asks for more than this (a row written
# by hand, or tampered with) is refused unchecked instead of allocating it.
MAX_LEGACY_MEMORY_KIB = 256 * 1024
_KEY_RECHECK_SECONDS = 5.0


def is_hmac(stored: str) -> bool:
    return stored.startswith(HMAC_SCHEME + "$")


def is_legacy(stored: str) -> bool:
    return stored.startswith(LEGACY_PREFIX)


class SecretHasher:
    """HMAC-SHA-256 hashes of client secrets under the token's client-secret key."""

    def __init__(self, keys: KeyStore, label: str) -> None:
        self._keys = keys
        self.label = label
        self._present = False
        self._checked_at = -_KEY_RECHECK_SECONDS

    def available(self) -> bool:
        """Whether the token has the key (a data directory from before it, until `jpki init`
        is run again, has not). Remembered once true; rechecked every few seconds until then."""
        if not self._present and time.monotonic() - self._checked_at >= _KEY_RECHECK_SECONDS:
            self._checked_at = time.monotonic()
            try:
                self._present = self._keys.has_key(self.label)
            except Exception as exc:  # an HSM error: the key is not usable either
                raise KeyStoreUnavailable("the key store cannot be reached") from exc
        return self._present

    def hash(self, client_id: str, secret: str) -> str:
        if not self.available():
            raise CaNotInitialised(f"the token has no client-secret key {self.label!r}: run "
                                   "`jpki init` on this data directory to add it")
        return f"{HMAC_SCHEME}${self.label}${self._digest(self.label, client_id, secret).hex()}"

    def match(self, stored: Sequence[str], client_id: str, secret: str,
              digests: dict[str, str] | None = None) -> str | None:
        """The hash in ``stored`` (HMAC form) that ``secret`` matches, or None. One HMAC per
        key label among them (one: rotation keeps the label), and every hash compared, in
        constant time. ``digests`` (label → hex digest of this client id and secret) carries
        the HMACs made from one call to the next, so that a second set of hashes for the same
        check (the row read again) costs no second HMAC."""
        digests = {} if digests is None else digests
        matched = None
        for entry in stored:
            scheme, _, rest = entry.partition("$")
            label, _, hex_digest = rest.partition("$")
            if scheme != HMAC_SCHEME or not label:
                continue
            if label not in digests:
                digests[label] = self._digest(label, client_id, secret).hex()
            if hmac.compare_digest(digests[label], hex_digest) and matched is None:
                matched = entry
        return matched

    def burn(self, client_id: str, secret: str) -> None:
        """The work of a check, for a client id that does not exist: one HMAC and a comparison
        (never an Argon2 run, which is what made unknown ids a lever)."""
        if self.available():
            hmac.compare_digest(self._digest(self.label, client_id, secret).hex(), _DUMMY)

    def _digest(self, label: str, client_id: str, secret: str) -> bytes:
        data = _CONTEXT + client_id.encode("utf-8") + b"\x00" + secret.encode("utf-8")
        try:
            return self._keys.hmac_sha256(label, data)
        except Exception as exc:  # the HSM's errors are not the core's: report the category
            raise KeyStoreUnavailable("the client secret could not be checked") from exc


def _lower_priority() -> None:
    """Run this worker (and the threads Argon2 starts from it, which inherit it) at nice +10:
    Linux schedules threads individually, so the CPU goes first to the event loop and the other
    pools, and the legacy checks take what is left."""
    # Not Linux, or not allowed: run at normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class LegacyVerifier:
    """Argon2id checks of legacy hashes, with bounded concurrency, queue and memory.

    At most ``workers`` checks run at once (each takes the hash's memory cost, 64 MiB by
    argon2-cffi's defaults, and its parallelism in threads), on threads of their own — never the
    thread pool that serves requests — and at most ``queue`` more wait; beyond that
    :meth:`submit` raises :class:`VerifierBusy` at once."""

    def __init__(self, workers: int = 1, queue: int = 4) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("a legacy verifier needs at least one worker")
        self.workers = workers
        self.capacity = workers + queue
        self._hasher = PasswordHasher()
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._pool: ThreadPoolExecutor | None = None  # made on first use: the CLI never needs it
        self._lock = threading.Lock()
        self.checks = 0  # Argon2 runs so far (tests and diagnostics)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Run ``work`` (which calls :meth:`verify`) on the verifier's pool, or raise
        :class:`VerifierBusy` when as many checks are running and waiting as allowed."""
        if not self._slots.acquire(blocking=False):
            raise VerifierBusy("too many credential checks are in progress; retry shortly",
                               retry_after=1)
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.workers, "legacy-secret",
                                                    initializer=_lower_priority)
                future = self._pool.submit(work)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def verify(self, stored: str, secret: str) -> bool:
        """One Argon2id check; call it only from work given to :meth:`submit`."""
        try:
            params = extract_parameters(stored)
        except InvalidHashError:
            return False
        if params.memory_cost > MAX_LEGACY_MEMORY_KIB:
            return False
        with self._lock:
            self.checks += 1
        try:
            return self._hasher.verify(stored, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
