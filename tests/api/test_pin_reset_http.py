"""The signing-password reset over HTTP (architecture §7.1): the holder app's online password and
the kiosk's authorisation, and every refusal — each with its precise problem, nothing changed
that it asked to change, audited without personal data. The card is played by keys the test
holds (tests/holder_kit.py); the end-to-end run with the card emulator over PC/SC is
tests/devices/card/test_card_kiosk_pcsc.py."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import select

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.model import CertKind, ClientRole, ClientStatus, RevocationReason
from jpki.protocol.pin_reset import (
    FaceCheckAssertion,
    ResetPurpose,
    card_reset_message,
    holder_auth_message,
)
from jpki.store.tables import kiosk_resets, online_passwords, pin_reset_refusals
from tests.api.harness import Api, basic_auth
from tests.conftest import FixedClock
from tests.holder_kit import Holder, new_holder

LOCAL = Principal.local_operator("pytest")
CARD_KEY = "card-management-http-tests"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class App:
    client_id: str
    headers: dict[str, str]
    key: ec.EllipticCurvePrivateKey


@dataclass
class Reset:
    api: Api
    holder: Holder
    app: App
    kiosk: dict[str, str]
    kiosk_id: str
    clock: FixedClock

    # --- the app ----------------------------------------------------------------------------

    def challenge(self, path: str, headers: dict[str, str]) -> bytes:
        r = self.api.http.post(path, headers=headers)
        assert r.status_code == 201, r.text
        return base64.b64decode(r.json()["challenge"])

    def card_signature(self, purpose: ResetPurpose, challenge: bytes,
                       holder: Holder | None = None) -> bytes:
        key = (holder or self.holder).keys[CertKind.CARD_AUTH]
        return key.sign(holder_auth_message(purpose, challenge), padding.PKCS1v15(),
                        hashes.SHA256())

    def assertion(self, challenge: bytes, *, app: App | None = None,
                  holder: Holder | None = None, **overrides: Any) -> bytes:
        holder = holder or self.holder
        fields: dict[str, Any] = {
            "app": (app or self.app).client_id, "challenge": challenge,
            "card": holder.serial(CertKind.CARD_AUTH),
            "face_image_sha256": hashlib.sha256(b"face").digest(), "matched": True,
            "checked_at": self.clock.now().replace(microsecond=0), **overrides}
        return FaceCheckAssertion(**fields).to_json()

    def password_body(self, challenge: bytes | None = None, *, holder: Holder | None = None,
                      assertion: bytes | None = None, signer: App | None = None,
                      **overrides: Any) -> dict[str, Any]:
        holder = holder or self.holder
        challenge = challenge if challenge is not None else self.challenge(
            "/v1/holder-app/challenges", self.app.headers)
        assertion = assertion if assertion is not None else self.assertion(challenge,
                                                                           holder=holder)
        body = {"challenge": b64(challenge),
                "auth_certificate": b64(holder.certs[CertKind.CARD_AUTH].der),
                "auth_signature": b64(self.card_signature(ResetPurpose.ONLINE_PASSWORD,
                                                          challenge, holder)),
                "assertion": b64(assertion),
                "assertion_signature": b64((signer or self.app).key.sign(
                    assertion, ec.ECDSA(hashes.SHA256())))}
        return {**body, **overrides}

    def online_password(self, **kwargs: Any) -> str:
        r = self.api.http.post("/v1/holder-app/online-passwords", headers=self.app.headers,
                               json=self.password_body(**kwargs))
        assert r.status_code == 201, r.text
        return str(r.json()["online_password"])

    # --- the kiosk ----------------------------------------------------------------------------

    def kiosk_body(self, password: str, *, holder: Holder | None = None,
                   challenge: bytes | None = None, card_challenge: bytes = bytes(range(32)),
                   ) -> dict[str, Any]:
        holder = holder or self.holder
        challenge = challenge if challenge is not None else self.challenge(
            "/v1/kiosk/challenges", self.kiosk)
        return {"challenge": b64(challenge),
                "auth_certificate": b64(holder.certs[CertKind.CARD_AUTH].der),
                "auth_signature": b64(self.card_signature(ResetPurpose.KIOSK_RESET, challenge,
                                                          holder)),
                "online_password": password, "card_challenge": b64(card_challenge)}

    def kiosk_reset(self, password: str, **kwargs: Any) -> Any:
        return self.api.http.post("/v1/kiosk/resets", headers=self.kiosk,
                                  json=self.kiosk_body(password, **kwargs))

    def rows(self, table: Any) -> list[Any]:
        with self.api.services.uow.engine.connect() as conn:
            return list(conn.execute(select(table)).all())


def register_app(api: Api, name: str = "Reference app") -> App:
    key = ec.generate_private_key(ec.SECP256R1())
    new = api.services.pin_reset.register_app(
        authorize(LOCAL, Operation.CLIENT_CREATE), api.services.clients, name=name,
        public_key=key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    return App(new.client.client_id, basic_auth(new.client.client_id, new.client_secret), key)


@pytest.fixture
def reset(api: Api, clock: FixedClock) -> Iterator[Reset]:
    services = api.services
    if not services.keys.has_key(CARD_KEY):
        services.keys.generate_rsa_key(CARD_KEY)
    services.pin_reset.card_key_label = CARD_KEY
    pool = [rsa.generate_private_key(65537, 2048) for _ in range(2)]
    holder = new_holder(services, pool)
    kiosk = api.caller(ClientRole.KIOSK, "chain:kombini")
    yield Reset(api, holder, register_app(api), kiosk.headers, kiosk.client_id, clock)


def test_online_password_then_kiosk_authorisation(reset: Reset) -> None:
    api = reset.api
    password = reset.online_password()
    assert len(password) == 12
    (stored,) = reset.rows(online_passwords)
    assert stored.status == "active" and password not in stored.password_hash
    assert stored.password_hash.startswith("scrypt$16384$8$1$")
    card_challenge = bytes(range(100, 132))
    r = reset.kiosk_reset("-".join(password[i:i + 4] for i in range(0, 12, 4)).lower(),
                          card_challenge=card_challenge)
    assert r.status_code == 201, r.text
    answer = r.json()
    # The card-management key's signature over this card's challenge and auth certificate.
    public = api.services.keys.rsa_key(CARD_KEY).public_key()
    public.verify(base64.b64decode(answer["authorisation"]),
                  card_reset_message(card_challenge, reset.holder.certs[CertKind.CARD_AUTH].der),
                  padding.PKCS1v15(), hashes.SHA256())
    (stored,) = reset.rows(online_passwords)
    assert stored.status == "consumed" and stored.consumed_by == reset.kiosk_id
    r = api.http.post(f"/v1/kiosk/resets/{answer['reset_id']}/result", headers=reset.kiosk,
                      json={"outcome": "done"})
    assert r.json() == {"reset_id": answer["reset_id"], "status": "done"}
    # Reported once: a second report finds the reset closed.
    api.problem(api.http.post(f"/v1/kiosk/resets/{answer['reset_id']}/result",
                              headers=reset.kiosk, json={"outcome": "done"}),
                409, "pin_reset.reset_closed")
    actions = [r.action for r in api.audit_since(0)]
    assert [a for a in actions if a.startswith("pin_reset.")] == [
        "pin_reset.online_password_issued", "pin_reset.reset_authorised", "pin_reset.reset_done"]


def _refused(reset: Reset, response: Any, status: int, code: str) -> None:
    """A precise problem, audited as pin_reset.refused without personal data."""
    api = reset.api
    api.problem(response, status, code)
    records = api.audit_since(0)
    assert records[-1].action == "pin_reset.refused"
    assert json.loads(records[-1].payload)["code"] == code


def test_app_refusals(reset: Reset) -> None:
    api, app = reset.api, reset.app
    post = lambda body: api.http.post("/v1/holder-app/online-passwords",  # noqa: E731
                                      headers=app.headers, json=body)
    # A replayed challenge.
    challenge = reset.challenge("/v1/holder-app/challenges", app.headers)
    body = reset.password_body(challenge)
    assert post(body).status_code == 201
    _refused(reset, post(body), 400, "pin_reset.challenge_invalid")
    # A replayed assertion (another challenge): it names its own.
    old = base64.b64decode(body["assertion"])
    _refused(reset, post(reset.password_body(assertion=old)), 422,
             "pin_reset.assertion_invalid")
    # A stale one, one from the future, one that did not match, one of another app, one
    # signed by another key.
    other = register_app(api, "Other app")
    for make in (
        lambda c: {"assertion": reset.assertion(c, checked_at=reset.clock.now().replace(
            microsecond=0) - timedelta(minutes=6))},
        lambda c: {"assertion": reset.assertion(c, checked_at=reset.clock.now().replace(
            microsecond=0) + timedelta(minutes=5))},
        lambda c: {"assertion": reset.assertion(c, matched=False)},
        lambda c: {"assertion": reset.assertion(c, app=other)},
        lambda c: {"assertion": reset.assertion(c), "signer": other},
    ):
        c = reset.challenge("/v1/holder-app/challenges", app.headers)
        _refused(reset, post(reset.password_body(c, **make(c))), 422,
                 "pin_reset.assertion_invalid")
    # The card's signature over another purpose's message.
    c = reset.challenge("/v1/holder-app/challenges", app.headers)
    bad = reset.password_body(c, auth_signature=b64(reset.card_signature(
        ResetPurpose.KIOSK_RESET, c)))
    _refused(reset, post(bad), 422, "pin_reset.holder_refused")
    # The kiosk's challenge is not the app's.
    c = reset.challenge("/v1/kiosk/challenges", reset.kiosk)
    _refused(reset, post(reset.password_body(c)), 400, "pin_reset.challenge_invalid")
    (only,) = reset.rows(online_passwords)  # only the first request issued one
    assert only.status == "active"


def test_card_rules(reset: Reset, clock: FixedClock) -> None:
    api = reset.api
    services = api.services
    # Under 15: no signing password, so none to reset.
    young = services.residents.register(
        authorize(LOCAL, Operation.RESIDENT_REGISTER), name="山田 花", sex=2,
        birth_date=date.fromordinal(clock.now().date().toordinal() - 365 * 14),
        address="東京都清瀬市中里一丁目２番３号", municipality_code="132217")
    child = Holder(services=services, resident_id=young.id,
                   pool=[rsa.generate_private_key(65537, 2048)])
    child.issue(CertKind.CARD_AUTH)
    c = reset.challenge("/v1/holder-app/challenges", reset.app.headers)
    _refused(reset, api.http.post("/v1/holder-app/online-passwords", headers=reset.app.headers,
                                  json=reset.password_body(c, holder=child)),
             422, "policy.under_15")
    # A revoked signing certificate.
    services.revocation.revoke(authorize(LOCAL, Operation.CERTIFICATE_REVOKE),
                               reset.holder.serial(CertKind.CARD_SIGN),
                               RevocationReason.KEY_COMPROMISE)
    c = reset.challenge("/v1/holder-app/challenges", reset.app.headers)
    _refused(reset, api.http.post("/v1/holder-app/online-passwords", headers=reset.app.headers,
                                  json=reset.password_body(c)),
             422, "pin_reset.signing_revoked")
    assert reset.rows(online_passwords) == []


def test_kiosk_refusals(reset: Reset, clock: FixedClock) -> None:
    api = reset.api
    password = reset.online_password()
    # Another card's password: this card has none.
    pool = [rsa.generate_private_key(65537, 2048) for _ in range(2)]
    other = new_holder(api.services, pool, name="佐藤 次郎")
    _refused(reset, reset.kiosk_reset(password, holder=other), 422,
             "pin_reset.no_online_password")
    # A wrong one spends a try; the third locks it.
    wrong = "ABCDEFGHJKMN" if password != "ABCDEFGHJKMN" else "NMKJHGFEDCBA"
    _refused(reset, reset.kiosk_reset(wrong), 422, "pin_reset.online_password_wrong")
    (stored,) = reset.rows(online_passwords)
    assert stored.tries_left == 2 and stored.status == "active"
    _refused(reset, reset.kiosk_reset(wrong), 422, "pin_reset.online_password_wrong")
    _refused(reset, reset.kiosk_reset(wrong), 422, "pin_reset.online_password_wrong")
    _refused(reset, reset.kiosk_reset(password), 422, "pin_reset.no_online_password")
    (stored,) = reset.rows(online_passwords)
    assert stored.status == "locked" and stored.tries_left == 0
    # A new one; expired after its 30 minutes.
    password = reset.online_password()
    clock.advance(minutes=31)
    _refused(reset, reset.kiosk_reset(password), 422, "pin_reset.online_password_expired")
    # A malformed one is refused before anything is counted against the card.
    _refused(reset, reset.kiosk_reset("0O1I"), 400, "pin_reset.invalid")
    # A replayed kiosk challenge.
    challenge = reset.challenge("/v1/kiosk/challenges", reset.kiosk)
    password = reset.online_password()
    body = reset.kiosk_body(password, challenge=challenge)
    assert api.http.post("/v1/kiosk/resets", headers=reset.kiosk, json=body).status_code == 201
    _refused(reset, api.http.post("/v1/kiosk/resets", headers=reset.kiosk, json=body), 400,
             "pin_reset.challenge_invalid")
    assert reset.rows(kiosk_resets)[0].status == "authorised"
    # The card refused the holder's PIN: reported, audited, counted against the kiosk.
    challenge = reset.challenge("/v1/kiosk/challenges", reset.kiosk)
    r = api.http.post("/v1/kiosk/card-refusals", headers=reset.kiosk,
                      json={"challenge": b64(challenge), "code": "card.wrong_pin"})
    assert r.status_code == 204
    assert json.loads(api.audit_since(0)[-1].payload) == {"code": "card.wrong_pin"}
    api.problem(api.http.post("/v1/kiosk/card-refusals", headers=reset.kiosk,
                              json={"challenge": b64(challenge), "code": "card.wrong_pin"}),
                400, "pin_reset.challenge_invalid")


def test_limits_per_card_app_and_kiosk(reset: Reset) -> None:
    api = reset.api
    services = api.services
    for _ in range(3):
        reset.online_password()
    c = reset.challenge("/v1/holder-app/challenges", reset.app.headers)
    r = api.http.post("/v1/holder-app/online-passwords", headers=reset.app.headers,
                      json=reset.password_body(c))
    _refused(reset, r, 429, "pin_reset.too_many")
    assert int(r.headers["retry-after"]) > 0
    # Only the newest of the card's passwords is in force: the others were superseded.
    assert sorted(p.status for p in reset.rows(online_passwords)) == \
        ["active", "superseded", "superseded"]
    # A kiosk that keeps being refused is stopped.
    services.pin_reset.limits = type(services.pin_reset.limits)(refusals_per_kiosk=2)
    for _ in range(2):
        reset.kiosk_reset("ABCDEFGHJKMN", challenge=bytes(32))  # an unknown challenge
    _refused(reset, reset.kiosk_reset("ABCDEFGHJKMN"), 429, "pin_reset.too_many")
    counted = {row.subject for row in reset.rows(pin_reset_refusals)}
    assert f"kiosk:{reset.kiosk_id}" in counted


def test_limits_on_refusals_per_card_and_per_app(reset: Reset) -> None:
    api = reset.api
    limits = type(reset.api.services.pin_reset.limits)
    # Refused attempts about one card, from any kiosk: then even the right password waits.
    api.services.pin_reset.limits = limits(refusals_per_card=2)
    password = reset.online_password()
    wrong = "ABCDEFGHJKMN" if password != "ABCDEFGHJKMN" else "NMKJHGFEDCBA"
    other_kiosk = api.caller(ClientRole.KIOSK, "chain:another").headers
    _refused(reset, reset.kiosk_reset(wrong), 422, "pin_reset.online_password_wrong")
    reset.kiosk = other_kiosk
    _refused(reset, reset.kiosk_reset(wrong), 422, "pin_reset.online_password_wrong")
    _refused(reset, reset.kiosk_reset(password), 429, "pin_reset.too_many")
    (stored,) = reset.rows(online_passwords)
    assert stored.status == "active" and stored.tries_left == 1  # the refused one spent none
    # Refused requests of one app.
    api.services.pin_reset.limits = limits(refusals_per_app=1)
    c = reset.challenge("/v1/holder-app/challenges", reset.app.headers)
    post = lambda body: api.http.post("/v1/holder-app/online-passwords",  # noqa: E731
                                      headers=reset.app.headers, json=body)
    _refused(reset, post(reset.password_body(c, assertion=reset.assertion(c, matched=False))),
             422, "pin_reset.assertion_invalid")
    _refused(reset, post(reset.password_body()), 429, "pin_reset.too_many")
    # Online passwords issued through one app.
    app = register_app(api, "Busy app")
    api.services.pin_reset.limits = limits(passwords_per_app=1)
    reset.app = app
    reset.online_password()
    pool = [rsa.generate_private_key(65537, 2048) for _ in range(2)]
    _refused(reset, post(reset.password_body(holder=new_holder(api.services, pool,
                                                               name="鈴木 三郎"))),
             429, "pin_reset.too_many")


def test_suspended_and_unregistered_clients(reset: Reset) -> None:
    api = reset.api
    # An app whose key is gone (never registered with one): its assertions have no signer.
    from sqlalchemy import delete

    from jpki.store.tables import holder_app_keys

    keyless = register_app(api, "Keyless app")
    with api.services.uow.engine.begin() as conn:
        conn.execute(delete(holder_app_keys).where(
            holder_app_keys.c.client_id == keyless.client_id))
    signer, reset.app = reset.app, keyless
    _refused(reset, api.http.post("/v1/holder-app/online-passwords", headers=keyless.headers,
                                  json=reset.password_body()), 403, "pin_reset.app_unregistered")
    reset.app = signer
    set_status = authorize(LOCAL, Operation.CLIENT_SET_STATUS)
    api.services.clients.set_status(set_status, reset.app.client_id, ClientStatus.SUSPENDED)
    api.problem(api.http.post("/v1/holder-app/challenges", headers=reset.app.headers), 403,
                "auth.client_suspended")
    # A supervisor (a national operator) suspends kiosks as stations, not only the CLI.
    supervisor = Principal(actor="console:supervisor", kind=PrincipalKind.OPERATOR)
    api.services.clients.set_status(authorize(supervisor, Operation.CLIENT_SET_STATUS),
                                    reset.kiosk_id, ClientStatus.SUSPENDED)
    api.problem(api.http.post("/v1/kiosk/challenges", headers=reset.kiosk), 403,
                "auth.client_suspended")
    api.problem(api.http.post("/v1/kiosk/challenges",
                              headers=basic_auth("jpki_" + "0" * 24, "x" * 43)), 401,
                "auth.invalid_credentials")
    # A kiosk is not an app, nor the other way round.
    api.problem(api.http.post("/v1/holder-app/challenges",
                              headers=api.caller(ClientRole.KIOSK, "chain:other").headers),
                403, "auth.role_forbidden")
    # Holder apps are registered with their key, never as a bare client; a kiosk needs one
    # chain.
    from jpki.errors import InvalidInput

    create = authorize(LOCAL, Operation.CLIENT_CREATE)
    with pytest.raises(InvalidInput):
        api.services.clients.create(create, name="bare app", role=ClientRole.HOLDER_APP)
    with pytest.raises(InvalidInput):
        api.services.clients.create(create, name="kiosk", role=ClientRole.KIOSK)


def test_pin_reset_never_reaches_audit_with_the_password(reset: Reset) -> None:
    password = reset.online_password()
    reset.kiosk_reset(password)
    for record in reset.api.audit_since(0):
        assert password not in f"{record.subject} {record.payload}"



def test_spent_challenges_are_purged(reset: Reset, clock: FixedClock) -> None:
    from jpki.store.tables import pin_reset_challenges

    reset.online_password()  # one used challenge
    reset.challenge("/v1/kiosk/challenges", reset.kiosk)  # one that will expire
    clock.advance(minutes=6)
    fresh = reset.challenge("/v1/kiosk/challenges", reset.kiosk)  # one still usable
    assert reset.api.services.pin_reset.purge_challenges() == 2
    (left,) = reset.rows(pin_reset_challenges)
    assert left.digest == hashlib.sha256(fresh).hexdigest()
