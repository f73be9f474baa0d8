"""The operator console's accounts (jpki.access.console_accounts): two factors, each code once,
lockout after repeated failures, sessions that end when idle, at sign-out and when the account
is suspended, a sealed TOTP secret, and the principal each role acts as.

Each test runs on SQLite and on PostgreSQL (the ``services`` fixture), on the real HSM.
"""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest

from api.composition import Services
from jpki.access.authz import Operation, authorize
from jpki.access.console_accounts import (
    IDLE_TIMEOUT,
    LOCK_FOR,
    MAX_FAILURES,
    ConsoleRole,
    NewAccount,
    SignIn,
)
from jpki.access.principals import Principal, PrincipalKind
from jpki.errors import ConsoleLoginFailed, ConsoleSessionEnded, InvalidInput, NotFound
from jpki.model import ClientStatus
from tests.conftest import FixedClock

pytestmark = pytest.mark.hsm

LOCAL = Principal.local_operator("pytest")
CREATE = authorize(LOCAL, Operation.CONSOLE_ACCOUNT_CREATE)
SET_STATUS = authorize(LOCAL, Operation.CONSOLE_ACCOUNT_SET_STATUS)
READ = authorize(LOCAL, Operation.CONSOLE_ACCOUNT_READ)
ADDRESS = "192.0.2.10"


def code(new: NewAccount, clock: FixedClock, steps: int = 0) -> str:
    return pyotp.TOTP(new.totp_secret).at(clock.now() + timedelta(seconds=30 * steps))


def sign_in(services: Services, new: NewAccount, clock: FixedClock, steps: int = 0) -> SignIn:
    first = services.console.begin(new.username, new.password, ADDRESS)
    assert first.stage == "password"
    return services.console.second_factor(first.token, code(new, clock, steps), ADDRESS)


def audit_actions(services: Services) -> list[str]:
    with services.uow() as uow:
        return [r.action for r in uow.audit.iterate() if r.action.startswith("console.")]


def test_two_factors_make_an_active_session_under_a_new_token(services: Services,
                                                              clock: FixedClock) -> None:
    new = services.console.create(CREATE, username="kiyose.clerk", role=ConsoleRole.CLERK,
                                  municipality_code="132217")
    first = services.console.begin(new.username, new.password, ADDRESS)
    with pytest.raises(ConsoleSessionEnded):  # the first factor alone opens nothing
        services.console.current(first.token)
    active = services.console.second_factor(first.token, code(new, clock), ADDRESS)
    assert active.token != first.token and active.stage == "active"
    assert services.console.current(active.token).user.username == "kiyose.clerk"
    with pytest.raises(ConsoleSessionEnded):  # the half-signed-in token is gone
        services.console.second_factor(first.token, code(new, clock), ADDRESS)
    assert audit_actions(services) == ["console.account_created", "console.signed_in"]


def test_a_clerk_acts_as_an_operator_of_its_municipality_an_agent_as_the_call_centre(
        services: Services) -> None:
    clerk = services.console.create(CREATE, username="clerk", role=ConsoleRole.CLERK,
                                    municipality_code="132217")
    agent = services.console.create(CREATE, username="agent", role=ConsoleRole.AGENT)
    boss = services.console.create(CREATE, username="boss", role=ConsoleRole.SUPERVISOR)
    by_name = {a.username: a for a in services.console.accounts(READ)}
    assert by_name["clerk"].municipality_code == "132217"
    from jpki.access.console_accounts import _user

    clerk_p = _user(by_name[clerk.username]).principal
    assert clerk_p.kind is PrincipalKind.OPERATOR and clerk_p.municipalities == {"132217"}
    assert clerk_p.actor == "console:clerk"
    assert _user(by_name[agent.username]).principal.kind is PrincipalKind.CALL_CENTRE
    boss_p = _user(by_name[boss.username]).principal
    assert boss_p.kind is PrincipalKind.OPERATOR and boss_p.municipalities == frozenset()


@pytest.mark.parametrize(("username", "role", "municipality", "error"), [
    ("Clerk", ConsoleRole.CLERK, "132217", InvalidInput),  # upper case
    ("ab", ConsoleRole.AGENT, None, InvalidInput),  # too short
    ("clerk\n", ConsoleRole.AGENT, None, InvalidInput),
    ("clerk", ConsoleRole.CLERK, None, InvalidInput),  # a clerk needs a municipality
    ("agent", ConsoleRole.AGENT, "132217", InvalidInput),  # an agent has none
    ("clerk", ConsoleRole.CLERK, "132218", Exception),  # bad check digit
    ("clerk", ConsoleRole.CLERK, "011011", NotFound),  # valid code, not in the registry
])
def test_bad_accounts_are_refused_and_nothing_is_stored(
        services: Services, username: str, role: ConsoleRole, municipality: str | None,
        error: type[Exception]) -> None:
    with pytest.raises(error):
        services.console.create(CREATE, username=username, role=role,
                                municipality_code=municipality)
    assert services.console.accounts(READ) == []
    assert audit_actions(services) == []


