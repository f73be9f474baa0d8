"""The form every signed document shares: one JSON object with a ``type``, read strictly and
written canonically.

A holder's phone or card signs a document (a CMS SignedData over its bytes, jpki.protocol.cms);
the CA verifies the signature and then reads the document. Both sides use the classes of
jpki.protocol.mobile and jpki.protocol.consent, so the fields, their limits and their meaning are
written once (architecture §2.2):

- ``to_json()`` is what gets signed: the ``type`` first, then the members in the order the class
  declares them, no whitespace, everything outside ASCII escaped — one byte string per document;
- ``parse(data)`` takes those bytes (or the decoded object) and refuses, with the document
  family's error and the ``field`` that failed, anything that is not exactly such a document:
  bytes that are not UTF-8 JSON, another ``type``, a member missing, of the wrong JSON type, out
  of its range, or not declared (architecture §9.3). It accepts any member order and whitespace,
  as the CA always has.

A constructed document is always valid: each class checks its rules in ``__post_init__``, so a
device cannot build, and sign, what the CA would refuse.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, NoReturn, Self, TypeVar

from jpki.errors import InvalidInput

# Larger than the canonical form of any valid document: the longest is a holder's request naming
# a device of 8192 characters (MAX_TEXT), each escaped as a surrogate pair (12 bytes), next to a
# lift's two base64 members. A signed document is bounded before this by the CMS
# (jpki.protocol.cms.MAX_SIGNED_DATA); this bound is for bytes read from anywhere.
MAX_DOCUMENT = 128 * 1024
MAX_TEXT = 8192  # characters of any one string member, base64 included

E = TypeVar("E", bound=StrEnum)


class Document:
    """A signed document: its wire ``TYPE`` and the error its family refuses with."""

    TYPE: ClassVar[str]
    error: ClassVar[type[InvalidInput]]

    @classmethod
    def parse(cls, data: bytes | Mapping[str, Any]) -> Self:
        """The document in ``data`` (its bytes, or the JSON object they decode to)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, ``type`` first (what :meth:`to_json` encodes)."""
        raise NotImplementedError

    def to_json(self) -> bytes:
        """The canonical bytes: what the holder signs."""
        return canonical_json(self.to_dict())

    @classmethod
    def refuse(cls, detail: str, field: str | None = None) -> NoReturn:
        raise cls.error(detail, field=field)

    @classmethod
    def members(cls, data: bytes | Mapping[str, Any], names: tuple[str, ...]) -> Members:
        """The JSON object of a ``cls.TYPE`` document holding no member but ``names``."""
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            if len(raw) > MAX_DOCUMENT:
                cls.refuse(f"a signed document is at most {MAX_DOCUMENT} bytes")
            try:
                obj: object = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique)
            except _DuplicateMember as exc:
                raise cls.error("a member of the document is named twice") from exc
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise cls.error("the signed content must be a JSON object") from exc
        elif isinstance(data, Mapping):
            obj = data
        else:
            cls.refuse("the signed content must be a JSON object")
        if not isinstance(obj, Mapping) or obj.get("type") != cls.TYPE:
            cls.refuse(f"the signed content must be a {cls.TYPE} document", "type")
        if set(obj) - {"type", *names}:
            # The names are the sender's text and are not echoed (architecture §9.7).
            cls.refuse("the document has fields it may not have", "type")
        return Members(obj, cls)


class _DuplicateMember(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose members are named once: with a name twice, what a document says would
    depend on which parser read it (RFC 8259 §4)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateMember("a member is named twice")
    return obj


class Members:
    """The members of one document, each read as the JSON type it must have."""

    def __init__(self, obj: Mapping[str, Any], doc: type[Document]) -> None:
        self._obj, self._doc = obj, doc

    def text(self, name: str, limit: int = MAX_TEXT) -> str:
        value = self._obj.get(name)
        if not isinstance(value, str) or len(value) > limit:
            self._doc.refuse(f"{name} is a string of at most {limit} characters", name)
        return value

    def base64(self, name: str, limit: int = MAX_TEXT) -> bytes:
        value = self._obj.get(name)
        if not isinstance(value, str) or len(value) > limit:
            self._doc.refuse(f"{name} must be base64", name)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self._doc.error(f"{name} must be base64", field=name) from exc

    def flag(self, name: str) -> bool:
        value = self._obj.get(name)
        if not isinstance(value, bool):
            self._doc.refuse(f"{name} is true or false", name)
        return value

    def choice(self, name: str, kind: type[E]) -> E:
        return one_of(self._doc, name, kind, self.text(name))

    def texts(self, name: str, limit: int, what: str) -> tuple[str, ...]:
        """A JSON array of at most ``limit`` strings (``what`` says what they must be)."""
        value = self._obj.get(name)
        if not isinstance(value, list) or len(value) > limit or \
                not all(isinstance(v, str) for v in value):
            self._doc.refuse(what, name)
        return tuple(value)


def one_of(doc: type[Document] | Document, field: str, kind: type[E], value: object) -> E:
    """``value`` as a member of ``kind``, or the document's refusal naming ``field``."""
    try:
        if isinstance(value, str):
            return kind(value)
    except ValueError:
        pass
    raise doc.error(f"{field} is one of {', '.join(kind)}", field=field)


def canonical_json(members: Mapping[str, Any]) -> bytes:
    """``members`` in their order, without whitespace, ASCII only."""
    return json.dumps(members, ensure_ascii=True, separators=(",", ":"),
                      allow_nan=False).encode("ascii")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

