"""Who is asking: the caller every service call carries, as one of a closed set of kinds.

Each kind is named for who it is, never a wildcard: the CA's local operator (the CLI) and the
maintenance jobs are kinds of their own, and what each kind may do is written out, operation by
operation, in the table of jpki.access.authz (architecture §2.6). A principal only says who is
asking; whether it may is decided there, by :func:`jpki.access.authz.authorize`.

Scopes narrow what a client may act on (non-negotiable 7): operators and stations may be scoped
to municipalities with ``municipality:<code>`` scopes — without any, an operator or a counter
acts for every municipality (a prefecture-wide or national operator), while a designated post
office acts only for the municipalities that designated it; relying parties carry service
scopes (``status``, ``linkage``, ``basic4``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from jpki.model import ClientRole

MUNICIPALITY_SCOPE = "municipality:"
RP_SCOPES = frozenset({"status", "linkage", "basic4"})
CHAIN_SCOPE = "chain:"  # a kiosk's operator chain (architecture §7.1)
POST_OFFICE_STATION = "post_office"  # ApiClient.station_kind of a designated post office


class PrincipalKind(StrEnum):
    # API clients (HTTP Basic, jpki.access.clients)
    OPERATOR = "operator"  # municipal (or national) operator
    STATION = "station"  # enrolment station at a municipal counter
    POST_OFFICE = "post_office"  # a station at a post office a municipality designated
    CALL_CENTRE = "callcenter"  # puts lost phones' certificates on hold
    RELYING_PARTY = "rp"  # 署名検証者, under a registered relying party
    # The signing-password reset with an online password (architecture §7.1)
    KIOSK = "kiosk"  # a convenience-store multi-copy machine, of an operator chain
    HOLDER_APP = "holder_app"  # an installed holder app, with a registered key
    # Authenticated otherwise
    HOLDER = "holder"  # a card holder, by a CMS signature with their card's or phone's key
    LOCAL_OPERATOR = "local_operator"  # the CA's operator at the CLI (architecture §1)
    SYSTEM_JOB = "system_job"  # the service's own maintenance jobs (api.jobs)

    @property
    def client_role(self) -> ClientRole | None:
        """The API client role this kind authenticates with; None for the kinds that are not
        API clients."""
        return _CLIENT_ROLES.get(self)


_CLIENT_ROLES = {
    PrincipalKind.OPERATOR: ClientRole.OPERATOR,
    PrincipalKind.STATION: ClientRole.STATION,
    PrincipalKind.POST_OFFICE: ClientRole.STATION,
    PrincipalKind.CALL_CENTRE: ClientRole.CALLCENTER,
    PrincipalKind.RELYING_PARTY: ClientRole.RP,
    PrincipalKind.KIOSK: ClientRole.KIOSK,
    PrincipalKind.HOLDER_APP: ClientRole.HOLDER_APP,
}
CLIENT_KINDS = frozenset(_CLIENT_ROLES)  # the kinds an HTTP client can authenticate as


@dataclass(frozen=True)
class Principal:
    actor: str  # what the audit log records: "client:<id>", "cli:<user>", "holder:<resident>"
    kind: PrincipalKind
    scopes: frozenset[str] = frozenset()
    relying_party: str | None = None  # an RP client's registered relying party

    @classmethod
    def client(cls, client_id: str, role: ClientRole, scopes: frozenset[str] = frozenset(),
               *, station_kind: str | None = None,
               relying_party: str | None = None) -> Principal:
        """An authenticated API client; a station's kind (counter or post office) decides its
        principal kind."""
        if role is ClientRole.STATION:
            kind = PrincipalKind.POST_OFFICE if station_kind == POST_OFFICE_STATION \
                else PrincipalKind.STATION
        else:
            kind = next(k for k, r in _CLIENT_ROLES.items() if r is role)
        return cls(actor=f"client:{client_id}", kind=kind, scopes=scopes,
                   relying_party=relying_party)

    @classmethod
    def local_operator(cls, user: str) -> Principal:
        """Whoever runs the CLI on the machine that holds the data directory (architecture
        §1)."""
        return cls(actor=f"cli:{user}", kind=PrincipalKind.LOCAL_OPERATOR)

    @classmethod
    def system_job(cls, name: str) -> Principal:
        """The service itself, doing the housekeeping nobody asks for (api.app.maintenance)."""
        return cls(actor=f"service:{name}", kind=PrincipalKind.SYSTEM_JOB)

    @classmethod
    def holder(cls, resident_id: str) -> Principal:
        """A card holder whose request verified as signed by their own card or phone key
        (jpki.mobile.service)."""
        return cls(actor=f"holder:{resident_id}", kind=PrincipalKind.HOLDER)

    @property
    def role_name(self) -> str:
        """The name a refusal reports: the client's role, or the kind when not a client."""
        role = self.kind.client_role
        return role.value if role is not None else self.kind.value

    @property
    def at_counter(self) -> bool:
        """A station (municipal counter or post office): its issuance consumes an identity
        proofing and its certificates wait for a confirmed delivery (reference §5)."""
        return self.kind in (PrincipalKind.STATION, PrincipalKind.POST_OFFICE)

    @property
    def client_id(self) -> str | None:
        """The API client's id, for a principal that is one."""
        return self.actor.removeprefix("client:") if self.actor.startswith("client:") else None

    @property
    def chain(self) -> str | None:
        """A kiosk's operator chain (its one ``chain:<name>`` scope)."""
        return next((s[len(CHAIN_SCOPE):] for s in self.scopes if s.startswith(CHAIN_SCOPE)),
                    None)

    @property
    def municipalities(self) -> frozenset[str]:
        return frozenset(s[len(MUNICIPALITY_SCOPE):] for s in self.scopes
                         if s.startswith(MUNICIPALITY_SCOPE))