def test_a_code_is_good_once_and_a_stale_one_never(services: Services,
                                                    clock: FixedClock) -> None:
    new = services.console.create(CREATE, username="agent", role=ConsoleRole.AGENT)
    sign_in(services, new, clock)
    first = services.console.begin(new.username, new.password, ADDRESS)
    with pytest.raises(ConsoleLoginFailed):  # the same step again (RFC 6238 §5.2)
        services.console.second_factor(first.token, code(new, clock), ADDRESS)
    first = services.console.begin(new.username, new.password, ADDRESS)
    with pytest.raises(ConsoleLoginFailed):  # two steps old
        services.console.second_factor(first.token, code(new, clock, -2), ADDRESS)
    clock.advance(seconds=30)
    assert sign_in(services, new, clock).stage == "active"  # the next step is good


def test_five_failures_lock_the_account_and_end_its_sessions(services: Services,
                                                             clock: FixedClock) -> None:
    new = services.console.create(CREATE, username="agent", role=ConsoleRole.AGENT)
    open_session = sign_in(services, new, clock)
    for _ in range(MAX_FAILURES):
        with pytest.raises(ConsoleLoginFailed):
            services.console.begin(new.username, "wrong password!", f"192.0.2.{_}")
    with pytest.raises(ConsoleSessionEnded):
        services.console.current(open_session.token)
    clock.advance(seconds=30)
    with pytest.raises(ConsoleLoginFailed):  # the right password, while locked
        services.console.begin(new.username, new.password, ADDRESS)
    clock.advance(seconds=LOCK_FOR.total_seconds())
    assert sign_in(services, new, clock).stage == "active"
    refusals = [a for a in audit_actions(services) if a == "console.sign_in_refused"]
    assert len(refusals) == MAX_FAILURES + 1


def test_an_idle_session_ends_and_sign_out_ends_one(services: Services,
                                                     clock: FixedClock) -> None:
    new = services.console.create(CREATE, username="boss", role=ConsoleRole.SUPERVISOR)
    active = sign_in(services, new, clock)
    clock.advance(seconds=IDLE_TIMEOUT.total_seconds() - 1)
    services.console.current(active.token)  # in use: its idle time starts again
    clock.advance(seconds=IDLE_TIMEOUT.total_seconds() - 1)
    services.console.current(active.token)
    clock.advance(seconds=IDLE_TIMEOUT.total_seconds() + 1)
    with pytest.raises(ConsoleSessionEnded):
        services.console.current(active.token)
    clock.advance(seconds=30)
    again = sign_in(services, new, clock)
    services.console.end(again.token)
    with pytest.raises(ConsoleSessionEnded):
        services.console.current(again.token)


def test_suspending_an_account_ends_its_sessions_at_once(services: Services,
                                                          clock: FixedClock) -> None:
    new = services.console.create(CREATE, username="agent", role=ConsoleRole.AGENT)
    active = sign_in(services, new, clock)
    services.console.set_status(SET_STATUS, "agent", ClientStatus.SUSPENDED)
    with pytest.raises(ConsoleSessionEnded):
        services.console.current(active.token)
    with pytest.raises(ConsoleLoginFailed):
        services.console.begin(new.username, new.password, ADDRESS)
    services.console.set_status(SET_STATUS, "agent", ClientStatus.ACTIVE)
    clock.advance(seconds=30)
    assert sign_in(services, new, clock).stage == "active"


def test_the_totp_secret_is_sealed_and_bound_to_its_row(services: Services,
                                                         clock: FixedClock) -> None:
    new = services.console.create(CREATE, username="agent", role=ConsoleRole.AGENT)
    other = services.console.create(CREATE, username="other", role=ConsoleRole.AGENT)
    with services.uow() as uow:
        stored = {a.username: a for a in uow.console.accounts()}
        assert new.totp_secret not in stored["agent"].totp_sealed
        assert new.password not in stored["agent"].password_hash
        assert stored["agent"].password_hash.startswith("$argon2id$")
        # Moving one row's sealed secret onto another does not make it usable there.
        assert stored["other"].id is not None
        uow.console.update_account(stored["other"].id, totp_sealed=stored["agent"].totp_sealed)
        uow.commit()
    first = services.console.begin(other.username, other.password, ADDRESS)
    with pytest.raises(ConsoleLoginFailed):
        services.console.second_factor(first.token, code(new, clock), ADDRESS)


def test_unknown_users_and_malformed_input_answer_like_a_wrong_password(
        services: Services) -> None:
    for username, password in (("nobody", "whatever password"), ("x" * 500, "p"),
                               ("agent", ""), ("agent", "p" * 10_000)):
        with pytest.raises(ConsoleLoginFailed) as refused:
            services.console.begin(username, password, ADDRESS)
        assert "nobody" not in repr(refused.value) and "x" * 40 not in str(refused.value)
    with pytest.raises(ConsoleSessionEnded):
        services.console.current("not-a-token")
    with pytest.raises(ConsoleSessionEnded):
        services.console.second_factor("not-a-token", "123456", ADDRESS)
