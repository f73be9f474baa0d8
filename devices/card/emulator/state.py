"""What a virtual JPKI card remembers across power cycles and restarts: its JSON state file.

Persistent: the transparent EFs' contents, the PIN verifiers (salted SHA-256, never the PIN) and
their retry counters, the RSA private keys (PKCS#8 PEM: they leave the card through no APDU, only
through this file, which stands for the chip's protected memory and is written with mode 0600),
the token label and the issuer's RSA public key (PEM) that EXTERNAL AUTHENTICATE checks; and
the 券面 applications' files and PIN / 照合番号 verifiers and counters (reference §4.6), under
``applications`` (a state file without them loads as a card whose 券面 applications are blank).

Volatile (never here): the selected application and EF, verified PINs, the last challenge and
whether the issuer is authenticated — see :mod:`devices.card.emulator.session`. A real card loses
them at power-off; so does the emulator at a restart.

The file is replaced atomically (temporary file in the same directory, fsync, rename, fsync of
the directory) after every change, so that a killed emulator never leaves half a card and a
retry counter once decremented stays decremented.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devices.card.emulator.token_info import token_info
from devices.card.errors import CardStateError
from devices.card.face_aps import DATA_FILES, FaceAp, credential, data_file
from devices.card.jpki_ap import TOKEN_LABEL_CARD, TOKEN_LABEL_LENGTH, Ef, Key, Pin

FORMAT = "jpki-card-state/1"
SALT_BYTES = 16
MIN_ISSUER_KEY_BITS = 2048

# Transparent EFs and how many bytes each may hold. The certificate EFs are sized for a
# signing certificate with long basic-4 information (real ones are under 2 KB).
EF_CAPACITY: dict[Ef, int] = {
    Ef.SIGN_CERT: 4096,
    Ef.SIGN_CA_CERT: 4096,
    Ef.TOKEN_INFO: 160,
    Ef.AVAILABILITY: 3,
    Ef.AUTH_CERT: 4096,
    Ef.AUTH_CA_CERT: 4096,
}


@dataclass
class PinRecord:
    """A PIN's verifier and retry counter. ``retries`` is what 63Cx reports."""

    salt: bytes
    verifier: bytes
    retries: int

    @classmethod
    def new(cls, pin: Pin, value: bytes) -> PinRecord:
        return cls.with_tries(value, pin.max_tries)

    @classmethod
    def with_tries(cls, value: bytes, tries: int) -> PinRecord:
        salt = secrets.token_bytes(SALT_BYTES)
        return cls(salt, _verifier(salt, value), tries)

    def matches(self, value: bytes) -> bool:
        return hmac.compare_digest(self.verifier, _verifier(self.salt, value))


def _verifier(salt: bytes, value: bytes) -> bytes:
    return hashlib.sha256(salt + value).digest()


