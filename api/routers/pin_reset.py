"""The signing-password reset with an online password over HTTP (architecture §7.1): the holder
app obtains the online password, the convenience-store kiosk resets with it. Both are API
clients (roles holder_app and kiosk, HTTP Basic); what the holder proves — the card and its PIN,
the face check — is in the signed members of each body, which the service verifies."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from api.deps import ServicesDep, authorized
from api.openapi import problems
from api.schemas import Strict
from jpki.access.authz import Grant, Operation
from jpki.protocol.pin_reset import decode_b64

router = APIRouter(tags=["pin reset"])

AppGrant = Annotated[Grant[Literal[Operation.ONLINE_PASSWORD_ISSUE]],
                     Depends(authorized(Operation.ONLINE_PASSWORD_ISSUE))]
KioskGrant = Annotated[Grant[Literal[Operation.KIOSK_RESET]],
                       Depends(authorized(Operation.KIOSK_RESET))]

_B64 = r"^[A-Za-z0-9+/]+={0,2}$"
ChallengeB64 = Field(min_length=44, max_length=44, pattern=_B64,
                     description="The CA's challenge (32 bytes), base64")


class PinResetChallengeOut(BaseModel):
    challenge: str  # base64, 32 bytes
    expires_at: datetime


class OnlinePasswordIn(Strict):
    challenge: str = ChallengeB64
    auth_certificate: str = Field(min_length=4, max_length=8192, pattern=_B64,
                                  description="The card's auth certificate (DER), base64")
    auth_signature: str = Field(min_length=4, max_length=1024, pattern=_B64, description=(
        "The card auth key's PKCS#1 v1.5 SHA-256 signature over holder_auth_message"
        "(online_password, challenge), base64"))
    assertion: str = Field(min_length=4, max_length=4096, pattern=_B64,
                           description="A jpki-face-check document, base64")
    assertion_signature: str = Field(min_length=4, max_length=1024, pattern=_B64, description=(
        "The app's registered key's signature over the assertion's bytes, base64"))


class OnlinePasswordOut(BaseModel):
    online_password: str = Field(description="Shown once; the CA keeps a scrypt hash only")
    expires_at: datetime
    card: str = Field(description="The serial of the card's auth certificate")


class KioskResetIn(Strict):
    challenge: str = ChallengeB64
    auth_certificate: str = Field(min_length=4, max_length=8192, pattern=_B64)
    auth_signature: str = Field(min_length=4, max_length=1024, pattern=_B64)
    online_password: str = Field(min_length=1, max_length=40,
                                 description="As typed: 12 letters and digits, groups of 4")
    card_challenge: str = Field(min_length=4, max_length=400, pattern=_B64,
                                description="The card's GET CHALLENGE (16-256 bytes), base64")


class KioskResetOut(BaseModel):
    reset_id: str
    authorisation: str = Field(description=(
        "The card-management key's signature for EXTERNAL AUTHENTICATE P2 9B, base64"))


class KioskResultIn(Strict):
    outcome: Literal["done", "failed"]
    code: Literal["card.wrong_pin", "card.pin_blocked", "card.removed", "card.refused"] | None \
        = Field(default=None, description="The card's refusal, with outcome failed only")


class KioskResultOut(BaseModel):
    reset_id: str
    status: str


class CardRefusalIn(Strict):
    challenge: str = ChallengeB64
    code: Literal["card.wrong_pin", "card.pin_blocked", "card.removed", "card.refused"]


def _challenge(pair: tuple[bytes, datetime]) -> PinResetChallengeOut:
    return PinResetChallengeOut(challenge=base64.b64encode(pair[0]).decode("ascii"),
                                expires_at=pair[1])


@router.post("/v1/holder-app/challenges", status_code=201, response_model=PinResetChallengeOut,
             responses=problems(429))
def app_challenge(grant: AppGrant, services: ServicesDep) -> PinResetChallengeOut:
    """A single-use challenge (minutes) for the card's signature and the face-check assertion."""
    return _challenge(services.pin_reset.new_challenge(grant))


@router.post("/v1/holder-app/online-passwords", status_code=201,
             response_model=OnlinePasswordOut, responses=problems(400, 403, 422, 429))
def online_password(body: OnlinePasswordIn, grant: AppGrant,
                    services: ServicesDep) -> OnlinePasswordOut:
    """An online password for the card whose auth key signed, after the app's face check."""
    issued = services.pin_reset.issue_online_password(
        grant, challenge=decode_b64(body.challenge, "challenge"),
        auth_certificate=decode_b64(body.auth_certificate, "auth_certificate"),
        auth_signature=decode_b64(body.auth_signature, "auth_signature"),
        assertion=decode_b64(body.assertion, "assertion"),
        assertion_signature=decode_b64(body.assertion_signature, "assertion_signature"))
    assert issued.expires_at is not None
    return OnlinePasswordOut(online_password=issued.value, expires_at=issued.expires_at,
                             card=issued.card)


@router.post("/v1/kiosk/challenges", status_code=201, response_model=PinResetChallengeOut,
             responses=problems(429))
def kiosk_challenge(grant: KioskGrant, services: ServicesDep) -> PinResetChallengeOut:
    """A single-use challenge (minutes) for the card's signature at this kiosk."""
    return _challenge(services.pin_reset.new_challenge(grant))


@router.post("/v1/kiosk/resets", status_code=201, response_model=KioskResetOut,
             responses=problems(400, 422, 429, 503))
def kiosk_reset(body: KioskResetIn, grant: KioskGrant, services: ServicesDep) -> KioskResetOut:
    """Authorise one reset of the card's signing password: consumes the online password and
    answers the card-management key's signature over the card's challenge."""
    done = services.pin_reset.authorise_reset(
        grant, challenge=decode_b64(body.challenge, "challenge"),
        auth_certificate=decode_b64(body.auth_certificate, "auth_certificate"),
        auth_signature=decode_b64(body.auth_signature, "auth_signature"),
        online_password=body.online_password,
        card_challenge=decode_b64(body.card_challenge, "card_challenge"))
    return KioskResetOut(reset_id=done.reset_id,
                         authorisation=base64.b64encode(done.authorisation).decode("ascii"))


@router.post("/v1/kiosk/resets/{reset_id}/result", response_model=KioskResultOut,
             responses=problems(400, 409, 422))
def kiosk_result(reset_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
                 body: KioskResultIn, grant: KioskGrant,
                 services: ServicesDep) -> KioskResultOut:
    """What the card did with the authorisation: done, or failed with the card's refusal."""
    reset = services.pin_reset.report_result(grant, reset_id, done=body.outcome == "done",
                                             code=body.code)
    return KioskResultOut(reset_id=reset.id, status=reset.status)


@router.post("/v1/kiosk/card-refusals", status_code=204, responses=problems(400))
def card_refusal(body: CardRefusalIn, grant: KioskGrant, services: ServicesDep) -> None:
    """The card refused the holder at the kiosk (a wrong 4-digit PIN, a blocked PIN, the card
    pulled out) before anything reached the CA: audited and counted against the kiosk."""
    services.pin_reset.report_card_refusal(
        grant, challenge=decode_b64(body.challenge, "challenge"), code=body.code)
