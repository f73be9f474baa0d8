"""Limits shared by every process through the database (jpki.rate_limits,
jpki.access.auth_throttle, jpki.store.limits), on SQLite and PostgreSQL.

Each "process" here is a limiter on an engine of its own over the same database, as the
workers and nodes of a deployment are. Time is moved by the tests (``clock``), which then stands
for the database's clock in the statements as well as for the processes' own.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from jpki.access.auth_throttle import STALE_SECONDS, AuthThrottle, FailureBudgets, address_key
from jpki.errors import AuthThrottled
from jpki.rate_limits import LeaseNeeded, RateLimited, TokenBuckets, block_size
from jpki.store import create_store_engine
from jpki.store.limits import SqlLimits
from jpki.store.tables import rate_buckets

ROOT = Path(__file__).resolve().parents[2]
CLIENT = "jpki_" + "a" * 24


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def nodes(database_url: str) -> Iterator[list[SqlLimits]]:
    """Three processes' views of one database: an engine each."""
    engines = [create_store_engine(database_url) for _ in range(3)]
    yield [SqlLimits(engine) for engine in engines]
    for engine in engines:
        engine.dispose()


def row_tokens(limits: SqlLimits, subject: str) -> float:
    with limits._engine.connect() as conn:
        return float(conn.execute(select(rate_buckets.c.tokens).where(
            rate_buckets.c.subject == subject)).scalar_one())


# --- token buckets -------------------------------------------------------------------------------


def test_token_buckets_refill_at_the_rate_and_say_when_to_retry(nodes: list[SqlLimits]) -> None:
    clock = Clock()
    buckets = TokenBuckets(nodes[0], "rp", rate=4, burst=2, clock=clock)
    assert buckets.block == 1  # a burst of 2 is leased a token at a time: exact
    buckets.take("a")
    buckets.take("a")
    with pytest.raises(RateLimited) as refused:
        buckets.take("a")
    assert refused.value.retry_after == 1 and refused.value.context == {"retry_after": 1}
    buckets.take("b")  # its own bucket
    clock.t += 0.25  # one token back at 4/s
    buckets.take("a")
    with pytest.raises(RateLimited):
        buckets.take("a")
    clock.t += 10  # never more than the burst
    buckets.take("a")
    buckets.take("a")
    with pytest.raises(RateLimited):
        buckets.take("a")
    slow = TokenBuckets(nodes[0], "anonymous", rate=0.1, burst=1, clock=clock)
    slow.take("a")
    with pytest.raises(RateLimited) as refused:
        slow.take("a")
    assert refused.value.retry_after == 10
    with pytest.raises(ValueError):
        TokenBuckets(nodes[0], "rp", rate=0, burst=1)


def test_the_block_is_a_quarter_second_of_the_rate_within_a_quarter_of_the_burst() -> None:
    assert block_size(20, 40) == 5  # the defaults: JPKI_RP_RATE_PER_SECOND and _BURST
    assert block_size(20, 100) == 5  # the anonymous defaults
    assert block_size(100, 8) == 2
    assert block_size(2, 3) == 1
    assert block_size(10**6, 10**6) == 1000  # MAX_BLOCK


def test_a_process_spends_its_block_from_memory_and_asks_again_when_it_is_spent(
        nodes: list[SqlLimits]) -> None:
    clock = Clock()
    buckets = TokenBuckets(nodes[0], "rp", rate=100, burst=200, clock=clock)
    assert buckets.block == 25
    buckets.take("rp_x")
    assert row_tokens(nodes[0], "rp_x") == 175  # one block leased
    for _ in range(24):
        assert buckets.try_take("rp_x")  # from memory: the row is not touched
    assert row_tokens(nodes[0], "rp_x") == 175
    assert not buckets.try_take("rp_x")  # spent: a lease is needed
    with pytest.raises(LeaseNeeded):
        buckets.admit("rp_x", lease=False)
    buckets.admit("rp_x")
    assert row_tokens(nodes[0], "rp_x") == 150


def test_a_modest_rate_spread_over_processes_is_never_refused(nodes: list[SqlLimits]) -> None:
    """Blocks are kept until spent: a caller at three quarters of its rate, its calls spread over
    three processes (each then spends its block slowly), is admitted every time."""
    clock = Clock()
    processes = [TokenBuckets(limits, "rp", 20, 40, clock=clock) for limits in nodes]
    for i in range(15 * 20):  # 20 seconds at 15 calls a second
        clock.t += 1 / 15
        processes[i % 3].take("rp_modest")  # raises if refused


