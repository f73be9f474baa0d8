"""A convenience-store kiosk resetting a card's signing password with an online password
(reference §4.5; this project's design, architecture §7.1).

The kiosk holds no key of the issuer: the CA signs, in its HSM, an authorisation for *this* card
and *this* card's fresh challenge, and the kiosk relays it.

1. check what the holder typed (the new signing password's format, the online password's)
   before anything spends a try;
2. ask the CA for a challenge (``POST /v1/kiosk/challenges``);
3. on the card: SELECT JPKI-AP, read the auth certificate, VERIFY the 4-digit PIN (a wrong one
   is counted down by the card, and reported to the CA: ``POST /v1/kiosk/card-refusals``), and
   have the auth key sign :func:`holder_auth_message`;
4. GET CHALLENGE from the card, and send it with the rest to ``POST /v1/kiosk/resets``; the CA
   answers the card-management key's signature;
5. relay it (EXTERNAL AUTHENTICATE P2 9B) and, as the very next command, RESET RETRY COUNTER of
   the signing PIN with the new password — which never leaves the kiosk;
6. report the outcome (``POST /v1/kiosk/resets/{id}/result``).

No APDU goes to the card between its GET CHALLENGE and the EXTERNAL AUTHENTICATE: the card
forgets the challenge at any other command. The kiosk should hold the reader exclusively.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding

from devices.card.client import JpkiCard
from devices.card.errors import CardError, CardRemoved, PinBlocked, WrongPin
from devices.card.jpki_ap import CertSlot, Key, Pin, SignScheme
from devices.card.pins import encode_pin
from devices.reset_ca import ResetCa, ResetRefused, b64
from jpki.protocol.pin_reset import (
    CARD_CHALLENGE_BYTES,
    ResetPurpose,
    holder_auth_message,
    normalise_online_password,
)

STEPS = ("check input", "CA challenge", "read card", "verify PIN", "card signature",
         "card challenge", "authorise", "reset on card", "report")


@dataclass
class StepTimes:
    """Seconds spent in each step, in order (what bench/kiosk.py breaks a reset into)."""

    steps: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps.append((name, time.perf_counter() - started))


@dataclass(frozen=True)
class KioskResult:
    reset_id: str
    steps: list[tuple[str, float]]


def _card_code(exc: CardError) -> str:
    if isinstance(exc, WrongPin):
        return "card.wrong_pin"
    if isinstance(exc, PinBlocked):
        return "card.pin_blocked"
    if isinstance(exc, CardRemoved):
        return "card.removed"
    return "card.refused"


class Kiosk:
    def __init__(self, ca: ResetCa, card: JpkiCard) -> None:
        self.ca = ca
        self.card = card

    def reset_signing_password(self, *, auth_pin: str, online_password: str,
                               new_password: str) -> KioskResult:
        times = StepTimes()
        card = self.card
        with times.step("check input"):
            encode_pin(Pin.AUTH, auth_pin)
            encode_pin(Pin.SIGN, new_password)
            typed = normalise_online_password(online_password)
        with times.step("CA challenge"):
            challenge = self.ca.challenge("/v1/kiosk/challenges")
        try:
            with times.step("read card"):
                card.select_jpki_ap()
                certificate = card.read_certificate(CertSlot.AUTH).public_bytes(Encoding.DER)
            with times.step("verify PIN"):
                card.verify_pin(Pin.AUTH, auth_pin)
            with times.step("card signature"):
                signature = card.compute_signature(
                    Key.AUTH, holder_auth_message(ResetPurpose.KIOSK_RESET, challenge),
                    SignScheme.PKCS1_SHA256)
            with times.step("card challenge"):
                card_challenge = card.get_challenge(CARD_CHALLENGE_BYTES)
        except CardError as exc:
            # The card refused the holder before the CA heard of the card: tell it, so that the
            # refusal is audited and counted against this kiosk; the challenge is spent.
            self.ca.call("/v1/kiosk/card-refusals", {"challenge": b64(challenge),
                                                     "code": _card_code(exc)})
            raise
        with times.step("authorise"):
            answer = self.ca.call("/v1/kiosk/resets", {
                "challenge": b64(challenge), "auth_certificate": b64(certificate),
                "auth_signature": b64(signature), "online_password": typed,
                "card_challenge": b64(card_challenge)})
        reset_id = str(answer["reset_id"])
        try:
            with times.step("reset on card"):
                card.relay_reset_authorisation(base64.b64decode(answer["authorisation"]))
                card.reset_retry_counter(Pin.SIGN, new_password)
        except CardError as exc:
            self._report(reset_id, _card_code(exc))
            raise
        with times.step("report"):
            self._report(reset_id, None)
        return KioskResult(reset_id, times.steps)

    def _report(self, reset_id: str, code: str | None) -> None:
        body = {"outcome": "done"} if code is None else {"outcome": "failed", "code": code}
        try:
            self.ca.call(f"/v1/kiosk/resets/{reset_id}/result", body)
        except ResetRefused:
            if code is None:
                raise
