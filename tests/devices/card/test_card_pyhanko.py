"""pyHanko signs a PDF with the card's signing key through OpenSC's PKCS#11 module, and
``pyhanko sign validate`` accepts it against our signing root, with revocation checking.

The card is enrolled by the station over real PC/SC (``enrolled_pcsc_card``: pcscd + vpcd +
``jpki-card emulate`` on "Virtual PCD 00 01", certificates from the ``served`` CA, whose
certificates name its own CRL and OCSP URLs). pyHanko runs as its own process (the ``pyhanko``
CLI of pyhanko-cli), finds the key and certificate by PKCS#11 id 02 in the token "JPKI (Digital
Signature PIN)" and logs in with the signing password; OpenSC marks the key
CKA_ALWAYS_AUTHENTICATE, so pyHanko also gives the password for the context-specific login that
PKCS#11 asks for before each signature (OpenSC's PIN cache would let it through without).
``--force-revinfo`` makes validation fail unless pyHanko obtained revocation information for the
signer's certificate from our server (no ``--soft-revocation-check`` needed); a second test
revokes the certificate and expects the validation to fail on it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from jpki.access.authz import Operation, authorize
from jpki.access.principals import Principal, PrincipalKind
from jpki.model import CaKind, RevocationReason
from tests.components import missing_component
from tests.devices.card.conftest import (
    PKCS11_MODULE,
    SIGN_TOKEN,
    STATION_SIGN_PASSWORD,
    EnrolledPcscCard,
    opensc_slot,
)

if TYPE_CHECKING:
    from tests.conftest import LiveServer

pytestmark = [pytest.mark.pcsc, pytest.mark.hsm]

OPERATOR = Principal(actor="client:test-operator", kind=PrincipalKind.OPERATOR)
READ_CERTIFICATE = authorize(OPERATOR, Operation.CERTIFICATE_READ)
REVOKE = authorize(OPERATOR, Operation.CERTIFICATE_REVOKE)
FIELD = "JPKISignature"


def pyhanko_cli() -> str:
    """The ``pyhanko`` command next to this interpreter (pyhanko-cli, a [test] extra)."""
    beside = Path(sys.executable).parent / "pyhanko"
    found = str(beside) if beside.exists() else shutil.which("pyhanko")
    if found is None:
        missing_component("the pyhanko CLI is not installed (pip install -e '.[test]')")
    return found


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF written by hand (not by the tool under test), with a correct xref."""
    content = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def sign_pdf(card: EnrolledPcscCard, env: dict[str, str], directory: Path) -> Path:
    """``pyhanko sign addsig … pkcs11 --p11-setup jpki-sign`` as its own process."""
    unsigned, signed = directory / "document.pdf", directory / "document-signed.pdf"
    unsigned.write_bytes(minimal_pdf("Signed with a JPKI card"))
    slot = opensc_slot(env, card.card.reader, SIGN_TOKEN)
    config = directory / "pyhanko.yml"  # JSON is YAML
    config.write_text(json.dumps({"pkcs11-setups": {"jpki-sign": {
        "module-path": str(PKCS11_MODULE),
        # The label alone would also match the session's card in "Virtual PCD 00 00": the slot
        # index pins the reader, and pyHanko checks that its token has the label.
        "slot-no": slot.index,
        "token-criteria": {"label": SIGN_TOKEN},
        "key-id": "02", "cert-id": "02",
    }}}))
    # The password for C_Login, and for the context-specific login before the signature.
    signing_env = {**env, "PYHANKO_PKCS11_PIN": STATION_SIGN_PASSWORD,
                   "PYHANKO_PKCS11_SIGNING_PIN": STATION_SIGN_PASSWORD}
    result = subprocess.run(
        [pyhanko_cli(), "--config", str(config), "sign", "addsig", "--field", FIELD,
         "--reason", "jpki interop", "pkcs11", "--p11-setup", "jpki-sign",
         str(unsigned), str(signed)],
        env=signing_env, cwd=directory, capture_output=True, text=True, timeout=120,
        check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    return signed


def validate(pdf: Path, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``pyhanko sign validate`` trusting only our signing root, revocation info required."""
    return subprocess.run(
        [pyhanko_cli(), "sign", "validate", "--trust", str(root), "--trust-replace",
         "--force-revinfo", "--pretty-print", str(pdf)],
        env=env, cwd=pdf.parent, capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL)


def sign_root(served: LiveServer, directory: Path) -> Path:
    with served.services.uow() as uow:
        generation = uow.cas.current(CaKind.SIGN)
    assert generation is not None
    path = directory / "sign-root.pem"
    path.write_bytes(x509.load_der_x509_certificate(generation.certificate_der)
                     .public_bytes(Encoding.PEM))
    return path


def embedded_signature(pdf: bytes) -> tuple[bytes, cms.SignedData]:
    """The signed bytes (the /ByteRange) and the CMS SignedData in /Contents."""
    match = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    assert match is not None, "no /ByteRange in the signed PDF"
    a, b, c, d = (int(x) for x in match.groups())
    assert a == 0 and c + d == len(pdf), "the signature does not cover the whole file"
    contents = pdf[a + b:c].strip(b"<>")
    info = cms.ContentInfo.load(bytes.fromhex(contents.decode("ascii")).rstrip(b"\x00"))
    assert info["content_type"].native == "signed_data"
    return pdf[a:a + b] + pdf[c:c + d], info["content"]


def test_pyhanko_signs_with_the_card_and_validates_against_our_sign_root(
        enrolled_pcsc_card: EnrolledPcscCard, served: LiveServer,
        opensc_env: dict[str, str], tmp_path: Path) -> None:
    signed = sign_pdf(enrolled_pcsc_card, opensc_env, tmp_path)
    certificate = enrolled_pcsc_card.sign

    # Our own check of what pyHanko wrote: the CMS embeds the card's signing certificate as
    # issued by the CA, and its signature verifies with that certificate's key.
    covered, signed_data = embedded_signature(signed.read_bytes())
    embedded = [c.chosen.dump() for c in signed_data["certificates"]]
    assert certificate.public_bytes(Encoding.DER) in embedded
    signer = signed_data["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0].native for a in signer["signed_attrs"]}
    assert attrs["message_digest"] == hashlib.sha256(covered).digest()
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    signed_attrs = signer["signed_attrs"].dump()
    public.verify(signer["signature"].native, b"\x31" + signed_attrs[1:],  # [0] → SET OF
                  padding.PKCS1v15(), hashes.SHA256())

    result = validate(signed, sign_root(served, tmp_path), opensc_env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
    assert f"Certificate SHA256 fingerprint: {fingerprint}" in output
    assert "The signer's certificate is trusted." in output
    assert "The signature is cryptographically sound." in output
    assert "The signature covers the entire file." in output
    assert "The signature is judged VALID." in output


def test_pyhanko_refuses_the_pdf_once_the_signing_certificate_is_revoked(
        enrolled_pcsc_card: EnrolledPcscCard, served: LiveServer,
        opensc_env: dict[str, str], tmp_path: Path) -> None:
    signed = sign_pdf(enrolled_pcsc_card, opensc_env, tmp_path)
    root = sign_root(served, tmp_path)
    services = served.services
    serial = format(enrolled_pcsc_card.sign.serial_number, "x")
    services.revocation.revoke(REVOKE, serial, RevocationReason.KEY_COMPROMISE)
    services.ocsp.refresh()
    view = services.certificates.show(READ_CERTIFICATE, serial)
    with services.uow() as uow:
        generation = uow.cas.current(CaKind.SIGN)
    assert generation is not None
    # The server's periodic publication would pick the revocation up within the delta
    # interval; publish now so that a CRL check does not depend on timing.
    services.crls.publish(services.crls.scope(CaKind.SIGN, generation.generation, view.shard))

    result = validate(signed, root, opensc_env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "The signer's certificate is revoked." in output
    assert "The signature is judged INVALID." in output
