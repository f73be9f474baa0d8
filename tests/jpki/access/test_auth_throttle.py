"""Failure budgets (jpki.access.auth_throttle): refusal after N failures, refill over the window,
bounded memory, and how addresses are counted."""

from __future__ import annotations

import pytest

from jpki.access.auth_throttle import AuthThrottle, FailureBudgets, address_key
from jpki.errors import AuthThrottled


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_key_is_refused_after_its_failures_and_comes_back_as_the_budget_refills() -> None:
    clock = Clock()
    budgets = FailureBudgets(5, 60, monotonic=clock)  # 5 at once, one more every 12 s
    for _ in range(4):
        assert budgets.spend("a") is False
        assert budgets.retry_after("a") is None
    assert budgets.spend("a") is True  # the fifth spends it: reported once
    assert budgets.retry_after("a") == 12
    assert budgets.retry_after("b") is None  # other keys are untouched
    clock.t += 11.5
    assert budgets.retry_after("a") == 1
    clock.t += 0.5
    assert budgets.retry_after("a") is None  # one failure's worth is back
    assert budgets.spend("a") is False  # spent again, but reported within the window already
    assert budgets.retry_after("a") == 12
    clock.t += 60
    assert budgets.retry_after("a") is None


def test_memory_is_bounded_and_whole_budgets_are_forgotten_first() -> None:
    clock = Clock()
    budgets = FailureBudgets(3, 60, max_keys=100, monotonic=clock)
    for _ in range(3):
        budgets.spend("attacker")
    clock.t += 1
    for i in range(10_000):
        budgets.spend(f"k{i}")
        clock.t += 0.001
        assert len(budgets) <= 100
    # Keys refill within 60 s; those whose budget is whole go first, so a spent one is kept
    # as long as there are whole ones to drop.
    budgets = FailureBudgets(3, 60, max_keys=10, monotonic=clock)
    for _ in range(3):
        budgets.spend("attacker")
    for i in range(9):
        budgets.spend(f"old{i}")
    clock.t += 61  # every old{i} is whole again; the attacker spent 3 more meanwhile
    for _ in range(3):
        budgets.spend("attacker")
    budgets.spend("new")
    assert budgets.retry_after("attacker") is not None
    assert len(budgets) <= 10


def test_addresses_count_by_host_and_ipv6_by_its_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff:1:2:3") \
        == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "unknown"
    assert address_key("testclient") == "testclient"


def test_the_throttle_refuses_by_either_key_with_the_longer_wait() -> None:
    clock = Clock()
    throttle = AuthThrottle(by_client=FailureBudgets(2, 60, monotonic=clock),
                            by_address=FailureBudgets(3, 30, monotonic=clock))
    throttle.failed("192.0.2.1", "jpki_" + "a" * 24)
    throttle.failed("192.0.2.2", "jpki_" + "a" * 24)  # the id's budget is spent
    with pytest.raises(AuthThrottled) as refused:
        throttle.check("192.0.2.3", "jpki_" + "a" * 24)
    assert refused.value.retry_after == 30 and refused.value.code == "auth.throttled"
    throttle.check("192.0.2.3", "jpki_" + "b" * 24)  # another id from a fresh address
    for _ in range(3):
        throttle.failed("192.0.2.9", None)  # malformed credentials count for the address
    with pytest.raises(AuthThrottled):
        throttle.check("192.0.2.9", "jpki_" + "b" * 24)
    throttle.check("192.0.2.8", None)