def test_processes_together_admit_no_more_than_one_bucket_and_the_blocks_they_hold(
        nodes: list[SqlLimits]) -> None:
    """Over any interval, every process together admits at most what one exact bucket would
    (burst + rate × interval) plus the blocks held at its start: processes × block (the
    tolerance docs/deployment.md states). From a standing start, no more than the burst."""
    clock = Clock()
    rate, burst = 40.0, 80
    processes = [TokenBuckets(limits, "rp", rate, burst, clock=clock) for limits in nodes]
    block = processes[0].block
    assert block == 10
    # A new key, at one instant: the burst, across all three, however the calls fall.
    admitted_now = 0
    for i in range(300):
        try:
            processes[i % 3].take("rp_now")
            admitted_now += 1
        except RateLimited:
            pass
    assert burst - 3 * block <= admitted_now <= burst
    # Over time, calls at random moments to random processes.
    rng = random.Random(7)
    admitted: list[float] = []
    for _ in range(4000):
        clock.t += rng.random() * 0.01
        try:
            rng.choice(processes).take("rp_time")
            admitted.append(clock.t)
        except RateLimited:
            pass
    span = admitted[-1] - admitted[0]
    assert len(admitted) >= 0.5 * rate * span  # it does serve
    worst = 0.0
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            allowed = burst + rate * (admitted[j] - start) + len(processes) * block
            worst = max(worst, (j - i + 1) - allowed)
    assert worst <= 0, worst


def test_blocks_held_from_before_are_the_excess_and_no_more(nodes: list[SqlLimits]) -> None:
    """The worst case the tolerance allows: two processes lease a block and spend one token;
    the bucket refills whole; then, at one instant, a third drains it and the two spend what
    they held. More than the burst — by what was held, within processes × block."""
    clock = Clock()
    p0, p1, p2 = (TokenBuckets(limits, "rp", 40, 80, clock=clock) for limits in nodes)
    block = p0.block
    p1.take("rp_worst")
    p2.take("rp_worst")
    clock.t += 2.0  # whole again
    admitted = 0
    for process in (p0, p1, p2):
        while True:
            try:
                process.take("rp_worst")
            except RateLimited:
                break
            admitted += 1
    assert admitted == 80 + 2 * (block - 1)
    assert admitted <= 80 + 3 * block


def test_a_refused_process_refuses_from_memory_until_the_bucket_holds_a_token(
        nodes: list[SqlLimits]) -> None:
    clock = Clock()
    buckets = TokenBuckets(nodes[0], "rp", rate=2, burst=2, clock=clock)
    buckets.take("rp_y")
    buckets.take("rp_y")
    with pytest.raises(RateLimited):
        buckets.take("rp_y")
    # Another process takes the token that comes back; this one does not even ask meanwhile.
    other = TokenBuckets(nodes[1], "rp", rate=2, burst=2, clock=clock)
    clock.t += 0.25
    with pytest.raises(RateLimited) as refused:
        buckets.try_take("rp_y")
    assert refused.value.retry_after == 1
    clock.t += 0.25
    other.take("rp_y")
    with pytest.raises(RateLimited):
        buckets.take("rp_y")  # asked: the bucket is empty again


