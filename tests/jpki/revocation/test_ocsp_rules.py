"""The OCSP responder's rules that need no component: what a status is (typed values), the lints
a response passes before it is signed, and the refresh loop the app starts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as c_ocsp
from cryptography.x509.oid import NameOID

from jpki.model import CertKind, CertStatus, RevocationReason, StatusRow
from jpki.revocation.ocsp import GOOD, UNKNOWN, Good, Revoked
from jpki.revocation.ocsp.issuers import IssuerEntry
from jpki.revocation.ocsp.jobs import follow_status_changes, reconcile_at_start
from jpki.revocation.ocsp.requests import MAX_CERTS_PER_REQUEST, CertQuestion
from jpki.revocation.ocsp.signer import lint_response
from jpki.revocation.ocsp.statuses import contradiction, expected, status_of

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    status: CertStatus
    revoked_at: datetime | None
    revocation_reason: RevocationReason | None


def test_a_status_is_good_revoked_or_unknown_by_the_revocation_time() -> None:
    assert status_of(Row(CertStatus.ISSUED, None, None), NOW) is GOOD
    later = NOW + timedelta(days=1)  # an emigrant's departure: recorded ahead of its date
    assert status_of(Row(CertStatus.ISSUED, later, RevocationReason.AFFILIATION_CHANGED),
                     NOW) == Good(later)
    for at in (NOW, NOW - timedelta(seconds=1)):
        assert status_of(Row(CertStatus.ISSUED, at, RevocationReason.KEY_COMPROMISE), NOW) == \
            Revoked(at, RevocationReason.KEY_COMPROMISE)
    # An abandoned intent is revoked from the instant it was abandoned (architecture §3.3).
    assert status_of(Row(CertStatus.ABANDONED, later, RevocationReason.UNSPECIFIED), NOW) == \
        Revoked(later, RevocationReason.UNSPECIFIED)
    with pytest.raises(ValueError, match=r"^an abandoned certificate without a revocation time$"):
        status_of(Row(CertStatus.ABANDONED, None, None), NOW)


def test_a_serial_of_another_generation_or_none_is_unknown() -> None:
    row = StatusRow(serial="1f", kind=CertKind.CARD_SIGN, status=CertStatus.ISSUED,
                    not_after=NOW + timedelta(days=9), revoked_at=None,
                    revocation_reason=None, ca_generation_id=7)
    assert expected(row, 7, NOW) is GOOD
    assert expected(row, 8, NOW) is UNKNOWN
    assert expected(None, 7, NOW) is UNKNOWN
    revoked_row = replace(row, revoked_at=NOW - timedelta(seconds=1),
                          revocation_reason=RevocationReason.SUPERSEDED)
    assert expected(revoked_row, 7, NOW) == Revoked(NOW - timedelta(seconds=1),
                                                    RevocationReason.SUPERSEDED)
    scheduled = replace(row, revoked_at=NOW + timedelta(seconds=1))
    assert expected(scheduled, 7, NOW) == Good(NOW + timedelta(seconds=1))


def test_unspecified_is_left_out_of_the_response() -> None:
    # RFC 5280 §5.3.1: the reason code unspecified SHOULD be absent.
    assert Revoked(NOW, RevocationReason.UNSPECIFIED).wire_reason is None
    assert Revoked(NOW, None).wire_reason is None
    assert Revoked(NOW, RevocationReason.SUPERSEDED).wire_reason is RevocationReason.SUPERSEDED


ISSUER = IssuerEntry(1, {"sha1": b"n" * 20, "sha256": b"N" * 32},
                     {"sha1": b"k" * 20, "sha256": b"K" * 32}, None, frozenset())


def question(serial: int = 5, algorithm: str = "sha1", name: bytes | None = None) -> CertQuestion:
    return CertQuestion(algorithm, name or ISSUER.name_hashes[algorithm],  # type: ignore[arg-type]
                        ISSUER.key_hashes[algorithm], serial)


def rules(answers: list[tuple[CertQuestion, Good | Revoked]], this_update: datetime = NOW,
          next_update: datetime = NOW + timedelta(hours=1)) -> list[str]:
    return [f.rule for f in lint_response(ISSUER, answers, this_update, next_update)]


def test_a_response_that_keeps_the_rules_has_no_finding() -> None:
    assert rules([(question(), GOOD), (question(6, "sha256"), Revoked(NOW, None)),
                  (question(7), Good(NOW + timedelta(hours=2)))]) == []
    # A good response capped at the scheduled revocation (architecture §5.5).
    assert rules([(question(), Good(NOW + timedelta(minutes=5)))],
                 next_update=NOW + timedelta(minutes=5)) == []


def test_each_lint_finds_what_it_is_for() -> None:
    assert rules([]) == ["e_ocsp_single_count"]
    assert rules([(question(i), GOOD) for i in range(MAX_CERTS_PER_REQUEST + 1)]) == \
        ["e_ocsp_single_count"]
    assert rules([(question(), GOOD)], next_update=NOW) == ["e_ocsp_next_update"]
    assert rules([(question(name=b"x" * 20), GOOD)]) == ["e_ocsp_cert_id_issuer"]
    assert rules([(question(), Revoked(NOW + timedelta(seconds=1), None))]) == \
        ["e_ocsp_revoked_ahead"]
    assert rules([(question(), Good(NOW + timedelta(minutes=5)))]) == \
        ["e_ocsp_good_past_revocation"]


async def _in_thread(step: Callable[[], object]) -> object:
    return step()


def test_the_refresh_loop_outlives_a_failed_run_and_logs_only_its_type(
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    def refresh() -> int:
        runs.append(len(runs))
        if len(runs) == 2:
            raise ConnectionError("postgresql://user:secret@db/jpki is down")
        return 0

    async def main() -> None:
        task = asyncio.create_task(follow_status_changes(refresh, _in_thread, every=0.001))
        while len(runs) < 4:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR, logger="jpki.ocsp"):
        asyncio.run(main())
    assert len(runs) >= 4  # went on after the failure of the second run
    assert [r.getMessage() for r in caplog.records] == ["OCSP refresh failed: ConnectionError"]


def test_a_failed_reconciliation_at_start_does_not_stop_the_start(
        caplog: pytest.LogCaptureFixture) -> None:
    def refresh() -> int:
        raise TimeoutError("no database")

    with caplog.at_level(logging.ERROR, logger="jpki.ocsp"):
        asyncio.run(reconcile_at_start(refresh, _in_thread))
    assert [r.getMessage() for r in caplog.records] == \
        ["OCSP reconciliation at start failed: TimeoutError"]


# --- contradiction: does a signed response still say what the store says? -------------------------


HOUR = timedelta(hours=1)
S = c_ocsp.OCSPCertStatus
R = RevocationReason


@cache
def _ocsp_pair() -> tuple[x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]:
    """A throwaway issuer and one certificate of it: the responses below need real CertIDs."""
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "throwaway CA")])
    issuer = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(key.public_key()).serial_number(1 << 70)
              .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
              .sign(key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(name)
            .public_key(key.public_key()).serial_number(0x1F << 64)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
            .sign(key, hashes.SHA256()))
    return issuer, leaf, key


def _response(status: c_ocsp.OCSPCertStatus, *, next_update: datetime | None = NOW + HOUR,
              revoked_at: datetime | None = None,
              reason: x509.ReasonFlags | None = None) -> bytes:
    issuer, leaf, key = _ocsp_pair()
    builder = (c_ocsp.OCSPResponseBuilder()
               .add_response(cert=leaf, issuer=issuer, algorithm=hashes.SHA1(),
                             cert_status=status, this_update=NOW, next_update=next_update,
                             revocation_time=revoked_at, revocation_reason=reason)
               .responder_id(c_ocsp.OCSPResponderEncoding.HASH, issuer))
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)




def good(next_update: datetime | None = NOW + HOUR) -> bytes:
    return _response(S.GOOD, next_update=next_update)


def revoked(at: datetime = NOW - HOUR, reason: x509.ReasonFlags | None = None) -> bytes:
    return _response(S.REVOKED, revoked_at=at, reason=reason)


def test_a_response_that_says_what_the_store_says_is_no_contradiction() -> None:
    assert contradiction(good(), GOOD) is None
    assert contradiction(_response(S.UNKNOWN), UNKNOWN) is None
    assert contradiction(revoked(reason=x509.ReasonFlags.key_compromise),
                         Revoked(NOW - HOUR, R.KEY_COMPROMISE)) is None
    # unspecified is left out of the response (RFC 5280 §5.3.1), and so agrees with no reason
    assert contradiction(revoked(), Revoked(NOW - HOUR, R.UNSPECIFIED)) is None
    assert contradiction(revoked(), Revoked(NOW - HOUR, None)) is None


def test_what_is_not_one_successful_single_response() -> None:
    unauthorized = c_ocsp.OCSPResponseBuilder.build_unsuccessful(
        c_ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(Encoding.DER)
    assert contradiction(unauthorized, GOOD) == "not a successful response"
    assert contradiction(b"\x30\x03\x0a\x01\x00" + b"junk", GOOD) == \
        "not a single-certificate OCSP response"
    assert contradiction(b"", GOOD) == "not a single-certificate OCSP response"


def test_another_status_is_a_contradiction_naming_both() -> None:
    assert contradiction(good(), UNKNOWN) == \
        "says good, the store knows no such certificate of this issuer"
    assert contradiction(revoked(), UNKNOWN) == \
        "says revoked, the store knows no such certificate of this issuer"
    assert contradiction(revoked(), GOOD) == "says revoked, the store says good"
    assert contradiction(_response(S.UNKNOWN), GOOD) == "says unknown, the store says good"
    assert contradiction(good(), Revoked(NOW, R.SUPERSEDED)) == \
        "says good, the store says revoked"


def test_a_good_response_must_expire_by_a_scheduled_revocation() -> None:
    """architecture §5.5: no "good" answer valid past the instant a revocation takes effect."""
    scheduled = NOW + HOUR
    assert contradiction(good(next_update=scheduled), Good(scheduled)) is None
    assert contradiction(good(next_update=scheduled + timedelta(seconds=1)), Good(scheduled)) \
        == "says good past the scheduled revocation"
    assert contradiction(good(next_update=None), Good(scheduled)) == \
        "says good past the scheduled revocation"
    assert contradiction(good(next_update=None), GOOD) is None


def test_a_revoked_response_must_give_the_stored_time_and_reason() -> None:
    assert contradiction(revoked(at=NOW - HOUR), Revoked(NOW - 2 * HOUR, None)) == \
        "gives another revocation time"
    assert contradiction(revoked(reason=x509.ReasonFlags.superseded),
                         Revoked(NOW - HOUR, R.KEY_COMPROMISE)) == \
        "gives another revocation reason"
    assert contradiction(revoked(), Revoked(NOW - HOUR, R.KEY_COMPROMISE)) == \
        "gives another revocation reason"
    assert contradiction(revoked(reason=x509.ReasonFlags.superseded),
                         Revoked(NOW - HOUR, None)) == "gives another revocation reason"
