"""The authorisation table and its grants (jpki.access.authz).

What each kind of principal may do is stated here kind by kind, from architecture §1 — the table
states it operation by operation, and the two must agree. A grant is made only by ``authorize``,
and a service takes only the grant of its own operation: refused by the type checker, and at
runtime for callers it does not check. The HTTP matrix (tests/api/test_http_auth.py) calls every
route as every kind of API client.
"""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from mypy import api as mypy_api

from api.composition import Services
from jpki.access.authz import TABLE, Grant, MunicipalityRule, Operation, allows, authorize
from jpki.access.principals import CLIENT_KINDS, Principal, PrincipalKind
from jpki.errors import InternalError, MissingScope, WrongRole
from jpki.model import ClientRole, RevocationReason

K, Op = PrincipalKind, Operation
REPO = Path(__file__).resolve().parents[3]

OPERATOR = Principal(actor="client:op", kind=K.OPERATOR)
KIYOSE_OPERATOR = Principal(actor="client:kiyose", kind=K.OPERATOR,
                            scopes=frozenset({"municipality:132217"}))
LOCAL = Principal.local_operator("pytest")

# architecture §1, kind by kind.
MAY = {
    # Municipal operators keep the registry, revoke on request, register relying parties and
    # watch the service.
    K.OPERATOR: {Op.RESIDENT_REGISTER, Op.RESIDENT_READ, Op.RESIDENT_FIND, Op.RESIDENT_BASIC4_READ,
                 Op.RESIDENT_EVENT,
                 Op.DV_REQUEST, Op.DV_DECIDE, Op.CARD_REGISTER, Op.CARD_EVENT, Op.CERTIFICATE_READ,
                 Op.CERTIFICATE_REVOKE, Op.RP_REGISTER, Op.RP_READ, Op.RP_ROTATE_SECRET,
                 Op.RP_SET_STATUS, Op.METRICS_READ, Op.JOBS_READ, Op.STATISTICS_READ,
                 Op.CLIENT_READ, Op.CLIENT_SET_STATUS, Op.CONSOLE_ACCOUNT_CREATE,
                 Op.CONSOLE_ACCOUNT_READ, Op.CONSOLE_ACCOUNT_SET_STATUS,
                 # a station's undelivered certificate, when its confirmation never came
                 Op.DELIVERY_CONFIRM, Op.DELIVERY_ABANDON,
                 # work for a station, and its progress (jpki.registry.station_tasks)
                 Op.STATION_TASK_CREATE, Op.STATION_TASK_READ,
                 # the expiry notices' list of their municipality, and the sweep's reports
                 Op.EXPIRY_NOTICES, Op.MOBILE_SWEEP_READ,
                 Op.MUNICIPALITY_READ, Op.MUNICIPALITY_ADD, Op.MUNICIPALITY_RENAME,
                 Op.MUNICIPALITY_MERGE},
    # Stations enrol at the counter; a designated post office does what a counter does, for the
    # municipalities that designated it.
    K.STATION: {Op.RESIDENT_READ, Op.CERTIFICATE_ISSUE, Op.CERTIFICATE_RENEW,
                Op.CERTIFICATE_ISSUE_BATCH, Op.CERTIFICATE_READ, Op.PROOFING_RECORD, Op.PIN_RESET,
                Op.DELIVERY_CONFIRM, Op.DELIVERY_ABANDON, Op.STATION_TASK_WORK},
    K.CALL_CENTRE: {Op.MOBILE_HOLD, Op.MOBILE_HOLD_CERTIFICATE, Op.CALLER_VERIFY,
                    Op.CARD_LOSS_REPORT},
    K.RELYING_PARTY: {Op.RP_PING, Op.RP_STATUS, Op.RP_LINKAGE, Op.RP_BASIC4},
    K.HOLDER: {Op.MOBILE_APPLY, Op.MOBILE_REVOKE, Op.MOBILE_LIFT_SUSPENSION},
    # The CA's operator at the CLI: what the CLI offers — never the counter's proofing, the call
    # centre's holds, a holder's or a relying party's calls, or the HTTP-only views.
    K.LOCAL_OPERATOR: {Op.RESIDENT_REGISTER, Op.RESIDENT_READ, Op.RESIDENT_FIND,
                       Op.RESIDENT_BASIC4_READ,
                       Op.RESIDENT_EVENT, Op.DV_REQUEST, Op.DV_DECIDE, Op.CARD_REGISTER,
                       Op.CARD_EVENT,
                       Op.CERTIFICATE_ISSUE, Op.CERTIFICATE_RENEW, Op.CERTIFICATE_ISSUE_BATCH,
                       Op.CERTIFICATE_READ, Op.CERTIFICATE_REVOKE, Op.RP_REGISTER, Op.RP_READ,
                       Op.RP_ROTATE_SECRET, Op.RP_SET_STATUS, Op.CA_CEREMONY, Op.CA_ROLLOVER,
                       Op.KEY_REPLICATION,
                       Op.RESPONDERS_RENEW, Op.CLIENT_CREATE, Op.CLIENT_SET_STATUS,
                       Op.CONSOLE_ACCOUNT_CREATE, Op.CONSOLE_ACCOUNT_SET_STATUS,
                       Op.CONSOLE_ACCOUNT_READ, Op.CLIENT_READ,
                       Op.PENDING_ABANDON, Op.DELIVERY_SWEEP, Op.MOBILE_SWEEP,
                       Op.STATISTICS_READ, Op.EXPIRY_NOTICES, Op.MOBILE_SWEEP_READ,
                       Op.MUNICIPALITY_READ, Op.MUNICIPALITY_ADD, Op.MUNICIPALITY_RENAME,
                       Op.MUNICIPALITY_MERGE},
    K.SYSTEM_JOB: {Op.RESPONDERS_RENEW, Op.PENDING_ABANDON, Op.DELIVERY_SWEEP, Op.MOBILE_SWEEP},
}
MAY[K.POST_OFFICE] = MAY[K.STATION]


