"""The public URLs this service writes into certificates and then serves.

One place for the URL scheme, because a URL baked into a certificate is a promise for its whole
lifetime: the API routes are built from the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from jpki.model import CaKind


@dataclass(frozen=True)
class ServiceUrls:
    base_url: str

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def crl(self, ca: CaKind, generation: int, shard: str) -> str:
        """A CRL shard of one CA generation (architecture §5; reference §1.2, §3.2)."""
        return f"{self.base_url}/crl/{ca.value}/g{generation:02d}/{shard}.crl"

    def crl_delta(self, ca: CaKind, generation: int, shard: str) -> str:
        """The delta CRL of a shard (RFC 5280 §5.2.6 Freshest CRL)."""
        return f"{self.base_url}/crl/{ca.value}/g{generation:02d}/{shard}-delta.crl"

    def arl(self, ca: CaKind, generation: int) -> str:
        return f"{self.base_url}/crl/{ca.value}/g{generation:02d}/arl.crl"

    def ocsp(self) -> str:
        return f"{self.base_url}/ocsp"

    def ca_issuers(self, ca: CaKind, generation: int) -> str:
        """RFC 5280 §4.2.2.1: caIssuers points at the DER certificate of the issuer."""
        return f"{self.base_url}/ca/{ca.value}/g{generation:02d}.cer"
