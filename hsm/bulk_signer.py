"""Bulk RSA signing in a child process with a token session of its own.

Why a process: with a software token (SoftHSM) the signature is computed by this machine's CPU
inside the calling process. python-pkcs11 releases the interpreter lock around each PKCS#11
call, but one signature is three such calls (C_SignInit, C_Sign asking for the length, C_Sign),
and a thread coming back from each must wait for the lock while the issuing thread builds and
lints the next certificates in Python. Measured on the batch issuance path (docs/performance.md,
"Issuance"), the signing thread spent more time waiting for the lock than signing. A child
process has its own interpreter: the parent sends a chunk's to-be-signed bytes in one message,
the child signs them one after another at the token's full rate, and the parent's Python work
overlaps with it on another core. With a network HSM the token computes elsewhere and the
in-process pool (:class:`hsm.keystore.KeyStore`) is as good; the composition root chooses.

The child is ``python -m hsm.bulk_signer_child``. It reads frames on stdin and answers on stdout; a
frame is a 4-byte big-endian length and a body. The first frame carries the module path, token
label and user PIN (never the command line or the environment, which other local users may
read through /proc); every later frame is a request (key label, messages) answered by the
signatures or an error (its class name and message: :mod:`hsm.errors` messages never hold a
PIN). The child exits when its stdin closes — the parent closed it, or died — so it never
outlives its parent. If the child dies, the request in flight fails with
:class:`~hsm.errors.HsmUnavailable` and the next request starts a new child.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from hsm.errors import HsmError, HsmUnavailable, KeyNotFound, TokenNotFound

# Bounds a corrupt or hostile length field: a batch of 64 certificates is ~100 KB.
MAX_FRAME = 64 * 1024 * 1024

_ERRORS: dict[str, type[HsmError]] = {
    cls.__name__: cls for cls in (HsmError, HsmUnavailable, KeyNotFound, TokenNotFound)
}
_OK, _FAILED = 0, 1


# --- framing (both sides) -------------------------------------------------------------------

def write_frame(stream: IO[bytes], body: bytes) -> None:
    stream.write(struct.pack(">I", len(body)) + body)
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes:
    """One frame's body; EOFError if the stream ends, before or inside the frame."""
    header = _read_exactly(stream, 4)
    (length,) = struct.unpack(">I", header)
    if length > MAX_FRAME:
        raise EOFError(f"a frame of {length} bytes is over the limit")
    return _read_exactly(stream, length)


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("the stream ended inside a frame")
    return data


def pack_strings(*values: bytes) -> bytes:
    """Length-prefixed byte strings (4-byte lengths), concatenated."""
    return b"".join(struct.pack(">I", len(v)) + v for v in values)


def unpack_strings(body: bytes) -> list[bytes]:
    out = []
    at = 0
    while at < len(body):
        if at + 4 > len(body):
            raise ValueError("truncated length")
        (n,) = struct.unpack_from(">I", body, at)
        at += 4
        if at + n > len(body):
            raise ValueError("truncated value")
        out.append(body[at:at + n])
        at += n
    return out


# --- the parent's side ----------------------------------------------------------------------

