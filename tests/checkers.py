"""Independent checkers used by the tests: pkilint (in-process) and the OpenSSL CLI.

pkilint's exit code is the number of findings at or above the threshold; the default threshold
(INFO) flags good certificates, so we use WARNING and expect none (docs/components.md).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.components import missing_component


@functools.cache
def _cert_validator() -> Any:
    from pkilint.pkix import certificate, extension, name

    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS,
                                               extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def pkilint_certificate(der: bytes) -> list[str]:
    """Findings of the generic PKIX certificate profile at WARNING or worse."""
    from pkilint import loader
    from pkilint.validation import ValidationFindingSeverity

    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "cert")
    results = _cert_validator().validate(doc.root)
    return [repr(f) for r in results for f in r.finding_descriptions
            if f.finding.severity <= ValidationFindingSeverity.WARNING]


def write_pem(path: Path, der: bytes) -> Path:
    path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
    return path


def openssl_verify(tmp: Path, root_der: bytes, leaf_der: bytes,
                   *extra: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        missing_component("the openssl CLI is not installed")
    root = write_pem(tmp / "root.pem", root_der)
    leaf = write_pem(tmp / "leaf.pem", leaf_der)
    return subprocess.run(["openssl", "verify", "-CAfile", str(root), *extra, str(leaf)],
                          capture_output=True, text=True, timeout=30, check=False)


def pkilint_cli(tmp: Path, tool: str, data: bytes, *options: str,
                suffix: str = ".der") -> subprocess.CompletedProcess[str]:
    """Run one of pkilint's command-line linters (a real process) on ``data``.

    Its exit code is the number of findings at or above ``-s``; callers pass ``-s WARNING``.
    """
    import sys

    exe = Path(sys.executable).parent / tool
    if not exe.exists():
        missing_component(f"pkilint's {tool} is not installed")
    path = tmp / f"lint-{tool}{suffix}"
    path.write_bytes(data)
    return subprocess.run([str(exe), "lint", *options, str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


def openssl(*args: str, stdin: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        missing_component("the openssl CLI is not installed")
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=timeout,
                          check=False, input=stdin)


def crl_pem(path: Path, der: bytes) -> Path:
    path.write_bytes(x509.load_der_x509_crl(der).public_bytes(Encoding.PEM))
    return path