def test_token_buckets_keep_a_bounded_number_of_keys(nodes: list[SqlLimits],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One bucket per source address: an attacker with many addresses cannot grow a process's
    memory without bound (jpki.rate_limits._MAX_KEYS; the rows go with the purge job)."""
    import jpki.rate_limits

    monkeypatch.setattr(jpki.rate_limits, "_MAX_KEYS", 50)
    clock = Clock()
    buckets = TokenBuckets(nodes[0], "anonymous", rate=1, burst=1, clock=clock)
    for i in range(120):
        buckets.take(f"198.51.100.{i}")
        assert len(buckets) <= 50
    clock.t += 2.0  # every bucket is whole again
    assert nodes[0].purge(at=clock.t) == {"buckets": 120, "budgets": 0}


_CHILD = """
import sys
from jpki.rate_limits import RateLimited, TokenBuckets
from jpki.store import create_store_engine
from jpki.store.limits import SqlLimits

buckets = TokenBuckets(SqlLimits(create_store_engine(sys.argv[1])), "rp", rate=1000,
                       burst=10000, block=50, clock=lambda: 1000.0)
while True:
    buckets.take("rp_killed")
    sys.stdout.write(".")
    sys.stdout.flush()
"""


def test_a_process_killed_with_a_block_loses_at_most_that_block(
        database_url: str, nodes: list[SqlLimits]) -> None:
    """kill -9 mid-lease: the tokens it had leased and not spent are gone with it — never more
    than one block, and never handed out twice (docs/deployment.md)."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, database_url],
                             stdout=subprocess.PIPE, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None
    taken = 0
    while taken < 137:  # a moment in the middle of a block
        taken += len(child.stdout.read(1))
    os.kill(child.pid, signal.SIGKILL)
    taken += len(child.stdout.read())  # what it wrote before it died
    child.wait()
    left = nodes[0].lease("rp", "rp_killed", 10000, 1000, 10000, at=1000.0).granted
    lost = 10000 - taken - left
    assert 0 <= lost <= 50, (taken, left)


# --- failure budgets -----------------------------------------------------------------------------


def budgets(limits: SqlLimits, clock: Clock, per_client: int = 5, per_address: int = 100,
            window: float = 60) -> AuthThrottle:
    return AuthThrottle(by_client=FailureBudgets(limits, "client", per_client, window,
                                                 clock=clock),
                        by_address=FailureBudgets(limits, "address", per_address, window,
                                                  clock=clock),
                        refusal_delay=0)


def test_a_key_is_refused_after_its_failures_and_comes_back_as_the_budget_refills(
        nodes: list[SqlLimits]) -> None:
    clock = Clock()
    budgets = FailureBudgets(nodes[0], "client", 5, 60, clock=clock)  # one more every 12 s
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
    clock.t += 60
    assert nodes[0].purge(at=clock.t) == {"buckets": 0, "budgets": 1}  # whole: forgotten


def test_failures_that_slipped_past_a_check_put_the_budget_into_debt(
        nodes: list[SqlLimits]) -> None:
    """Failures counted after the budget was spent — requests that passed the check before the
    block was known — keep the key blocked until the refill pays them back, down to minus one
    budget at most."""
    clock = Clock()
    budgets = FailureBudgets(nodes[0], "address", 5, 60, clock=clock)  # one back every 12 s
    for _ in range(5):
        budgets.spend("192.0.2.1")
    assert budgets.retry_after("192.0.2.1") == 12
    for _ in range(3):  # in flight when it was spent
        budgets.spend("192.0.2.1")
    assert budgets.retry_after("192.0.2.1") == 48  # 3 more to pay back, then one whole
    for _ in range(20):
        budgets.spend("192.0.2.1")
    assert budgets.retry_after("192.0.2.1") == 72  # the debt is at most one budget


def test_a_budget_spent_through_one_process_locks_out_on_every_other(
        nodes: list[SqlLimits]) -> None:
    clock = Clock()
    a, b = budgets(nodes[0], clock, per_client=3), budgets(nodes[1], clock, per_client=3)
    b.refresh()
    assert not b.stale()
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):  # guesses spread over addresses
        a.check(address, CLIENT)
        a.failed(address, CLIENT)
    with pytest.raises(AuthThrottled):
        a.check("192.0.2.4", CLIENT)
    b.check("192.0.2.4", CLIENT)  # b's cache was read before: not yet
    b.refresh()  # what every process does every POLL_SECONDS while it serves
    with pytest.raises(AuthThrottled) as refused:
        b.check("198.51.100.7", CLIENT)
    assert refused.value.retry_after == 20  # 3 a minute: one back in 20 s
    # A third process that never read the blocked keys is stale: it reads before it checks.
    c = budgets(nodes[2], clock, per_client=3)
    assert c.stale()
    c.refresh_if_due()
    with pytest.raises(AuthThrottled):
        c.check(None, CLIENT)
    clock.t += STALE_SECONDS
    assert b.stale() and c.stale()
    clock.t += 20
    b.refresh()
    b.check("192.0.2.4", CLIENT)  # refilled, for every process


def test_failures_counted_elsewhere_while_a_read_runs_are_kept(nodes: list[SqlLimits]) -> None:
    clock = Clock()
    a = budgets(nodes[0], clock, per_client=1)
    began = clock.t - 1  # a read that began before this process counted the failure
    a.failed("192.0.2.1", CLIENT)
    a.by_client.replace({}, began)
    with pytest.raises(AuthThrottled):
        a.check("192.0.2.1", CLIENT)
    a.by_client.replace({}, clock.t + 1)  # a read that began after it: the database's word
    a.check("192.0.2.1", CLIENT)


def test_the_blocked_keys_kept_are_bounded(nodes: list[SqlLimits]) -> None:
    clock = Clock()
    budgets = FailureBudgets(nodes[0], "address", 1, 60, max_keys=10, clock=clock)
    for i in range(30):
        budgets.spend(f"192.0.2.{i}")
        assert len(budgets) <= 10
    assert budgets.retry_after("192.0.2.29") is not None  # the newest is kept


def test_addresses_count_by_host_and_ipv6_by_its_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff:1:2:3") \
        == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "unknown"
    assert address_key("testclient") == "testclient"


def test_the_throttle_refuses_by_either_key_with_the_longer_wait(nodes: list[SqlLimits]) -> None:
    clock = Clock()
    throttle = AuthThrottle(by_client=FailureBudgets(nodes[0], "client", 2, 60, clock=clock),
                            by_address=FailureBudgets(nodes[0], "address", 3, 30, clock=clock))
    throttle.failed("192.0.2.1", CLIENT)
    throttle.failed("192.0.2.2", CLIENT)  # the id's budget is spent
    with pytest.raises(AuthThrottled) as refused:
        throttle.check("192.0.2.9", CLIENT)
    assert refused.value.retry_after == 30
    throttle.check("192.0.2.9", "jpki_" + "b" * 24)  # another id from elsewhere: fine
    for _ in range(3):
        throttle.failed("192.0.2.3", None)
    with pytest.raises(AuthThrottled) as refused:
        throttle.check("192.0.2.3", None)
    assert refused.value.retry_after == 10  # 3 per 30 s