def test_the_table_gives_each_kind_its_part_and_no_more() -> None:
    assert set(MAY) == set(PrincipalKind)
    for kind, operations in MAY.items():
        assert {op for op, rule in TABLE.items() if kind in rule.kinds} == operations, kind
    # Every operation is someone's, and no kind may do everything.
    assert set().union(*MAY.values()) == set(Operation) == set(TABLE)
    assert all(ops != set(Operation) for ops in MAY.values())


@pytest.mark.parametrize("kind", list(PrincipalKind))
def test_authorize_grants_exactly_what_the_table_says(kind: PrincipalKind) -> None:
    principal = Principal(actor="x", kind=kind, scopes=frozenset({"status", "linkage",
                                                                 "basic4"}))
    for operation in Operation:
        if operation in MAY[kind]:
            grant = authorize(principal, operation)
            assert (grant.operation, grant.principal) == (operation, principal)
            assert allows(principal, operation)
        else:
            with pytest.raises(WrongRole) as refused:
                authorize(principal, operation)
            role = kind.client_role.value if kind.client_role else kind.value
            assert refused.value.context == {"role": role}, operation
            assert not allows(principal, operation)


def test_a_relying_party_needs_the_scope_of_each_call() -> None:
    rp = Principal(actor="client:rp", kind=K.RELYING_PARTY, scopes=frozenset({"status"}))
    authorize(rp, Op.RP_STATUS)
    authorize(rp, Op.RP_PING)  # admission alone needs no scope
    for operation, scope in ((Op.RP_LINKAGE, "linkage"), (Op.RP_BASIC4, "basic4")):
        with pytest.raises(MissingScope) as refused:
            authorize(rp, operation)
        assert refused.value.context == {"scope": scope}
        assert not allows(rp, operation)