@dataclass
class CardState:
    token_label: str
    issuer_public_key_pem: bytes
    files: dict[Ef, bytes] = field(default_factory=dict)
    pins: dict[Pin, PinRecord] = field(default_factory=dict)
    keys: dict[Key, bytes] = field(default_factory=dict)  # PKCS#8 PEM
    # The 券面 applications (reference §4.6), keyed by (application, FID): their transparent
    # files and their PINs / 照合番号. A blank card has them all empty and none set.
    face_files: dict[tuple[FaceAp, int], bytes] = field(default_factory=dict)
    face_pins: dict[tuple[FaceAp, int], PinRecord] = field(default_factory=dict)

    @classmethod
    def blank(cls, issuer_public_key_pem: bytes, token_label: str = TOKEN_LABEL_CARD) -> CardState:
        """A card as it leaves the factory: token info, nothing else (EF 0008 = ``00 00 00``)."""
        issuer_key(issuer_public_key_pem)  # refuse a bad key now, not at the first EXTERNAL AUTH
        files = {ef: b"" for ef in EF_CAPACITY}
        files[Ef.TOKEN_INFO] = token_info(token_label, serial=secrets.token_hex(8).upper())
        files[Ef.AVAILABILITY] = bytes(3)
        return cls(token_label=token_label, issuer_public_key_pem=issuer_public_key_pem,
                   files=files, face_files={(f.ap, f.fid): b"" for f in DATA_FILES})

    def copy(self) -> CardState:
        return copy.deepcopy(self)

    # --- JSON ------------------------------------------------------------------------------

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "token_label": self.token_label,
            "issuer_public_key": self.issuer_public_key_pem.decode("ascii"),
            "files": {f"{int(ef):04X}": data.hex().upper() for ef, data in
                      sorted(self.files.items())},
            "pins": {f"{int(pin):04X}": _pin_json(r) for pin, r in sorted(self.pins.items())},
            "keys": {f"{int(key):04X}": pem.decode("ascii")
                     for key, pem in sorted(self.keys.items())},
            "applications": {ap.aid.hex().upper(): {
                "files": {f"{fid:04X}": data.hex().upper() for (a, fid), data in
                          sorted(self.face_files.items(), key=_face_key) if a is ap},
                "pins": {f"{fid:04X}": _pin_json(r) for (a, fid), r in
                         sorted(self.face_pins.items(), key=_face_key) if a is ap},
            } for ap in FaceAp},
        }
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CardState:
        try:
            document = json.loads(text)
            return cls._from_document(document)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CardStateError(f"the card state is not valid: {type(exc).__name__}") from exc

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> CardState:
        if document.get("format") != FORMAT:
            raise ValueError("unknown state format")
        label = str(document["token_label"])
        if not label.isascii() or len(label) > TOKEN_LABEL_LENGTH:
            raise ValueError("bad token label")
        pem = str(document["issuer_public_key"]).encode("ascii")
        issuer_key(pem)
        files: dict[Ef, bytes] = {}
        for fid, data in document["files"].items():
            ef = Ef(int(fid, 16))
            if ef not in EF_CAPACITY:
                raise ValueError("a key or PIN EF among the transparent files")
            content = bytes.fromhex(data)
            if len(content) > EF_CAPACITY[ef]:
                raise ValueError("an EF holds more than its capacity")
            files[ef] = content
        pins: dict[Pin, PinRecord] = {}
        for fid, record in document["pins"].items():
            pin = Pin(int(fid, 16))
            pins[pin] = _pin_record(record, pin.max_tries)
        keys: dict[Key, bytes] = {}
        for fid, key_pem in document["keys"].items():
            key = Key(int(fid, 16))
            raw = str(key_pem).encode("ascii")
            # The full RSA consistency check costs ~60 ms a key; the emulator runs it when it
            # first uses the key, so loading a card stays fast.
            loaded = serialization.load_pem_private_key(raw, None,
                                                        unsafe_skip_rsa_key_validation=True)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("a card key is not RSA")
            keys[key] = raw
        face_files: dict[tuple[FaceAp, int], bytes] = {}
        face_pins: dict[tuple[FaceAp, int], PinRecord] = {}
        # Absent in a state written before the 券面 applications existed: they are blank then.
        applications = document.get("applications", {})
        for ap in FaceAp:
            section = applications.get(ap.aid.hex().upper(), {"files": {}, "pins": {}})
            for fid_hex, data in section["files"].items():
                target = data_file(ap, int(fid_hex, 16))
                content = bytes.fromhex(data)
                if target is None or len(content) > target.capacity:
                    raise ValueError("an unknown or overfull 券面 application file")
                face_files[(ap, target.fid)] = content
            for fid_hex, record in section["pins"].items():
                reference = credential(ap, int(fid_hex, 16))
                if reference is None:
                    raise ValueError("an unknown 券面 application key reference")
                face_pins[(ap, reference.fid)] = _pin_record(record, reference.max_tries)
        for blank in DATA_FILES:
            face_files.setdefault((blank.ap, blank.fid), b"")
        return cls(token_label=label, issuer_public_key_pem=pem, files=files, pins=pins,
                   keys=keys, face_files=face_files, face_pins=face_pins)

    # --- file ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> CardState:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CardStateError(f"cannot read the card state: {exc.strerror}") from exc
        return cls.from_json(text)

    def save(self, path: Path) -> None:
        """Replace ``path`` atomically with this state (mode 0600); OSError if the disk fails."""
        write_atomically(path, self.to_json().encode("utf-8"))


def _pin_json(record: PinRecord) -> dict[str, Any]:
    return {"salt": base64.b64encode(record.salt).decode("ascii"),
            "verifier": base64.b64encode(record.verifier).decode("ascii"),
            "retries": record.retries}


def _pin_record(record: dict[str, Any], max_tries: int) -> PinRecord:
    retries = int(record["retries"])
    if not 0 <= retries <= max_tries:
        raise ValueError("retry counter out of range")
    return PinRecord(base64.b64decode(record["salt"], validate=True),
                     base64.b64decode(record["verifier"], validate=True), retries)


def _face_key(item: tuple[tuple[FaceAp, int], object]) -> int:
    return item[0][1]


def issuer_key(pem: bytes) -> rsa.RSAPublicKey:
    """The issuer's public key from PEM; RSA of at least 2048 bits, else ValueError."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_ISSUER_KEY_BITS:
        raise ValueError(f"the issuer key must be RSA of at least {MIN_ISSUER_KEY_BITS} bits")
    return key


def write_atomically(path: Path, content: bytes) -> None:
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:  # mkstemp creates it with mode 0600
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
