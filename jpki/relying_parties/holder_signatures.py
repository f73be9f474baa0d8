"""Documents a holder signed, as relying-party services check them: whose key signed, and when.

:func:`jpki.protocol.cms.verify_signed_data` checks the CMS structure and the signature itself; this
module
adds what only the CA can say about the signer:

- the signer certificate carried in the document must be **byte for byte** one this CA issued
  (the same serial is not enough: a forged certificate may copy it);
- the signature must have been made while that certificate was valid: the CMS signing-time
  attribute (RFC 5652 §11.3, covered by the signature) must be present, not in the future beyond
  a small clock skew, within the certificate's validity, and before any revocation or hold.

The signing time is asserted by the signer, so it proves nothing against the holder's own key;
what it does is keep a signature that *claims* to be from after a revocation from counting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.serialization import Encoding

from jpki.model import Certificate, CertStatus
from jpki.protocol.cms import VerifiedSignedData, verify_signed_data
from jpki.relying_parties.ports import SignerWork
from jpki.serials import serial_hex

CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class HolderSignature:
    verified: VerifiedSignedData
    certificate: Certificate | None  # None: not a certificate this CA issued
    signed_at: datetime | None

    @property
    def content(self) -> bytes:
        return self.verified.content

    @property
    def signer_serial(self) -> str:
        return serial_hex(self.verified.signer.serial_number)


def verify_holder_signature(uow: SignerWork, der: bytes) -> HolderSignature:
    """Verify the CMS (raising :class:`jpki.protocol.cms.InvalidSignedData`) and find its signer
    among
    the certificates this CA issued."""
    verified = verify_signed_data(der)
    cert = uow.certificates.get_by_serial(serial_hex(verified.signer.serial_number))
    if cert is not None and (cert.der is None or
                             cert.der != verified.signer.public_bytes(Encoding.DER)):
        cert = None
    return HolderSignature(verified=verified, certificate=cert, signed_at=verified.signing_time)


def valid_at(cert: Certificate, at: datetime) -> bool:
    """Issued, within its validity and neither revoked nor on hold at ``at``."""
    return (cert.status is CertStatus.ISSUED and cert.not_before <= at <= cert.not_after
            and not cert.is_revoked(at))


def signed_while_valid(signature: HolderSignature, now: datetime) -> bool:
    """The signing time is present, not in the future and inside the certificate's life."""
    cert, at = signature.certificate, signature.signed_at
    if cert is None or at is None or at > now + CLOCK_SKEW:
        return False
    # A signature stamped a little ahead of our clock is judged at our clock.
    return valid_at(cert, min(at, now))