def test_relying_parties_are_registered_nationally() -> None:
    for operation in (Op.RP_REGISTER, Op.RP_READ, Op.RP_ROTATE_SECRET, Op.RP_SET_STATUS):
        assert TABLE[operation].municipality is MunicipalityRule.NATIONAL
        authorize(OPERATOR, operation)
        authorize(LOCAL, operation)
        with pytest.raises(MissingScope) as refused:
            authorize(KIYOSE_OPERATOR, operation)
        assert refused.value.context == {"scope": "national"}


def test_the_registry_of_municipalities_is_changed_nationally() -> None:
    for operation in (Op.MUNICIPALITY_ADD, Op.MUNICIPALITY_RENAME, Op.MUNICIPALITY_MERGE):
        assert TABLE[operation].municipality is MunicipalityRule.NATIONAL
        authorize(OPERATOR, operation)
        authorize(LOCAL, operation)
        with pytest.raises(MissingScope) as refused:
            authorize(KIYOSE_OPERATOR, operation)
        assert refused.value.context == {"scope": "national"}
    authorize(KIYOSE_OPERATOR, Op.MUNICIPALITY_READ)  # the list is no one's personal data


def test_the_municipality_rule_applies_to_the_resident_the_service_loaded() -> None:
    event = authorize(KIYOSE_OPERATOR, Op.RESIDENT_EVENT)
    event.require_municipality("132217")
    with pytest.raises(MissingScope) as refused:
        event.require_municipality("131016")
    assert refused.value.context == {"scope": "municipality:131016"}  # the scope, not the person
    with pytest.raises(MissingScope):
        authorize(KIYOSE_OPERATOR, Op.RESIDENT_EVENT, municipality="131016")
    # Without a municipality scope: every municipality (a prefecture-wide operator, the CLI) …
    for principal in (OPERATOR, LOCAL):
        authorize(principal, Op.RESIDENT_EVENT).require_municipality("131016")
    # … except a post office, which acts only where it was designated.
    nowhere = Principal(actor="client:po", kind=K.POST_OFFICE)
    with pytest.raises(MissingScope):
        authorize(nowhere, Op.PROOFING_RECORD).require_municipality("132217")
    kiyose_po = Principal(actor="client:po", kind=K.POST_OFFICE,
                          scopes=frozenset({"municipality:132217"}))
    authorize(kiyose_po, Op.PROOFING_RECORD).require_municipality("132217")
    # An operation the table binds to no municipality: asking is the code's mistake.
    with pytest.raises(InternalError):
        authorize(LOCAL, Op.CA_ROLLOVER).require_municipality("132217")


def test_only_authorize_makes_a_grant() -> None:
    from jpki.access import authz

    with pytest.raises(TypeError):
        Grant(object(), LOCAL, Op.CA_CEREMONY)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Grant(authz._Key(), LOCAL, Op.CA_CEREMONY)  # a key of its own is not the key
    grant = authorize(LOCAL, Op.CA_CEREMONY)
    assert grant.require(Op.CA_CEREMONY, Op.CA_ROLLOVER) is LOCAL
    with pytest.raises(InternalError):
        grant.require(Op.CA_ROLLOVER)
    assert "pytest" in repr(grant) and "ca.ceremony" in repr(grant)


def test_api_clients_are_the_five_client_kinds() -> None:
    made = {Principal.client("c", role, station_kind=kind).kind
            for role in ClientRole for kind in (None, "counter", "post_office")
            if kind is None or role is ClientRole.STATION}
    assert made == CLIENT_KINDS == {K.OPERATOR, K.STATION, K.POST_OFFICE, K.CALL_CENTRE,
                                    K.RELYING_PARTY}
    po = Principal.client("c", ClientRole.STATION, station_kind="post_office")
    assert (po.kind, po.role_name, po.at_counter) == (K.POST_OFFICE, "station", True)
    assert Principal.system_job("maintenance").actor == "service:maintenance"
    assert Principal.holder("r1").actor == "holder:r1"


