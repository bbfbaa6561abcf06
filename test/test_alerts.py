"""Alerts through Prefect's own automations: with ``BACKFILL_ALERT_URL`` set, ``prefect-local
automations`` installs one that posts to it when a deployment run fails or crashes. A failing run
produces exactly one alert, naming the deployment and saying why; a completed run none."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from test.fake_yahoo import FakeYahoo
from test.fix_prefect import local_prefect_env, prefect_local
from test.fix_yahoo import ROOT, cli_env
from test.prefect_cli import POOL, create_run, prefect, read_run, work_once

pytestmark = pytest.mark.slow


def test_a_failing_deployment_run_alerts_once_and_a_completed_one_not_at_all(
        own_prefect_server: dict[str, str], receiver: tuple[str, list[str]], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    url, bodies = receiver
    env = {**cli_env(fake_yahoo, dsn), **own_prefect_server, "MARKET_BACKFILL_HOME": str(ROOT), "BACKFILL_ALERT_URL": url,
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1", "BACKFILL_LATE_ALERT_S": "10"}
    installed = prefect_local("automations", env)
    assert installed.returncode == 0 and "alert when a deployment run fails" in installed.stderr, installed.stderr
    moved = prefect_local("automations", {**env, "BACKFILL_ALERT_URL": url + "?token=elsewhere"})  # a changed URL is said
    assert moved.returncode == 0 and "Updated: market-backfill-alert (alerts now go to a webhook at 127.0.0.1" in moved.stderr
    assert "token" not in moved.stderr
    back = prefect_local("automations", env)
    assert back.returncode == 0 and "Updated: market-backfill-alert" in back.stderr
    same = prefect_local("automations", env)
    assert same.returncode == 0 and "are up to date: crash detection on, alerts on." in same.stderr, same.stderr
    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    prefect("deploy", "--all", "--no-prompt", env=env)
    api = env["PREFECT_API_URL"]
    done = create_run(api, "daily-pipeline/retention-daily-0600-utc", {})
    failed = create_run(api, "staggered-sector-backfill/weekly-saturday-0600-utc", {"delay_minutes": -3})
    work_once(env, tmp_path / "worker.log")
    assert read_run(api, done)["state"]["type"] == "COMPLETED"
    assert (read_run(api, failed)["state"]["type"], read_run(api, failed)["state"]["name"]) == ("FAILED", "BadInput")
    deadline = time.monotonic() + 90
    while not bodies and time.monotonic() < deadline:
        time.sleep(0.5)
    # Then no worker runs: a due run turns Late (Prefect: after 15 s) and stays Late for 10 s: alerted.
    late = create_run(api, "etf-backfill/shards", {"tickers": ["SPY"], "days": 5})
    deadline = time.monotonic() + 120
    while len(bodies) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(bodies) == 2, bodies  # the failure's alert once (none again meanwhile), then the Late one
    alert, idle = bodies
    assert "deployment staggered-sector-backfill/weekly-saturday-0600-utc" in alert, alert  # the flow named too
    assert "BadInput" in alert and "parameter delay_minutes" in alert, alert
    assert read_run(api, failed)["name"] in alert
    assert f"run {read_run(api, late)['name']} of deployment etf-backfill/shards has been Late for 10 s: no worker took it" in idle
    assert read_run(api, late)["state"]["name"] == "Late"


@pytest.mark.parametrize("window, beat, named", [
    ("100", None, "BACKFILL_CRASH_AFTER_S=100 is shorter than three heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY=180 s, Prefect"
                  " default): live runs would be marked Crashed. Set BACKFILL_CRASH_AFTER_S to at least 540, or"
                  " PREFECT_FLOWS_HEARTBEAT_FREQUENCY to at most 33 here and on every worker"),
    (None, "200", "BACKFILL_CRASH_AFTER_S=540 is shorter than three heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY=200 s)"),
    ("89", "30", "Set BACKFILL_CRASH_AFTER_S to at least 90"),
])
def test_a_crash_window_shorter_than_three_heartbeats_is_refused_naming_both(tmp_path: Path, pg_server: tuple[str, Path | None],
                                                                            window: str | None, beat: str | None, named: str) -> None:
    env = local_prefect_env(tmp_path / "home", pg_server)
    env |= {k: v for k, v in (("BACKFILL_CRASH_AFTER_S", window), ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", beat)) if v is not None}
    done = prefect_local("start", env, in_process=True)
    assert done.returncode == 2 and named in done.stderr, done.stderr
    assert not (tmp_path / "home" / "server.json").exists()


@pytest.mark.parametrize("url", ["not a url", "ftp://hooks.example/x?token=s3cr3t", "http://", "https:///path", "http://h:99999/",
                                 "http://[::1/hook"])
@pytest.mark.parametrize("action", ["start", "automations"])
def test_an_alert_url_that_is_no_http_url_is_refused_before_anything_starts(tmp_path: Path, pg_server: tuple[str, Path | None],
                                                                           url: str, action: str) -> None:
    env = {**local_prefect_env(tmp_path / "home", pg_server), "BACKFILL_ALERT_URL": url, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = prefect_local(action, env, in_process=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("error: BACKFILL_ALERT_URL must be an http:// or https:// URL with a host (a webhook: Slack, Teams,"
                                   " a relay to mail); the value set is not one (not shown: a webhook's URL usually holds its token)")
    assert not (tmp_path / "home" / "server.json").exists()
