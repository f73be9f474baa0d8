"""The public URLs this service writes into certificates and then serves.

One place for the URL scheme, because a URL baked into a certificate is a promise for its whole
lifetime: the API routes are built from the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from jpki.model import CaKind

# Addresses a server binds to but no client can connect to: "every address of this machine".
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - recognised, never bound here
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _bare(host: str) -> str:
    return host.strip().strip("[]").lower()


def served_base_url(host: str, port: int) -> str:
    """The base URL of a server listening on ``host``:``port``, as written into certificates
    when JPKI_BASE_URL does not say otherwise.

    A wildcard bind address (``0.0.0.0``, ``::``) names no host a client can connect to: the
    loopback address of the same family stands in for it — right for clients on this machine
    only, which is why `jpki serve` then warns that JPKI_BASE_URL should name the public address.
    """
    bare = _bare(host)
    if bare in ("", "0.0.0.0"):  # noqa: S104 - the wildcard, mapped to loopback
        bare = "127.0.0.1"
    elif bare == "::":
        bare = "::1"
    return f"http://[{bare}]:{port}" if ":" in bare else f"http://{bare}:{port}"


def reaches(base_url: str, host: str, port: int) -> bool:
    """Whether ``base_url`` names the plain-HTTP server listening on ``host``:``port``.

    A wildcard bind address listens on every address of the machine, so only the port is
    compared; loopback names (localhost, 127.0.0.1, ::1) count as one. A proxy in front (https,
    another host or port) is a legitimate disagreement, but one the operator should know about.
    """
    parts = urlsplit(base_url)
    try:
        url_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if parts.scheme != "http" or url_port != port:
        return False
    bound, named = _bare(host), _bare(parts.hostname or "")
    return (bound in WILDCARD_HOSTS or named == bound
            or (named in _LOOPBACK_HOSTS and bound in _LOOPBACK_HOSTS))


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
