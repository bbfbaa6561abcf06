"""The daily pipeline's stages on the fake Yahoo and the fake sponsor files, checked by hand."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import psycopg
import pytest

from tasks.core.tickers import ETF_UNIVERSE, SECTOR_ETFS
from test.fake_yahoo import FakeYahoo, constituents_for, holdings_for, shares_known_on
from test.fix_db import table_rows
from test.fix_yahoo import CliRunner
from test.nyse_days import last_trading_days

PIPE = "flows.daily_pipeline"
AS_OF = dt.date(2025, 6, 30)
PAST = dt.date(2025, 5, 15)
FAST = ("--days", "25", "--delay", "0", "--retry-wait", "0.01", "--rate", "100000/min", "--holdings-rate", "100000/min")

# The source document's check queries, verbatim.
DOC_QUERIES = [
    """SELECT 'ETF OHLC' as table_name, COUNT(*) as records, MIN(trade_date) as earliest, MAX(trade_date) as latest
FROM collected_daily_etf_ohlc;""",
    """SELECT 'Stock History' as table_name, COUNT(*) as records, MIN(trade_date) as earliest, MAX(trade_date) as latest
FROM collected_daily_stock_history;""",
    """SELECT 'Benchmark OHLC' as table_name, COUNT(DISTINCT ticker) as tickers, MIN(trade_date) as earliest, MAX(trade_date) as latest
FROM collected_daily_benchmark_ohlc;""",
    """SELECT 'Portfolio Allocation' as table_name, COUNT(DISTINCT as_of_date) as analysis_dates, MAX(as_of_date) as latest_analysis
FROM analytics_portfolio_allocation;""",
    """SELECT as_of_date, COUNT(*) as stock_count, SUM(portfolio_weight) as total_weight
FROM analytics_portfolio_allocation GROUP BY as_of_date ORDER BY as_of_date DESC LIMIT 10;""",
]


def rows(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(query, params))  # type: ignore[arg-type]


def yahoo(symbol: str) -> str:
    return symbol.replace(".", "-")


def universe() -> dict[str, list[str]]:
    return {etf: [yahoo(s) for s, *_ in constituents_for(etf)] for etf in SECTOR_ETFS}


def hand_ranked(fake: FakeYahoo, names: list[str], as_of: dt.date) -> dict[int, list[tuple[str, float, float, float]]]:
    """(ticker, own return, SPY return, relative return) per window, best first, from the fake's prices."""
    days = last_trading_days(21, as_of)
    out = {}
    for w in (5, 10, 20):
        def ret(t: str, w: int = w) -> float:
            return float(fake.bar(t, days[-1])["adj_close"]) / float(fake.bar(t, days[-1 - w])["adj_close"]) - 1
        out[w] = sorted(((t, ret(t), ret("SPY"), ret(t) - ret("SPY")) for t in names), key=lambda x: (-x[3], x[0]))
    return out


def hand_weights(fake: FakeYahoo, stocks: list[str], as_of: dt.date) -> dict[str, float]:
    caps = {s: shares_known_on(s, as_of) * float(fake.bar(s, as_of)["close"]) for s in stocks}
    return {s: c / sum(caps.values()) for s, c in caps.items()}


