"""Authorisation as a table: which kinds of principal may make each operation, with which scope,
for which municipality (architecture §2.6, §10.4; non-negotiable 7).

Every operation a service offers to a caller is an :class:`Operation`, and :data:`TABLE` says,
for each, the principal kinds allowed (jpki.access.principals.PrincipalKind — no kind stands for
"everyone"), the scope a client must hold, and the municipality rule. :func:`authorize` is the
only place that decides, and the only maker of a :class:`Grant`; a service method takes the
grant of its operation as its first argument (``Grant[Literal[Operation.X]]``), so a call path
that skipped the decision, or made it for another operation, does not type-check — and a
service checks the grant's operation at runtime too (:meth:`Grant.require`), for callers that
are not type-checked.

The municipality rule of an operation on a resident cannot always be decided before the
service has loaded the resident: the service then asks the grant
(:meth:`Grant.require_municipality`), which applies the table's rule.

The HTTP routes name their operation (api.deps.authorized), and the authorisation matrix test
(tests/api/test_http_auth.py) is generated from this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Generic

from typing_extensions import TypeVar

from jpki.access.principals import MUNICIPALITY_SCOPE, Principal, PrincipalKind
from jpki.errors import InternalError, MissingScope, WrongRole


class Operation(StrEnum):
    # the resident registry (operators)
    RESIDENT_REGISTER = "resident.register"
    RESIDENT_READ = "resident.read"
    RESIDENT_FIND = "resident.find"  # by name or reading and date of birth, never a list
    RESIDENT_BASIC4_READ = "resident.basic4_read"  # the basic 4 information in the answer
    RESIDENT_EVENT = "resident.event"
    DV_REQUEST = "resident.dv_request"  # ask to set or lift DV support measures …
    DV_DECIDE = "resident.dv_decide"  # … which a second person, a supervisor, decides
    CARD_REGISTER = "card.register"
    CARD_EVENT = "card.event"
    # certificates
    CERTIFICATE_ISSUE = "certificate.issue"
    CERTIFICATE_RENEW = "certificate.renew"
    CERTIFICATE_ISSUE_BATCH = "certificate.issue_batch"
    CERTIFICATE_READ = "certificate.read"
    CERTIFICATE_REVOKE = "certificate.revoke"
    # the counter (stations)
    PROOFING_RECORD = "proofing.record"
    PIN_RESET = "pin.reset"
    DELIVERY_CONFIRM = "delivery.confirm"
    DELIVERY_ABANDON = "delivery.abandon"
    STATION_TASK_CREATE = "station_task.create"  # a clerk gives a station work …
    STATION_TASK_READ = "station_task.read"  # … follows it …
    STATION_TASK_WORK = "station_task.work"  # … which the station claims and reports on
    # mobile certificates
    MOBILE_APPLY = "mobile.apply"
    MOBILE_REVOKE = "mobile.revoke"
    MOBILE_LIFT_SUSPENSION = "mobile.lift_suspension"
    MOBILE_HOLD = "mobile.hold"
    MOBILE_HOLD_CERTIFICATE = "mobile.hold_certificate"
    # the call centre: who is calling, and a lost card reported by phone
    CALLER_VERIFY = "callcentre.verify_caller"
    CARD_LOSS_REPORT = "card.loss_report"
    # relying parties: their registration, and their calls
    RP_REGISTER = "rp.register"
    RP_READ = "rp.read"
    RP_ROTATE_SECRET = "rp.rotate_secret"  # noqa: S105 - an operation's name, not a secret
    RP_SET_STATUS = "rp.set_status"
    RP_PING = "rp.ping"
    RP_STATUS = "rp.status"
    RP_LINKAGE = "rp.linkage"
    RP_BASIC4 = "rp.basic4"
    # the CA and its clients
    CA_CEREMONY = "ca.ceremony"
    CA_ROLLOVER = "ca.rollover"
    RESPONDERS_RENEW = "ca.responders_renew"
    KEY_REPLICATION = "ca.key_replication"
    CLIENT_CREATE = "client.create"
    CLIENT_READ = "client.read"
    CLIENT_SET_STATUS = "client.set_status"
    # the operator console's accounts (jpki.access.console_accounts)
    CONSOLE_ACCOUNT_CREATE = "console.account_create"
    CONSOLE_ACCOUNT_READ = "console.account_read"
    CONSOLE_ACCOUNT_SET_STATUS = "console.account_set_status"
    # the municipality registry (jpki.registry.municipalities)
    MUNICIPALITY_READ = "municipality.read"
    MUNICIPALITY_ADD = "municipality.add"
    MUNICIPALITY_RENAME = "municipality.rename"
    MUNICIPALITY_MERGE = "municipality.merge"
    # housekeeping
    PENDING_ABANDON = "housekeeping.abandon_pending"
    DELIVERY_SWEEP = "housekeeping.sweep_undelivered"
    MOBILE_SWEEP = "housekeeping.mobile_sweep"
    # expiry notices (有効期限通知書): who must be told, per municipality
    EXPIRY_NOTICES = "notices.expiry"
    # watching the service
    STATISTICS_READ = "service.statistics"
    METRICS_READ = "service.metrics"
    JOBS_READ = "service.jobs"
    MOBILE_SWEEP_READ = "service.mobile_sweeps"


class MunicipalityRule(StrEnum):
    NONE = "none"  # not bound to a municipality
    # The resident's municipality must be one of the caller's municipality scopes; a caller
    # without any acts for every municipality, except a post office, which acts only where it
    # was designated.
    RESIDENT = "resident"
    # Only a caller without municipality scopes (national): a municipality's operators do not
    # certify businesses (architecture §6.1).
    NATIONAL = "national"


@dataclass(frozen=True)
class Rule:
    kinds: frozenset[PrincipalKind]
    scope: str | None = None  # a scope the client must hold
    municipality: MunicipalityRule = MunicipalityRule.NONE


K = PrincipalKind
_REGISTRY = frozenset({K.OPERATOR, K.LOCAL_OPERATOR})
_READERS = frozenset({K.OPERATOR, K.STATION, K.POST_OFFICE, K.LOCAL_OPERATOR})
_ISSUERS = frozenset({K.STATION, K.POST_OFFICE, K.LOCAL_OPERATOR})
_COUNTER = frozenset({K.STATION, K.POST_OFFICE})
_HOUSEKEEPING = frozenset({K.SYSTEM_JOB, K.LOCAL_OPERATOR})
_LOCAL = frozenset({K.LOCAL_OPERATOR})
R = MunicipalityRule

# The local operator holds the data directory, and with it the HSM PIN and every power of the
# CA (architecture §1); it is listed where the CLI offers the operation, and only there.
TABLE: Final[Mapping[Operation, Rule]] = MappingProxyType({
    # Operators keep the registry of their municipalities (architecture §1, §4.2, §4.3).
    Operation.RESIDENT_REGISTER: Rule(_REGISTRY, municipality=R.RESIDENT),
    # Stations read the record they enrol, without its basic 4 information.
    Operation.RESIDENT_READ: Rule(_READERS, municipality=R.RESIDENT),
    Operation.RESIDENT_BASIC4_READ: Rule(_REGISTRY, municipality=R.RESIDENT),
    # A search looks only within the caller's municipalities (every one for a national
    # operator): the service narrows the query to them instead of checking each answer.
    Operation.RESIDENT_FIND: Rule(_REGISTRY),
    Operation.RESIDENT_EVENT: Rule(_REGISTRY, municipality=R.RESIDENT),
    # DV support measures take two people (jpki.registry.dv_support): the resident's counter
    # asks, a national operator (the console's supervisor) who did not ask decides.
    Operation.DV_REQUEST: Rule(_REGISTRY, municipality=R.RESIDENT),
    Operation.DV_DECIDE: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.CARD_REGISTER: Rule(_REGISTRY, municipality=R.RESIDENT),
    Operation.CARD_EVENT: Rule(_REGISTRY, municipality=R.RESIDENT),
    # Card certificates are issued at the window after identity proofing (reference §5); the
    # CA's operator issues from the CLI without one.
    Operation.CERTIFICATE_ISSUE: Rule(_ISSUERS, municipality=R.RESIDENT),
    Operation.CERTIFICATE_RENEW: Rule(_ISSUERS, municipality=R.RESIDENT),
    Operation.CERTIFICATE_ISSUE_BATCH: Rule(_ISSUERS, municipality=R.RESIDENT),
    Operation.CERTIFICATE_READ: Rule(_READERS, municipality=R.RESIDENT),
    Operation.CERTIFICATE_REVOKE: Rule(_REGISTRY, municipality=R.RESIDENT),
    # Proofing, PIN resets and delivery happen at the counter and nowhere else (reference §5).
    Operation.PROOFING_RECORD: Rule(_COUNTER, municipality=R.RESIDENT),
    Operation.PIN_RESET: Rule(_COUNTER, municipality=R.RESIDENT),
    # A clerk queues work for a station of the resident's municipality and follows it; the
    # station claims its own and reports (jpki.registry.station_tasks; the station's calls to
    # record, issue and deliver are authorised as ever).
    Operation.STATION_TASK_CREATE: Rule(frozenset({K.OPERATOR}), municipality=R.RESIDENT),
    Operation.STATION_TASK_READ: Rule(frozenset({K.OPERATOR}), municipality=R.RESIDENT),
    Operation.STATION_TASK_WORK: Rule(_COUNTER),
    # The station that issued a certificate confirms or abandons its delivery; an operator of
    # the resident's municipality (the console's counter clerk, a person at that counter) may
    # too, when the station's own confirmation never came — after the station read the card
    # (jpki.registry.counter checks which station, architecture §3.5). Proofing stays the
    # station's: a proofing record is bound to the station that consumes it.
    Operation.DELIVERY_CONFIRM: Rule(_COUNTER | {K.OPERATOR}, municipality=R.RESIDENT),
    Operation.DELIVERY_ABANDON: Rule(_COUNTER | {K.OPERATOR}, municipality=R.RESIDENT),
    # The holder's own requests, authenticated by their signature (architecture §4.5).
    Operation.MOBILE_APPLY: Rule(frozenset({K.HOLDER})),
    Operation.MOBILE_REVOKE: Rule(frozenset({K.HOLDER})),
    Operation.MOBILE_LIFT_SUSPENSION: Rule(frozenset({K.HOLDER})),
    # The call centre may put mobile certificates on hold …
    Operation.MOBILE_HOLD: Rule(frozenset({K.CALL_CENTRE})),
    Operation.MOBILE_HOLD_CERTIFICATE: Rule(frozenset({K.CALL_CENTRE})),
    # It finds the caller's file only from what the caller can tell (card number and date of
    # birth), and puts a reported lost card's certificates on hold — as a counter would, at
    # any hour (jpki.registry.call_centre).
    Operation.CALLER_VERIFY: Rule(frozenset({K.CALL_CENTRE})),
    Operation.CARD_LOSS_REPORT: Rule(frozenset({K.CALL_CENTRE})),
    # Relying parties are registered nationally (architecture §6.1) …
    Operation.RP_REGISTER: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.RP_READ: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.RP_ROTATE_SECRET: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.RP_SET_STATUS: Rule(_REGISTRY, municipality=R.NATIONAL),
    # … and call within the scopes they were granted (architecture §6.2).
    Operation.RP_PING: Rule(frozenset({K.RELYING_PARTY})),
    Operation.RP_STATUS: Rule(frozenset({K.RELYING_PARTY}), scope="status"),
    Operation.RP_LINKAGE: Rule(frozenset({K.RELYING_PARTY}), scope="linkage"),
    Operation.RP_BASIC4: Rule(frozenset({K.RELYING_PARTY}), scope="basic4"),
    # The key ceremony and API clients belong to whoever holds the HSM PIN (architecture §1).
    Operation.CA_CEREMONY: Rule(_LOCAL),
    Operation.CA_ROLLOVER: Rule(_LOCAL),
    # Copying the CA's keys to another node's token (hsm.replication): the same holder, and the
    # token asks the security officer's PIN besides.
    Operation.KEY_REPLICATION: Rule(_LOCAL),
    Operation.RESPONDERS_RENEW: Rule(_HOUSEKEEPING),
    Operation.CLIENT_CREATE: Rule(_LOCAL),
    # A supervisor (a national operator) sees the clients and suspends or resumes stations;
    # the other clients' standing stays with the CLI (jpki.access.clients.set_status).
    Operation.CLIENT_READ: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.CLIENT_SET_STATUS: Rule(_REGISTRY, municipality=R.NATIONAL),
    # The console's people: supervisors are made at the CLI only (the first one, and every
    # other: a supervisor who could make one could approve their own DV request through it);
    # supervisors manage the counter clerks and call-centre agents
    # (jpki.access.console_accounts).
    Operation.CONSOLE_ACCOUNT_CREATE: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.CONSOLE_ACCOUNT_READ: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.CONSOLE_ACCOUNT_SET_STATUS: Rule(_REGISTRY, municipality=R.NATIONAL),
    # The registry of municipalities is national: one municipality's operators do not add,
    # rename or merge municipalities (architecture §5.6). The list is no one's personal data.
    Operation.MUNICIPALITY_READ: Rule(_REGISTRY),
    Operation.MUNICIPALITY_ADD: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.MUNICIPALITY_RENAME: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.MUNICIPALITY_MERGE: Rule(_REGISTRY, municipality=R.NATIONAL),
    # What must happen even if nobody asks (architecture §3.3, §4.5).
    Operation.PENDING_ABANDON: Rule(_HOUSEKEEPING),
    Operation.DELIVERY_SWEEP: Rule(_HOUSEKEEPING),
    Operation.MOBILE_SWEEP: Rule(_HOUSEKEEPING),
    # The expiry notices' mailing list holds names and addresses (reference §1.4: J-LIS mails
    # them 2-3 months ahead): a municipality's own operators (their clerks) for their
    # municipality, and national operators (supervisors) for any (jpki.registry.expiry_notices).
    Operation.EXPIRY_NOTICES: Rule(_REGISTRY, municipality=R.RESIDENT),
    # Watching the service over HTTP (api.routers.operations). The national figures are the
    # national operator's (a supervisor at the console; the CLI's operator holds them all).
    Operation.STATISTICS_READ: Rule(_REGISTRY, municipality=R.NATIONAL),
    Operation.METRICS_READ: Rule(frozenset({K.OPERATOR})),
    Operation.JOBS_READ: Rule(frozenset({K.OPERATOR})),
    # What the layered measures did (jpki.mobile.sweep): device ids and serials, nationally.
    Operation.MOBILE_SWEEP_READ: Rule(_REGISTRY, municipality=R.NATIONAL),
})

Op = TypeVar("Op", bound=Operation, covariant=True, default=Operation)
P = TypeVar("P", bound=Operation)


class _Key:
    """Only this module holds the key that makes a grant."""


_KEY: Final = _Key()


class Grant(Generic[Op]):
    """Proof that :func:`authorize` allowed ``principal`` to make ``operation``.

    The type parameter is the operation (``Grant[Literal[Operation.CARD_EVENT]]``); a grant for
    any of several operations is ``Grant[Literal[Operation.A, Operation.B]]``, and a bare
    ``Grant`` is any grant (for the steps that only need to know who acts)."""

    __slots__ = ("operation", "principal")

    def __init__(self, key: _Key, principal: Principal, operation: Op) -> None:
        if key is not _KEY:
            raise TypeError("a Grant is made by jpki.access.authz.authorize only")
        self.principal: Final = principal
        self.operation: Final[Op] = operation

    def __repr__(self) -> str:
        return f"Grant({self.operation.value} for {self.principal.actor})"

    @property
    def actor(self) -> str:
        return self.principal.actor

    def require(self, *operations: Operation) -> Principal:
        """The service's runtime check that it was given the grant of its own operation (the
        type checker already holds typed callers to it); the principal, who acts."""
        if self.operation not in operations:
            raise InternalError(f"a grant for {self.operation.value} cannot make "
                                f"{', '.join(o.value for o in operations)}")
        return self.principal

    def require_municipality(self, code: str) -> None:
        """The table's municipality rule, for a resident of municipality ``code`` the service
        has loaded."""
        if TABLE[self.operation].municipality is not MunicipalityRule.RESIDENT:
            # A service asking about a municipality the table does not bind its operation to:
            # the table and the code disagree, which is a bug, not the caller's fault.
            raise InternalError(f"{self.operation.value} is not bound to a municipality")
        principal = self.principal
        allowed = principal.municipalities
        if (allowed or principal.kind is PrincipalKind.POST_OFFICE) and code not in allowed:
            # Says which scope is missing, not who the resident is (non-negotiable 7).
            raise MissingScope("this client is not scoped to the resident's municipality",
                               scope=MUNICIPALITY_SCOPE + code)


def authorize(principal: Principal, operation: P, municipality: str | None = None) -> Grant[P]:
    """Decide by :data:`TABLE` whether ``principal`` may make ``operation`` (for a resident of
    ``municipality``, when known already): the grant, or WrongRole / MissingScope."""
    rule = TABLE[operation]
    if principal.kind not in rule.kinds:
        raise WrongRole(f"role {principal.role_name} may not make this call",
                        role=principal.role_name)
    if rule.scope is not None and rule.scope not in principal.scopes:
        raise MissingScope(f"this call needs the {rule.scope!r} scope", scope=rule.scope)
    if rule.municipality is MunicipalityRule.NATIONAL and principal.municipalities:
        raise MissingScope("this call needs an operator without municipality scopes",
                           scope="national")
    grant = Grant(_KEY, principal, operation)
    if municipality is not None:
        grant.require_municipality(municipality)
    return grant


def allows(principal: Principal, operation: Operation) -> bool:
    """Whether :data:`TABLE` lets ``principal`` make ``operation`` — for shaping an answer
    (what it may see), never for refusing a call (that is :func:`authorize`'s, which
    raises)."""
    rule = TABLE[operation]
    return principal.kind in rule.kinds and (rule.scope is None or rule.scope in principal.scopes)
