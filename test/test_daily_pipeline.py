"""The daily pipeline's five stages on the fake Yahoo and the embedded database, checked by hand."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from tasks.core.calendar import sessions_back
from tasks.core.tickers import ETF_UNIVERSE, SECTOR_ETFS
from test.fake_yahoo import HOLDING_WEIGHTS, FakeYahoo, holdings_for, market_cap_for
from test.fix_db import table_rows
from test.fix_yahoo import CliRunner

PIPE = "flows.daily_pipeline"
AS_OF = dt.date(2025, 6, 30)
FAST = ("--as-of", AS_OF.isoformat(), "--days", "25", "--delay", "0", "--retry-wait", "0.01", "--rate", "100000/min")


def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(query))  # type: ignore[arg-type]


def hand_ranking(fake: FakeYahoo) -> dict[int, list[tuple[str, float]]]:
    """Relative returns ranked the obvious way, from the fake's prices and the calendar."""
    days = sessions_back(21, AS_OF)
    out = {}
    for w in (5, 10, 20):
        def ret(t: str, w: int = w) -> float:
            return float(fake.bar(t, days[-1])["adj_close"]) / float(fake.bar(t, days[-1 - w])["adj_close"]) - 1
        rel = [(t, ret(t) - ret("SPY")) for t in SECTOR_ETFS]
        out[w] = sorted(rel, key=lambda x: (-x[1], x[0]))
    return out


def test_full_pipeline_matches_hand_computed_rankings_and_weights(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(PIPE, *FAST, "--top-sectors", "2")
    assert result.code == 0, result.stdout + result.stderr
    assert "5 of 5 stage(s) ok" in result.stdout
    sessions = sessions_back(25, AS_OF)
    etf = rows(dsn, "SELECT ticker, count(*) FROM collected_daily_etf_ohlc GROUP BY ticker ORDER BY ticker")
    assert etf == [(t, 25) for t in sorted(ETF_UNIVERSE)]
    meta = rows(dsn, "SELECT etf, holding, weight, as_of_date FROM collected_meta_etf ORDER BY etf, weight DESC")
    assert meta == [(e, h, w, AS_OF) for e in sorted(SECTOR_ETFS) for h, _, w in holdings_for(e)]
    ranking = hand_ranking(fake_yahoo)
    stored = rows(dsn, 'SELECT "window", ticker, relative_return, rank FROM analytics_trending_sectors WHERE as_of_date = \'2025-06-30\''
                       ' ORDER BY "window", rank')
    for w, ranked in ranking.items():
        got = [(t, r, k) for win, t, r, k in stored if win == w]
        assert [t for t, _, _ in got] == [t for t, _ in ranked]
        assert [k for _, _, k in got] == list(range(1, 12))
        for (_, r, _), (_, expected) in zip(got, ranked, strict=True):
            assert r == pytest.approx(expected, rel=1e-12)
    top2 = [t for t, _ in ranking[20][:2]]
    stocks = [h for e in top2 for h, _, _ in holdings_for(e)]
    history = rows(dsn, "SELECT ticker, count(*) FROM collected_daily_stock_history GROUP BY ticker ORDER BY ticker")
    assert history == [(s, 25) for s in sorted(stocks)]
    assert {d for (d,) in rows(dsn, "SELECT DISTINCT trade_date FROM collected_daily_stock_history")} == set(sessions)
    total = sum(market_cap_for(s) for s in stocks)
    alloc = rows(dsn, "SELECT ticker, sector_etf, market_cap, weight FROM analytics_portfolio_allocation WHERE as_of_date = '2025-06-30'"
                      " ORDER BY ticker")
    assert [(t, e) for t, e, _, _ in alloc] == sorted((h, e) for e in top2 for h, _, _ in holdings_for(e))
    for t, _, cap, weight in alloc:
        assert cap == market_cap_for(t) and weight == pytest.approx(market_cap_for(t) / total, rel=1e-12)
    assert sum(w for *_, w in alloc) == pytest.approx(1.0, abs=1e-12)
    assert HOLDING_WEIGHTS[0] == meta[0][2]

    before = {t: table_rows(dsn, t, "*") for t in ("collected_meta_etf", "analytics_portfolio_allocation")}
    fake_yahoo.reset_log()
    again = run_cli(PIPE, *FAST, "--top-sectors", "2")  # idempotent: the same rows, no price fetched twice
    assert again.code == 0, again.stdout + again.stderr
    assert fake_yahoo.chart_requests() == []
    assert [r[:4] for r in table_rows(dsn, "collected_meta_etf", "*")] == [r[:4] for r in before["collected_meta_etf"]]
    assert [r[:5] for r in table_rows(dsn, "analytics_portfolio_allocation", "*")] == \
        [r[:5] for r in before["analytics_portfolio_allocation"]]


@pytest.mark.parametrize("stage,first", [("trending", "stage 1 (etf-ohlc)"), ("stock-history", "stage 3 (trending)"),
                                          ("allocation", "stage 3 (trending)")])
def test_a_stage_without_its_inputs_names_the_stage_to_run_first(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                                 stage: str, first: str) -> None:
    result = run_cli(PIPE, *FAST, "--stages", stage)
    assert result.code == 2, result.stdout + result.stderr
    assert f"run {first}" in result.stdout
    assert fake_yahoo.log == []


def test_allocation_needs_the_stock_history_and_each_stage_runs_alone(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(PIPE, *FAST, "--stages", "1,2,3").code == 0
    missing = run_cli(PIPE, *FAST, "--stages", "allocation")
    assert missing.code == 2 and "run stage 4 (stock-history) first" in missing.stdout
    assert run_cli(PIPE, *FAST, "--stages", "stock-history").code == 0
    assert run_cli(PIPE, *FAST, "--stages", "allocation").code == 0
    assert rows(dsn, "SELECT round(sum(weight)::numeric, 12) FROM analytics_portfolio_allocation") == [(1,)]


def test_rate_limit_stops_and_prints_how_to_resume_from_that_stage(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.rate_limit_after = 12  # the ETF stage's charts pass; the holdings stage meets the 429
    result = run_cli(PIPE, *FAST, "--stages", "all", "--rate-limit-sleep", "60")
    assert result.code == 75, result.stdout + result.stderr
    assert "--stages etf-holdings,trending,stock-history,allocation --as-of 2025-06-30" in result.stdout
    assert rows(dsn, "SELECT count(*) FROM analytics_trending_sectors") == [(0,)]


def test_dry_run_says_what_each_stage_would_do_and_writes_nothing(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(PIPE, *FAST, "--dry-run")
    assert result.code == 2, result.stdout + result.stderr  # stages 3-5 lack inputs that the earlier stages would make
    assert "would fetch the top holdings of 11 sector ETFs" in result.stdout
    assert "run stage 1 (etf-ohlc)" in result.stdout
    assert fake_yahoo.log == []
    assert table_rows(dsn, "collected_daily_etf_ohlc") == []


def test_bad_stage_is_exit_2(run_cli: CliRunner) -> None:
    result = run_cli(PIPE, "--stages", "2,9")
    assert result.code == 2 and "unknown stage '9'" in result.stderr
