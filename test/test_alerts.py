"""Alerts and crash detection refuse settings that cannot work before anything starts. (The alerts
themselves, through Prefect's own automations on a live server, are tested in test_crashes.py:
a failing run alerts once, a completed one not at all, a crash and a Late run once each.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from test.fix_prefect import local_prefect_env, prefect_local


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
