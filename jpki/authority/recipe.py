"""The key-ceremony recipe: parsed once into a validated, immutable object.

Boulder's habit (architecture §10): configuration is parsed once into a typed object whose fields
are checked at load time, so that a typo in an OID or a DN fails `jpki init`, not the first
issuance.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from jpki.errors import InvalidRecipe
from jpki.model import CaKind, CertKind

_ATTRIBUTES = {
    "C": NameOID.COUNTRY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
}


def name_from_pairs(pairs: list[tuple[str, str]] | list[list[str]]) -> x509.Name:
    """An x509.Name with one AVA per RDN, in the given order.

    cryptography encodes C as PrintableString and the other attributes as UTF8String by default,
    which is exactly the encoding of the real JPKI roots (reference §1.1).
    """
    attrs: list[x509.NameAttribute[str]] = []
    for pair in pairs:
        if len(pair) != 2:
            raise InvalidRecipe("a name attribute must be a [type, value] pair")
        kind, value = pair
        oid = _ATTRIBUTES.get(kind)
        if oid is None:
            raise InvalidRecipe(f"unknown name attribute type {kind!r}")
        if not value:
            raise InvalidRecipe(f"empty value for name attribute {kind}")
        attrs.append(x509.NameAttribute(oid, value))
    return x509.Name(attrs)


DEFAULT_CLIENT_SECRET_KEY_LABEL = "client-secret-mac"  # noqa: S105 - a key label, not a key


@dataclass(frozen=True)
class CaRecipe:
    kind: CaKind
    subject: x509.Name
    alt_name: x509.Name
    validity_years: int
    key_bits: int
    key_label_template: str
    crl_dp_ou: str

    def key_label(self, generation: int) -> str:
        return self.key_label_template.format(generation=generation, ca=self.kind.value)


@dataclass(frozen=True)
class ResponderRecipe:
    validity_days: int
    renew_before_days: int
    key_label_template: str

    def key_label(self, ca: CaKind, generation: int) -> str:
        return self.key_label_template.format(generation=generation, ca=ca.value)


@dataclass(frozen=True)
class CrlRecipe:
    full_interval: timedelta
    delta_interval: timedelta
    next_update_margin: timedelta
    expired_grace: timedelta


@dataclass(frozen=True)
class OcspRecipe:
    validity: timedelta
    max_live_signatures: int


@dataclass(frozen=True)
class Recipe:
    token_label: str
    audit_key_label: str
    cas: dict[CaKind, CaRecipe]
    responder: ResponderRecipe
    issuer_alt_name: x509.Name
    policies: dict[CertKind, x509.ObjectIdentifier]
    crl: CrlRecipe
    ocsp: OcspRecipe
    # The HMAC key of stored client secrets (jpki.access.client_secrets). Optional in the file, so
    # that
    # the recipes of deployments made before it keep loading; `jpki init` creates the key.
    client_secret_key_label: str = DEFAULT_CLIENT_SECRET_KEY_LABEL

    def ca(self, kind: CaKind) -> CaRecipe:
        return self.cas[kind]


def _require(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise InvalidRecipe(f"{where}: missing {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise InvalidRecipe(f"{where}.{key}: expected {kind.__name__}")
    return value


def _oid(text: str, where: str) -> x509.ObjectIdentifier:
    try:
        return x509.ObjectIdentifier(text)
    except ValueError as exc:
        raise InvalidRecipe(f"{where}: not an OID") from exc


def parse_recipe(data: dict[str, Any]) -> Recipe:
    token = _require(data, "token", dict, "recipe")
    audit = _require(data, "audit", dict, "recipe")
    ca_table = _require(data, "ca", dict, "recipe")
    cas: dict[CaKind, CaRecipe] = {}
    for kind in CaKind:
        where = f"ca.{kind.value}"
        t = _require(ca_table, kind.value, dict, "ca")
        years = _require(t, "validity_years", int, where)
        bits = _require(t, "key_bits", int, where)
        if not 1 <= years <= 30:
            raise InvalidRecipe(f"{where}.validity_years must be 1..30")
        if bits < 2048:
            raise InvalidRecipe(f"{where}.key_bits must be at least 2048")
        template = _require(t, "key_label", str, where)
        if "{generation" not in template:
            raise InvalidRecipe(f"{where}.key_label must contain {{generation}}")
        cas[kind] = CaRecipe(
            kind=kind,
            subject=name_from_pairs(_require(t, "subject", list, where)),
            alt_name=name_from_pairs(_require(t, "alt_name", list, where)),
            validity_years=years,
            key_bits=bits,
            key_label_template=template,
            crl_dp_ou=_require(t, "crl_dp_ou", str, where),
        )
    if cas[CaKind.SIGN].key_label(1) == cas[CaKind.AUTH].key_label(1):
        raise InvalidRecipe("the two CAs need distinct key labels")
    r = _require(data, "ocsp_responder", dict, "recipe")
    responder = ResponderRecipe(
        validity_days=_require(r, "validity_days", int, "ocsp_responder"),
        renew_before_days=_require(r, "renew_before_days", int, "ocsp_responder"),
        key_label_template=_require(r, "key_label", str, "ocsp_responder"),
    )
    if not 1 <= responder.validity_days <= 365:
        raise InvalidRecipe("ocsp_responder.validity_days must be 1..365")
    if not 0 <= responder.renew_before_days < responder.validity_days:
        raise InvalidRecipe("ocsp_responder.renew_before_days must be below validity_days")
    profile = _require(data, "profile", dict, "recipe")
    pol = _require(profile, "policies", dict, "profile")
    policies = {k: _oid(_require(pol, k.value, str, "profile.policies"), f"profile.policies.{k}")
                for k in CertKind}
    if len(set(policies.values())) != len(policies):
        # Mobile certificates must be distinguishable from card ones by policy (reference §2).
        raise InvalidRecipe("profile.policies: every certificate kind needs its own policy OID")
    c = _require(data, "crl", dict, "recipe")
    crl = CrlRecipe(
        full_interval=timedelta(hours=_require(c, "full_interval_hours", int, "crl")),
        delta_interval=timedelta(minutes=_require(c, "delta_interval_minutes", int, "crl")),
        next_update_margin=timedelta(minutes=_require(c, "next_update_margin_minutes", int,
                                                      "crl")),
        expired_grace=timedelta(days=_require(c, "expired_grace_days", int, "crl")),
    )
    if not (timedelta(minutes=1) <= crl.delta_interval < crl.full_interval
            <= timedelta(days=7)):
        raise InvalidRecipe("crl: need 1 minute <= delta interval < full interval <= 7 days")
    clients = data.get("clients", {})
    if not isinstance(clients, dict):
        raise InvalidRecipe("clients: expected a table")
    client_key = clients.get("key_label", DEFAULT_CLIENT_SECRET_KEY_LABEL)
    if not isinstance(client_key, str) or not client_key:
        raise InvalidRecipe("clients.key_label: expected a non-empty string")
    audit_key = _require(audit, "key_label", str, "audit")
    if client_key in {audit_key, *(r.key_label(1) for r in cas.values())}:
        # One key, one purpose: the audit chain's MACs must never double as secret hashes.
        raise InvalidRecipe("clients.key_label must differ from the audit and CA key labels")
    o = _require(data, "ocsp", dict, "recipe")
    ocsp = OcspRecipe(validity=timedelta(minutes=_require(o, "validity_minutes", int, "ocsp")),
                      max_live_signatures=_require(o, "max_live_signatures", int, "ocsp"))
    if not timedelta(minutes=2) <= ocsp.validity <= timedelta(days=7) or \
            not 1 <= ocsp.max_live_signatures <= 256:
        raise InvalidRecipe("ocsp: validity 2 minutes..7 days, max_live_signatures 1..256")
    return Recipe(
        crl=crl,
        ocsp=ocsp,
        token_label=_require(token, "label", str, "token"),
        audit_key_label=audit_key,
        client_secret_key_label=client_key,
        cas=cas,
        responder=responder,
        issuer_alt_name=name_from_pairs(_require(profile, "issuer_alt_name", list, "profile")),
        policies=policies,
    )


def default_recipe_path() -> Path:
    """The development PKI's recipe, shipped inside the package (``jpki/data/recipe.toml``) so
    that `jpki init` works from any installation, not only from a checkout."""
    return Path(__file__).resolve().parents[1] / "data" / "recipe.toml"


def load_recipe(path: Path | None = None) -> Recipe:
    path = path or default_recipe_path()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise InvalidRecipe(f"recipe not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRecipe(f"recipe is not valid TOML: {exc}") from exc
    return parse_recipe(data)
