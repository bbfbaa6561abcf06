"""The shared rate budget against the real PostgreSQL: spacing across processes, cool-down,
learning, daily quota, and a database that is not there."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import psycopg
import pytest

from tasks.core.errors import BadInput, RateLimited, StoreError
from tasks.sources.budget import BACKOFF_FACTOR, CLIMB_AFTER, CLIMB_FACTOR, RateBudget, parse_rate, peek_budget
from test.rate_helpers import grab, most_in_window


def test_budget_is_shared_by_processes_and_threads(db: psycopg.Connection[Any], dsn: str) -> None:
    per_min = 1200.0  # 20 per second together, whoever asks
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=grab, args=(dsn, per_min, 8, 3, out)) for _ in range(2)]
    for p in procs:
        p.start()
    times = [t for _ in procs for t in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=10)
    assert len(times) == 48
    # 48 slots at 20/s, granted by the database 50 ms apart whoever asks: 2.35 s from first to last;
    # alone, each process would have taken its own at once.
    gaps = sorted(b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False))
    assert gaps[0] >= 0.05 - 1e-3, gaps[:3]
    assert max(times) - min(times) >= 47 / 20 - 1e-3
    assert most_in_window(times, 1.0 - 1e-3) <= 20  # (a window a hair short of 1 s: the clock's float rounding)
    state = db.execute("SELECT granted FROM rate_budgets WHERE name = 'shared'").fetchone()
    assert state is not None and state[0] == 48


def test_a_429_cools_everyone_down_and_the_lowered_rate_is_remembered(db: psycopg.Connection[Any], dsn: str) -> None:
    first = RateBudget(dsn, "yahoo", per_min=600, cooldown_s=30)
    first.acquire()
    left = first.penalize(retry_after=5)
    assert 29 <= left <= 30  # the longer of Retry-After and the configured cool-down
    other = RateBudget(dsn, "yahoo", per_min=600, cooldown_s=30)  # another process, or the next run
    with pytest.raises(RateLimited) as caught:
        other.acquire()
    assert caught.value.from_budget and 25 <= (caught.value.retry_after or 0) <= 30
    assert other.state().rate_per_min == pytest.approx(600 * BACKOFF_FACTOR)
    # a request that was in flight and also got 429 extends the cool-down, not the penalty
    other.penalize(retry_after=60)
    state = other.state()
    assert state.rate_per_min == pytest.approx(600 * BACKOFF_FACTOR) and 55 <= state.cooldown_left_s <= 60
    # the learned rate is what a dry run shows, without changing anything
    assert peek_budget(db, "yahoo", 600).rate_per_min == pytest.approx(300)


def test_a_block_that_outlasts_the_cool_down_doubles_it(db: psycopg.Connection[Any], dsn: str) -> None:
    budget = RateBudget(dsn, "yahoo", per_min=600, cooldown_s=10)
    assert budget.penalize() == pytest.approx(10, abs=0.5)
    db.execute("UPDATE rate_budgets SET cooldown_until = clock_timestamp() - interval '1 second'")  # the cool-down ran out
    budget.acquire()
    assert budget.penalize() == pytest.approx(20, abs=0.5)  # still blocked right after it: wait twice as long
    db.execute("UPDATE rate_budgets SET cooldown_until = clock_timestamp() - interval '1 hour'")  # a long quiet spell later
    assert budget.penalize() == pytest.approx(10, abs=0.5)


def test_rate_climbs_back_slowly_after_sustained_success(db: psycopg.Connection[Any], dsn: str) -> None:
    budget = RateBudget(dsn, "fast", per_min=600_000, cooldown_s=0.01)
    budget.acquire()
    budget.penalize()
    time.sleep(0.05)
    assert budget.state().rate_per_min == pytest.approx(300_000)
    for _ in range(CLIMB_AFTER - 1):
        budget.acquire()
    assert budget.state().rate_per_min == pytest.approx(300_000)
    budget.acquire()
    assert budget.state().rate_per_min == pytest.approx(300_000 * CLIMB_FACTOR)
    lowered = RateBudget(dsn, "fast", per_min=1000)  # a lower ceiling applies at once
    lowered.acquire()
    assert lowered.state().rate_per_min == pytest.approx(1000)


def test_daily_quota_stops_until_midnight_utc(db: psycopg.Connection[Any], dsn: str) -> None:
    budget = RateBudget(dsn, "fmp", per_min=600_000, daily_cap=3)
    for _ in range(3):
        budget.acquire()
    with pytest.raises(RateLimited) as caught:
        budget.acquire()
    assert "daily quota" in str(caught.value)
    seconds_to_midnight = 86400 - time.time() % 86400
    assert caught.value.retry_after == pytest.approx(seconds_to_midnight, abs=5)
    assert budget.state().day_count == 3


def test_budget_survives_a_pickle_to_a_worker(dsn: str, db: psycopg.Connection[Any]) -> None:
    import pickle

    budget = RateBudget(dsn, "yahoo", per_min=600)
    budget.acquire()
    copy = pickle.loads(pickle.dumps(budget))  # what a worker process receives (no connection inside)
    copy.acquire()
    assert copy.state().granted == 2


def test_unreachable_database_is_a_store_error_without_password() -> None:
    budget = RateBudget("postgresql://u:sekrit-pw@127.0.0.1:1/x", "yahoo", per_min=60)
    with pytest.raises(StoreError) as caught:
        budget.acquire()
    assert "127.0.0.1:1" in str(caught.value) and "sekrit-pw" not in str(caught.value)


@pytest.mark.parametrize("text,per_min", [("60/min", 60), ("2/s", 120), ("1000/h", 1000 / 60), ("0.5/sec", 30),
                                          ("60/min,2000/h", 2000 / 60), ("2000/h, 60/min", 2000 / 60), ("1/s,100/min", 60),
                                          ("60/min,2000/h,48000/day", 2000 / 60), ("1440/day", 1)])
def test_parse_rate(text: str, per_min: float) -> None:
    assert parse_rate(text) == pytest.approx(per_min)


@pytest.mark.parametrize("text", ["", "60", "0/min", "-1/min", "5/fortnight", "1e9/s", "abc/min", "60/min,", "60/min,,2000/h",
                                  "60/min;2000/h", "60/min,0/h"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(BadInput):
        parse_rate(text)


@pytest.mark.parametrize("text", ["1000000/min", "2/s", "0.5/min", "1000/h", "300/min", "99999999/min"])
def test_a_rate_passed_on_as_a_parameter_reads_back_the_same(text: str) -> None:
    from tasks.sources.budget import rate_param

    per_min = parse_rate(text)
    assert "e" not in rate_param(per_min) and parse_rate(rate_param(per_min)) == pytest.approx(per_min, rel=1e-9)


def test_the_default_budget_is_the_source_documents_limits_and_plans_say_the_binding_window() -> None:
    from tasks.sources.budget import DEFAULT_DAILY_QUOTA, DEFAULT_RATE, BudgetState, binding_window, describe_budget

    # Seed 001: wait at least 1 s between requests; 2,000 an hour; 48,000 a day.
    assert parse_rate(DEFAULT_RATE) <= 60 and DEFAULT_DAILY_QUOTA == 48_000
    assert binding_window(DEFAULT_RATE).text == "2000/h"
    state = BudgetState("yahoo", parse_rate(DEFAULT_RATE), parse_rate(DEFAULT_RATE), 0.0, 0, 0, 0)
    # 5,000 requests, evenly spaced at 2,000 an hour: 4,999 gaps of 1.8 s = 8,998 s, about 2 h 30 min.
    assert describe_budget(state, requests=5000) == "Rate budget 'yahoo': 2000/h; 5000 request(s) need at least 2 h 30 min"
    assert describe_budget(state, requests=3).endswith("3 request(s) need at least 4 s")  # 2 gaps of 1.8 s