@pytest.mark.empty_database
def test_full_pipeline_fills_every_table_as_the_document_checks_it(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--top-sectors", "2", as_process=True)  # own process, once
    assert result.code == 0, result.stdout + result.stderr
    assert "5 of 5 stage(s) ok" in result.stdout
    prices = [line for line in result.stdout.splitlines() if "Prices: " in line]
    assert len(prices) >= 3 and not [line for line in prices if line.startswith("[")], prices  # each backfill's summary once
    sessions = last_trading_days(25, AS_OF)
    members = universe()
    every_stock = sorted({s for m in members.values() for s in m})
    assert len(every_stock) == 11 * 6 - 1  # GOOGL is in two funds

    # The document's five queries, unchanged.
    first, last = sessions[0], sessions[-1]
    assert rows(dsn, DOC_QUERIES[0]) == [("ETF OHLC", 12 * 25, first, last)]
    assert rows(dsn, DOC_QUERIES[1]) == [("Stock History", len(every_stock) * 25, first, last)]
    assert rows(dsn, DOC_QUERIES[2]) == [("Benchmark OHLC", 2, first, last)]
    assert rows(dsn, DOC_QUERIES[3]) == [("Portfolio Allocation", 1, AS_OF)]
    (as_of, count, total), = rows(dsn, DOC_QUERIES[4])
    assert as_of == AS_OF and total == pytest.approx(1.0, abs=1e-12)

    etf = rows(dsn, "SELECT ticker, count(*) FROM etf_daily_bars GROUP BY ticker ORDER BY ticker")
    assert etf == [(t, 25) for t in sorted(ETF_UNIVERSE)]
    bench = rows(dsn, "SELECT ticker, trade_date, close, adj_close FROM benchmark_daily_bars ORDER BY 1, 2")
    assert bench == [(t, d, fake_yahoo.bar(t, d)["close"], fake_yahoo.bar(t, d)["adj_close"]) for t in ("QQQ", "SPY") for d in sessions]

    # Stage 2: every stock of every fund's file, with shares held, as of the file's date; cash and futures left out.
    meta = rows(dsn, "SELECT etf_ticker, ticker, sponsor_ticker, weight, shares_held, source, as_of_date FROM etf_holdings"
                     " ORDER BY etf_ticker, weight DESC")
    assert meta == [(e, yahoo(s), s, w / 100, float(h), "ssga", fake_yahoo.sponsor_as_of) for e in sorted(SECTOR_ETFS)
                    for s, _, w, h in constituents_for(e)]
    assert "3 cash/futures line(s) left out" in result.stdout

    # Stage 3: sectors, then the top two sectors' stocks, with the inputs of every ranking.
    sectors = hand_ranked(fake_yahoo, list(SECTOR_ETFS), AS_OF)
    stored = rows(dsn, 'SELECT window_sessions, ticker, start_date, start_adj_close, own_return, benchmark_return, relative_return, rank'
                       " FROM trending_sectors WHERE as_of_date = %s ORDER BY 1, rank", (AS_OF,))
    days = last_trading_days(21, AS_OF)
    for w, ranked in sectors.items():
        got = [r[1:] for r in stored if r[0] == w]
        assert [(t, k) for t, *_, k in got] == [(t, k + 1) for k, (t, *_) in enumerate(ranked)]
        for (t, start, start_adj, own, spy, rel, _), (_, e_own, e_spy, e_rel) in zip(got, ranked, strict=True):
            assert start == days[-1 - w] and start_adj == fake_yahoo.bar(t, start)["adj_close"]
            assert (own, spy, rel) == pytest.approx((e_own, e_spy, e_rel), rel=1e-12)
    top2 = [t for t, *_ in sectors[20][:2]]
    ranked_stocks = rows(dsn, 'SELECT sector_ticker, ticker, relative_return, rank FROM trending_stocks'
                              ' WHERE as_of_date = %s AND window_sessions = 20 ORDER BY sector_ticker, rank', (AS_OF,))
    expected = []
    seen: set[str] = set()
    for e in top2:
        mine = [s for s in members[e] if s not in seen]
        seen.update(mine)
        expected += [(e, t, rel, k + 1) for k, (t, _, _, rel) in enumerate(hand_ranked(fake_yahoo, mine, AS_OF)[20])]
    expected.sort(key=lambda r: (r[0], r[3]))
    assert [(e, t, k) for e, t, _, k in ranked_stocks] == [(e, t, k) for e, t, _, k in expected]
    assert [r for *_, r, _ in ranked_stocks] == pytest.approx([r for *_, r, _ in expected], rel=1e-12)

    # Stage 4: every constituent's history.
    history = rows(dsn, "SELECT ticker, count(*) FROM stock_daily_bars GROUP BY ticker ORDER BY ticker")
    assert history == [(s, 25) for s in every_stock]

    # Stage 5: point-in-time weights = shares known on the date x that date's close.
    portfolio = list(dict.fromkeys(s for e in top2 for s in members[e]))
    alloc = rows(dsn, "SELECT ticker, shares_outstanding, shares_as_of_date, close, price_date, market_cap, portfolio_weight"
                      " FROM portfolio_allocation WHERE as_of_date = %s ORDER BY ticker", (AS_OF,))
    assert [r[0] for r in alloc] == sorted(portfolio) and count == len(portfolio)
    weights = hand_weights(fake_yahoo, portfolio, AS_OF)
    for t, shares, shares_as_of, close, price_date, cap, weight in alloc:
        assert shares == shares_known_on(t, AS_OF) and shares_as_of == dt.date(2025, 6, 1)
        assert (close, price_date) == (fake_yahoo.bar(t, AS_OF)["close"], AS_OF)
        assert cap == pytest.approx(shares * close, rel=1e-12) and weight == pytest.approx(weights[t], rel=1e-12)

    # Idempotent: the same rows again, and nothing fetched twice (prices, holdings files, share counts).
    kept = {"etf_holdings": "etf_ticker, as_of_date, ticker, holding_name, weight, sponsor_ticker, shares_held, source",
            "portfolio_allocation": "as_of_date, ticker, sector_ticker, market_cap, portfolio_weight, shares_outstanding, close",
            "trending_stocks": "as_of_date, ticker, sector_ticker, window_sessions, start_date, own_return, relative_return, rank"}
    before = {t: table_rows(dsn, t, columns) for t, columns in kept.items()}
    fake_yahoo.reset_log()
    again = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--top-sectors", "2")
    assert again.code == 0, again.stdout + again.stderr
    assert [e.path for e in fake_yahoo.log if "chart" in e.path or "timeseries" in e.path or e.host == "www.ssga.com"] == []
    for table, old in before.items():  # the same values (their load times aside)
        assert Counter(table_rows(dsn, table, kept[table])) == Counter(old), table  # rows of one key differ in later columns

    # A past as-of date: the share counts known then and that day's closes, never June's.
    past = run_cli(PIPE, *FAST, "--end", PAST.isoformat(), "--top-sectors", "2")
    assert past.code == 0, past.stdout + past.stderr
    assert f"no holdings snapshot on or before {PAST}" in past.stdout  # the only file is from June: said so
    past_top = [t for t, *_ in hand_ranked(fake_yahoo, list(SECTOR_ETFS), PAST)[20][:2]]
    past_stocks = list(dict.fromkeys(s for e in past_top for s in members[e]))
    past_weights = dict(rows(dsn, "SELECT ticker, portfolio_weight FROM portfolio_allocation WHERE as_of_date = %s", (PAST,)))
    assert past_weights == pytest.approx(hand_weights(fake_yahoo, past_stocks, PAST), rel=1e-12)
    assert past_weights != pytest.approx(hand_weights(fake_yahoo, past_stocks, AS_OF), rel=1e-9)
    assert rows(dsn, DOC_QUERIES[3]) == [("Portfolio Allocation", 2, AS_OF)]
    assert [(d, round(float(w), 12)) for d, _, w in rows(dsn, DOC_QUERIES[4])] == [(AS_OF, 1.0), (PAST, 1.0)]


def test_a_fund_whose_sponsor_file_fails_falls_back_to_yahoo_and_says_so(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.sponsor_files["XLK"] = 404
    fake_yahoo.sponsor_files["XLV"] = b"<html>Access denied</html>"  # served as the file: retried, then the fallback
    result = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--stages", "etf-holdings", "--max-retries", "1")
    assert result.code == 1, result.stdout + result.stderr
    assert "XLK: 5 stocks, Yahoo's top 5 holdings only: the sponsor's file failed (holdings file: HTTP 404)" in result.stdout
    assert "XLV: 5 stocks, Yahoo's top 5 holdings only" in result.stdout
    got = rows(dsn, "SELECT etf_ticker, ticker, source, shares_held FROM etf_holdings WHERE etf_ticker IN ('XLK', 'XLV', 'XLB')"
                    " ORDER BY etf_ticker, weight DESC")
    assert got == ([("XLB", yahoo(s), "ssga", float(h)) for s, _, _, h in constituents_for("XLB")]
                   + [(e, h, "yahoo", None) for e in ("XLK", "XLV") for h, _, _ in holdings_for(e)])


@pytest.mark.parametrize("stage,first", [("trending", "stage 1 (etf-ohlc)"), ("stock-history", "stage 2 (etf-holdings)"),
                                          ("allocation", "stage 3 (trending)")])
def test_a_stage_without_its_inputs_names_the_stage_to_run_first(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                                 stage: str, first: str) -> None:
    result = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--stages", stage)
    assert result.code == 2, result.stdout + result.stderr
    assert f"run {first}" in result.stdout
    assert fake_yahoo.log == []


def test_rate_limit_stops_and_prints_how_to_resume_from_that_stage(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.rate_limit_after = 13  # the 12 ETF charts and QQQ's pass; the top sectors' stocks meet the 429
    result = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--stages", "all", "--rate-limit-sleep", "60")
    assert result.code == 75, result.stdout + result.stderr
    assert "--stages trending,stock-history,allocation --end 2025-06-30" in result.stdout
    assert rows(dsn, "SELECT count(*) FROM trending_stocks") == [(0,)]
    assert rows(dsn, "SELECT count(DISTINCT ticker) FROM benchmark_daily_bars") == [(2,)]


def test_the_daily_quota_stops_a_run_with_the_time_to_resume(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--stages", "etf-ohlc", "--daily-quota", "3")
    assert result.code == 75, result.stdout + result.stderr
    assert "daily quota of 3 requests for 'yahoo' used up" in result.stdout
    assert len(fake_yahoo.log) == 3  # cookie, crumb and one chart: then nothing
    stored = rows(dsn, "SELECT day_count FROM backfill_internal.rate_budgets WHERE name = 'yahoo'")
    assert stored == [(3,)]


def test_dry_run_says_what_each_stage_would_do_and_writes_nothing(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--dry-run")
    # An empty database: stages 3-5 would run on what stages 1-4 of the same run store.
    assert result.code == 0, result.stdout + result.stderr
    assert "would read the sponsor's holdings files of 11 sector funds: 0 fresh in the cache, 11 to download" in result.stdout
    lines = {name: [line for line in result.stdout.splitlines() if line.startswith(f"[{name}]")]
             for name in ("trending", "stock-history", "allocation")}
    assert any("would rank the 11 sector funds" in line and "stage etf-ohlc of this run" in line for line in lines["trending"])
    assert any("holdings (fetched in stage 2" in line for line in lines["stock-history"]), lines
    assert any("would weight the top" in line for line in lines["allocation"]), lines
    assert "Pipeline checked: 5 of 5 stage(s) ok" in result.stdout
    assert fake_yahoo.log == []
    assert table_rows(dsn, "etf_daily_bars") == []

    # A stage whose inputs no stage of this run makes still says which stage to run first.
    alone = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--stages", "trending", "--dry-run")
    assert alone.code == 2 and "run stage 1 (etf-ohlc)" in alone.stdout


def test_stage_four_dry_run_counts_the_requests_for_the_whole_universe(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--stages", "etf-holdings").code == 0
    fake_yahoo.reset_log()
    result = run_cli(PIPE, *FAST, "--end", AS_OF.isoformat(), "--stages", "stock-history", "--dry-run", "--rate", "60/min")
    assert result.code == 0, result.stdout + result.stderr
    assert "65 stocks in 11 sector funds" in result.stdout
    # cookie and crumb, then one request per ticker (batched or not: Yahoo's chart endpoint takes one
    # symbol); at 60/min, (67 - 1) seconds at least
    assert "Rate budget 'yahoo': 60/min; 67 request(s) need at least 1 min 6 s" in result.stdout
    assert fake_yahoo.log == []
    # 65 tickers: one line per (action, reason, range), naming its tickers, not a line per ticker
    grouped = [line for line in result.stdout.splitlines() if " ticker(s): " in line]
    assert 1 <= len(grouped) <= 3 and sum(int(line.split(" ticker(s): ")[0].rsplit(" ", 1)[1]) for line in grouped) == 65
    assert len(result.stdout.splitlines()) < 40


def test_bad_stage_is_exit_2(run_cli: CliRunner) -> None:
    result = run_cli(PIPE, "--stages", "2,9")
    assert result.code == 2 and "unknown stage '9'" in result.stderr


def test_a_garbled_cached_holdings_file_is_fetched_again_and_a_fresh_one_is_used(fake_yahoo: FakeYahoo, tmp_path: Any,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.sources.ssga import SsgaHoldings, parse_holdings_file

    for name, value in fake_yahoo.env().items():  # the real default URL, through the fake's tunnel
        monkeypatch.setenv(name, value)
    source = SsgaHoldings(tmp_path, budget=None, backoff_initial=0.01)
    path = tmp_path / "holdings" / "xlk.xlsx"
    path.parent.mkdir()
    path.write_bytes(b"<html>half a page</html>")
    assert source.cached("XLK") is None and path.exists()  # a dry run's peek touches nothing
    got = source.holdings("XLK")
    assert source.requests == 1 and not got.from_cache
    assert list(got.holdings["sponsor_symbol"]) == [s for s, *_ in constituents_for("XLK")]
    assert parse_holdings_file(path.read_bytes(), "XLK").as_of == fake_yahoo.sponsor_as_of  # the good file replaced it
    again = source.holdings("XLK")
    assert again.from_cache and source.requests == 1


def test_an_interrupted_pipeline_names_the_unfinished_stages_with_the_users_own_flags(dsn: str, fake_yahoo: FakeYahoo,
                                                                                       tmp_path: Any) -> None:
    import signal
    import subprocess
    import sys
    import time

    from test.fix_yahoo import ROOT, cli_env

    fake_yahoo.latency = 3.0  # the first stage is still fetching when the stop comes
    argv = [sys.executable, "-m", PIPE, *FAST, "--end", AS_OF.isoformat(), "--stages", "etf-ohlc,trending",
            "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(argv, cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not fake_yahoo.chart_requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_yahoo.chart_requests(), "the first stage never asked Yahoo"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert out.count("Run the unfinished stages with:") == 1, out
    said = out.split("Run the unfinished stages with:\n  ", 1)[1].splitlines()[0]
    assert said.endswith(" --days 25 --delay 0 --retry-wait 0.01 --rate 100000/min --holdings-rate 100000/min "
                         f"--cache-dir {tmp_path / 'cache'} --stages etf-ohlc,trending --end {AS_OF.isoformat()}"), said
