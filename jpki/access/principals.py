"""Who is asking: the authenticated caller every service call carries.

Authorisation has two parts (non-negotiable 7): the *role* decides which operations a caller may
make at all (checked at the API boundary for each route, and again by the service), the *scopes*
narrow what it may act on. Operators and stations may be scoped to municipalities with
``municipality:<code>`` scopes; without any such scope they act for every municipality (a
prefecture-wide or national operator). Relying parties carry service scopes (``status``,
``linkage``, ``basic4``).
"""

from __future__ import annotations

from dataclasses import dataclass

from jpki.errors import MissingScope, WrongRole
from jpki.model import ClientRole

MUNICIPALITY_SCOPE = "municipality:"
RP_SCOPES = frozenset({"status", "linkage", "basic4"})


@dataclass(frozen=True)
class Principal:
    actor: str  # what the audit log records: "client:<id>" or "cli:<user>"
    role: ClientRole | None  # None: the local operator CLI, which holds the data directory
    scopes: frozenset[str] = frozenset()
    relying_party: str | None = None  # an RP client's registered relying party

    @classmethod
    def local_operator(cls, user: str) -> Principal:
        return cls(actor=f"cli:{user}", role=None)

    def require_role(self, *roles: ClientRole) -> None:
        if self.role is not None and self.role not in roles:
            raise WrongRole(f"role {self.role.value} may not make this call",
                            role=self.role.value)

    def require_scope(self, scope: str) -> None:
        if self.role is not None and scope not in self.scopes:
            raise MissingScope(f"this call needs the {scope!r} scope", scope=scope)

    @property
    def municipalities(self) -> frozenset[str]:
        return frozenset(s[len(MUNICIPALITY_SCOPE):] for s in self.scopes
                         if s.startswith(MUNICIPALITY_SCOPE))

    def require_municipality(self, code: str) -> None:
        allowed = self.municipalities
        if self.role is not None and allowed and code not in allowed:
            # Says which scope is missing, not who the resident is.
            raise MissingScope("this client is not scoped to the resident's municipality",
                               scope=MUNICIPALITY_SCOPE + code)
