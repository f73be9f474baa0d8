"""A holder with a phone whose certificates are on hold, driven from a separate process.

The restart tests (tests/api/test_ocsp_restart.py) need a mobile certificate put on hold and
released *while the server is down*, on the data directory the server uses. Only one process at
a time may hold a SoftHSM configuration, and the CLI has no command that acts as a phone, so this
module is run as its own process (``python -m tests.api.mobile_hold_kit``) with the server's
environment (JPKI_DATA_DIR, JPKI_DATABASE_URL):

- ``hold STATE``: register a holder, issue the card certificates, apply for the mobile ones
  with the card's signing key, put them on hold as the call centre, and prepare the phone's
  signed request to lift the hold (a fresh challenge; the request is sent later). Writes what
  the next step and the test need to ``STATE`` (JSON).
- ``lift STATE``: send the prepared request: the auth hold is released.
- ``enrol STATE``: register a holder, issue the card certificates and the phone's (nothing on
  hold); writes the card's number, the phone's auth certificate and its CA's certificate (the
  console's browser tests hold the phone from the call-centre desk of a running `jpki serve`).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from api.composition import build_services
from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.model import CertKind
from jpki.protocol.mobile import MobileSuspensionLift
from jpki.settings import Settings
from tests.holder_kit import new_holder
from tests.phone_kit import spki

CALLCENTRE = Principal(actor="client:test-callcentre", kind=PrincipalKind.CALL_CENTRE)
HOLD = authorize(CALLCENTRE, Operation.MOBILE_HOLD)


def hold(state: Path) -> None:
    services = build_services(Settings())
    pool = [rsa.generate_private_key(65537, 2048) for _ in range(5)]
    holder = new_holder(services, pool)
    phone = holder.enrol_phone()
    services.mobile.hold(HOLD, holder.resident_id)
    new_sign = pool.pop()
    challenge = services.mobile.new_challenge("lift")[0]
    lift = holder.sign_as(holder.mobile_serials[CertKind.MOBILE_AUTH], MobileSuspensionLift(
        challenge=challenge, device=phone.device_id, sign_public_key=spki(new_sign),
        sign_pop=phone.proof(challenge, CertKind.MOBILE_SIGN, key=new_sign)))
    state.write_text(json.dumps({
        "mobile_auth_der": base64.b64encode(phone.certs[CertKind.MOBILE_AUTH]).decode(),
        "lift": base64.b64encode(lift).decode()}))


def lift(state: Path) -> None:
    services = build_services(Settings())
    services.mobile.lift_suspension(base64.b64decode(json.loads(state.read_text())["lift"]))


def enrol(state: Path) -> None:
    from jpki.model import CaKind

    services = build_services(Settings())
    holder = new_holder(services, [rsa.generate_private_key(65537, 2048) for _ in range(4)])
    phone = holder.enrol_phone()
    with services.uow() as uow:
        card = uow.cards.active_for_resident(holder.resident_id)
        generation = uow.cas.current(CaKind.AUTH)
        assert card is not None and generation is not None
        issuer = generation.certificate_der
    state.write_text(json.dumps({
        "card_number": card.number,
        "mobile_auth_der": base64.b64encode(phone.certs[CertKind.MOBILE_AUTH]).decode(),
        "auth_ca_der": base64.b64encode(issuer).decode()}))
    services.close()


if __name__ == "__main__":
    {"hold": hold, "lift": lift, "enrol": enrol}[sys.argv[1]](Path(sys.argv[2]))
