"""A small pool of PKCS#11 sessions shared by the threads of one key store.

A PKCS#11 session runs one operation at a time, so every operation borrows a
session and gives it back. python-pkcs11 releases the GIL inside the C calls and
the module runs with its own locking on (see :mod:`hsm.os_locking`), so threads that
hold different sessions really sign in parallel.

python-pkcs11 binds every key object to the session it was found on, so the key
objects are cached per pooled session, keyed by label: finding a key costs a
C_FindObjects round and ten attribute reads, a few times the cost of the signature.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from pkcs11.constants import Attribute, ObjectClass
from pkcs11.exceptions import (
    MultipleObjectsReturned,
    NoSuchKey,
    ObjectHandleInvalid,
    PKCS11Error,
    SessionClosed,
    SessionHandleInvalid,
    UserNotLoggedIn,
)
from pkcs11.types import Key, Object, Session

from hsm.errors import HsmError

T = TypeVar("T")

# The handle no longer names a session: it was closed (by C_CloseAllSessions,
# C_Finalize or an error in the module), so a new one has to be opened.
_SESSION_GONE = (SessionHandleInvalid, SessionClosed)


class HsmObserver(Protocol):
    """Who watches the token's use (the API's metrics); must be quick and must not raise."""

    def waited(self, seconds: float) -> None:
        """A borrower found every session in use and waited this long for one."""
        ...

    def operated(self, operation: str, seconds: float) -> None:
        """One cryptographic operation (``sign``, ``hmac``) took this long in the token."""
        ...


class PooledSession:
    """One session of the pool and the key objects found on it.

    Only the thread that borrowed it touches it, so it needs no lock. The session is
    opened lazily, which is how a session that died is replaced: :meth:`discard`
    forgets it and the next use opens a new one.
    """

    def __init__(self, open_session: Callable[[], Session]) -> None:
        self._open_session = open_session
        self._session: Session | None = None
        self._keys: dict[tuple[str, ObjectClass], Key] = {}

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self._open_session()
        return self._session

    def find(self, attrs: dict[Attribute, Any]) -> list[Object]:
        """All objects matching ``attrs``, read to the end (which ends the search)."""
        session = self.session
        # python-pkcs11 marks a search active before C_FindObjectsInit and leaves it so
        # if that fails; its destructor then calls C_FindObjectsFinal on the dead handle
        # and the error surfaces as "Exception ignored in OperationContext.__del__".
        # A one-byte C_GenerateRandom first turns a dead session into a clean
        # SessionHandleInvalid before any search starts.
        session.generate_random(8)
        return list(session.get_objects(attrs))

    def key(self, label: str, object_class: ObjectClass) -> Key:
        """The key ``label`` of ``object_class``.

        Raises python-pkcs11's NoSuchKey or MultipleObjectsReturned, like ``get_key``.
        """
        cache_key = (label, object_class)
        key = self._keys.get(cache_key)
        if key is None:
            found = self.find({Attribute.CLASS: object_class, Attribute.LABEL: label})
            if not found:
                raise NoSuchKey(f"no {object_class.name} labelled {label!r}")
            if len(found) > 1:
                raise MultipleObjectsReturned(f"{len(found)} objects labelled {label!r}")
            if not isinstance(found[0], Key):
                raise HsmError(f"object {label!r} is not a key")
            key = self._keys[cache_key] = found[0]
        return key

    def remember(self, label: str, object_class: ObjectClass, key: Key) -> None:
        self._keys[(label, object_class)] = key

    def forget_keys(self) -> None:
        self._keys.clear()

    def discard(self) -> None:
        """Forget a dead session without closing it.

        Closing an invalid handle cannot help, and after a re-initialisation the same
        number may already name somebody else's session.
        """
        self._session = None
        self._keys.clear()

    def close(self) -> None:
        session, self._session = self._session, None
        self._keys.clear()
        if session is not None:
            # Opened without a PIN, so python-pkcs11 does not call C_Logout here
            # (which would log out every session of the process).
            with contextlib.suppress(PKCS11Error):
                session.close()


class SessionPool:
    """``size`` sessions opened by ``open_session``; :meth:`run` lends one out.

    ``recover(logged_out)`` is called before an operation is retried because its
    session died (``logged_out`` False) or the token reported the user logged out
    (``logged_out`` True); it re-establishes the login.

    ``serialize`` makes every operation hold one lock, for modules that refused to do
    their own locking.
    """

    def __init__(
        self,
        open_session: Callable[[], Session],
        size: int,
        *,
        recover: Callable[[bool], None],
        serialize: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("a session pool needs at least one session")
        self._size = size
        self._recover = recover
        self._call_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if serialize else contextlib.nullcontext()
        )
        self._closed = False
        self._state_lock = threading.Lock()
        # LIFO: under light load the same few sessions, whose key caches are warm, serve.
        self._idle: queue.LifoQueue[PooledSession | None] = queue.LifoQueue()
        opened: list[PooledSession] = []
        try:
            for _ in range(size):
                pooled = PooledSession(open_session)
                pooled.session  # noqa: B018 - open now, so that errors surface here
                opened.append(pooled)
        except BaseException:
            for pooled in opened:
                pooled.close()
            raise
        for pooled in opened:
            self._idle.put(pooled)
        self.observer: HsmObserver | None = None

    @property
    def size(self) -> int:
        return self._size

    @property
    def in_use(self) -> int:
        """Sessions lent out now (a snapshot, for monitoring)."""
        return max(0, self._size - self._idle.qsize())

    @contextlib.contextmanager
    def borrow(self) -> Iterator[PooledSession]:
        """Lend a session to the caller for the duration of the ``with`` block."""
        if self._closed:
            raise HsmError("the key store is closed")
        try:
            pooled = self._idle.get_nowait()
        except queue.Empty:
            # Only a borrower that has to wait is timed: the common case stays two calls.
            started = time.perf_counter()
            pooled = self._idle.get()
            observer = self.observer
            if observer is not None:
                with contextlib.suppress(Exception):
                    observer.waited(time.perf_counter() - started)
        if pooled is None or self._closed:
            # close() has taken (or is taking) the sessions: pass the refusal on.
            self._idle.put(pooled)
            raise HsmError("the key store is closed")
        try:
            yield pooled
        finally:
            self._idle.put(pooled)

    def run(self, operation: Callable[[PooledSession], T]) -> T:
        """Run ``operation`` on a borrowed session; retry once if the session died.

        Operations must be safe to repeat: a signature is, and key creation checks
        first whether the label is taken.
        """
        with self.borrow() as pooled, self._call_lock:
            try:
                return operation(pooled)
            except _SESSION_GONE:
                pooled.discard()
                self._recover(False)
            except UserNotLoggedIn:
                self._recover(True)
            except ObjectHandleInvalid:
                # The cached key object was destroyed (or re-created under a new handle).
                pooled.forget_keys()
            return operation(pooled)

    def close(self) -> None:
        """Close every session; waits for operations in progress to give theirs back."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        for _ in range(self._size):
            pooled = self._idle.get()
            if pooled is not None:
                pooled.close()
        # Wake anybody blocked in borrow(): each takes a None, puts it back and fails.
        self._idle.put(None)