class BulkSigner:
    """Signs lists of messages with a token key (sha256WithRSAEncryption, PKCS#1 v1.5) in a
    child process, one request at a time. Thread-safe; start is lazy; close when done."""

    def __init__(self, module_path: str, token_label: str, user_pin: str,
                 environment: Mapping[str, str]) -> None:
        self._module_path = module_path
        self._token_label = token_label
        self._pin = user_pin
        # The environment the parent's module was initialised with (SoftHSM reads its
        # configuration file's path from it), minus anything named like a PIN.
        self._environment = {k: v for k, v in environment.items() if "PIN" not in k.upper()}
        package_root = str(Path(__file__).resolve().parent.parent)
        path = self._environment.get("PYTHONPATH")
        # The child imports this very package, whatever the working directory.
        self._environment["PYTHONPATH"] = (package_root if not path
                                          else f"{package_root}{os.pathsep}{path}")
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return f"<BulkSigner token={self._token_label!r} pid={pid}>"

    @property
    def pid(self) -> int | None:
        """The child's process id while one runs (for monitoring and tests)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def sign_sha256_pkcs1v15(self, label: str, messages: Sequence[bytes]) -> list[bytes]:
        """The signatures of ``messages``, in order, by the token's RSA key ``label``."""
        if not messages:
            return []
        with self._lock:
            if self._closed:
                raise HsmError("the bulk signer is closed")
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                write_frame(process.stdin, pack_strings(label.encode("utf-8"), *messages))
                answer = read_frame(process.stdout)
            except (OSError, EOFError) as exc:
                self._stop()
                raise HsmUnavailable(f"the signing process ended ({type(exc).__name__})") \
                    from None
        signatures = _answer(answer)
        if len(signatures) != len(messages):
            raise HsmError(f"the signing process returned {len(signatures)} signatures for "
                           f"{len(messages)} messages")
        return signatures

    def _running(self) -> subprocess.Popen[bytes]:
        process = self._process
        if process is not None and process.poll() is None:
            return process
        self._process = None
        process = subprocess.Popen(
            [sys.executable, "-m", "hsm.bulk_signer_child"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=self._environment, close_fds=True)
        assert process.stdin is not None and process.stdout is not None
        try:
            write_frame(process.stdin, pack_strings(self._module_path.encode(),
                                                    self._token_label.encode("utf-8"),
                                                    self._pin.encode("utf-8")))
            _answer(read_frame(process.stdout))
        except (OSError, EOFError) as exc:
            _end(process)
            raise HsmUnavailable(f"the signing process did not start ({type(exc).__name__})") \
                from None
        except HsmError:
            _end(process)
            raise
        self._process = process
        return process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _end(process)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop()


def _answer(body: bytes) -> list[bytes]:
    if not body:
        raise HsmError("the signing process sent an empty answer")
    if body[0] == _OK:
        return unpack_strings(body[1:])
    name, _, message = body[1:].decode("utf-8", "replace").partition("\n")
    raise _ERRORS.get(name, HsmError)(message)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Close the child's stdin (it exits at EOF); kill it if it does not within a second."""
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the child's side -----------------------------------------------------------------------

def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: the configuration frame, then requests until stdin closes."""
    # Imported here: the parent's side needs neither python-pkcs11 nor the key store.
    from pkcs11.mechanisms import Mechanism

    from hsm.keystore import KeyStore, TokenConfig

    try:
        module_path, token_label, pin = (v.decode("utf-8") for v in
                                         unpack_strings(read_frame(requests)))
    except (EOFError, ValueError):
        return
    try:
        store = KeyStore(TokenConfig(module_path=module_path, token_label=token_label,
                                     user_pin=pin, pool_size=1))
    except HsmError as exc:
        write_frame(answers, _failure(exc))
        return
    del pin
    with store:
        write_frame(answers, bytes([_OK]))
        while True:
            try:
                label, *messages = unpack_strings(read_frame(requests))
            except EOFError:
                return
            except ValueError as exc:
                write_frame(answers, _failure(HsmError(f"malformed request: {exc}")))
                continue
            try:
                signatures = [store.sign_with_mechanism(label.decode("utf-8"), m,
                                                        Mechanism.SHA256_RSA_PKCS)
                              for m in messages]
            except HsmError as exc:
                write_frame(answers, _failure(exc))
                continue
            write_frame(answers, bytes([_OK]) + pack_strings(*signatures))


def _failure(exc: HsmError) -> bytes:
    name = type(exc).__name__ if type(exc).__name__ in _ERRORS else "HsmError"
    return bytes([_FAILED]) + f"{name}\n{exc}".encode()