@pytest.mark.hsm
def test_a_service_refuses_the_grant_of_another_operation(services: Services) -> None:
    """For callers the type checker does not see: the service checks the grant's operation
    before it reads or changes anything."""
    with services.uow() as uow:
        head = uow.audit.head()
    read: Any = authorize(LOCAL, Op.CERTIFICATE_READ)
    with pytest.raises(InternalError):
        services.revocation.revoke(read, "abcdef", RevocationReason.KEY_COMPROMISE)
    with pytest.raises(InternalError):
        services.residents.register(read, name="x y", birth_date=date(1990, 1, 2), sex=1,
                                    address="東京都清瀬市", municipality_code="132217")
    with services.uow() as uow:
        assert uow.audit.head() == head


def test_an_unauthorised_call_path_does_not_type_check(tmp_path: Path) -> None:
    """mypy (strict, as the project runs it) refuses a service call with a principal instead of
    a grant, or with the grant of another operation, and accepts the right grant."""
    snippet = tmp_path / "calls.py"
    snippet.write_text(textwrap.dedent("""
        from typing import Literal

        from jpki.access.authz import Grant, Operation, authorize
        from jpki.access.principals import Principal
        from jpki.registry.residents import ResidentService


        def calls(residents: ResidentService, who: Principal) -> None:
            residents.get(who, "r")  # line 10: a principal
            residents.get(authorize(who, Operation.RESIDENT_EVENT), "r")  # line 11: another
            residents.get(authorize(who, Operation.RESIDENT_READ), "r")
            read: Grant[Literal[Operation.RESIDENT_READ]] = authorize(who,
                                                                      Operation.RESIDENT_READ)
            residents.get(read, "r")
            both: Grant[Literal[Operation.RESIDENT_READ, Operation.RESIDENT_EVENT]] = read
            residents.get(both, "r")  # line 17: may be either
    """))
    out, err, status = mypy_api.run([
        "--strict", "--no-error-summary", "--follow-imports=silent",
        "--cache-dir", str(tmp_path / "cache"), "--config-file", str(REPO / "pyproject.toml"),
        str(snippet)])
    assert status == 1, (out, err)
    lines = sorted(int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line)
    assert lines == [10, 11, 17], out


def test_each_refusal_says_what_is_missing_in_words_of_its_own() -> None:
    """The detail reaches the client in the problem document: it names the role, scope or
    operation that decided, never the resident (non-negotiable 7)."""
    def detail(call: Any, *args: Any, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        with pytest.raises((WrongRole, MissingScope, InternalError)) as refused:
            call(*args, **kwargs)
        return refused.value.detail, refused.value.context

    station = Principal(actor="client:station", kind=K.STATION)
    assert detail(authorize, station, Op.CERTIFICATE_REVOKE) == (
        f"role {station.role_name} may not make this call", {"role": station.role_name})
    rp = Principal(actor="client:rp", kind=K.RELYING_PARTY)
    assert detail(authorize, rp, Op.RP_BASIC4) == ("this call needs the 'basic4' scope",
                                                   {"scope": "basic4"})
    assert detail(authorize, KIYOSE_OPERATOR, Op.RP_REGISTER) == (
        "this call needs an operator without municipality scopes", {"scope": "national"})
    event = authorize(KIYOSE_OPERATOR, Op.RESIDENT_EVENT)
    assert detail(event.require_municipality, "131016") == (
        "this client is not scoped to the resident's municipality",
        {"scope": "municipality:131016"})
    rollover = authorize(LOCAL, Op.CA_ROLLOVER)
    assert detail(rollover.require_municipality, "132217") == (
        "ca.rollover is not bound to a municipality", {})
    ceremony = authorize(LOCAL, Op.CA_CEREMONY)
    assert detail(ceremony.require, Op.CA_ROLLOVER, Op.RESPONDERS_RENEW) == (
        "a grant for ca.ceremony cannot make ca.rollover, ca.responders_renew", {})
    with pytest.raises(TypeError, match=r"^a Grant is made by jpki\.access\.authz\.authorize "
                                        r"only$"):
        Grant(object(), LOCAL, Op.CA_CEREMONY)  # type: ignore[arg-type]
