"""The deployment definitions load, point at real flows, and carry the stated UTC schedules."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STATED = {  # deployment name → (flow name, cron): what the issue and README promise
    "weekdays-0900-utc": ("daily-pipeline", "0 9 * * 1-5"),
    "retention-daily-0600-utc": ("daily-pipeline", "0 6 * * *"),
    "weekly-saturday-0600-utc": ("staggered-sector-backfill", "0 6 * * 6"),
    "daily-2230-utc": ("event-valuation", "30 22 * * *"),
    "every-10-minutes": ("jsonl-ingest", "*/10 * * * *"),
    "shards": ("etf-backfill", None),
    "on-demand": ("backfill", None),
    "watchlist-weekdays-2215-utc": ("backfill", "15 22 * * 1-5"),
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))


def test_prefect_yaml_deployments_have_the_stated_schedules_and_every_parameter(spec: dict[str, Any]) -> None:
    found = {d["name"]: d for d in spec["deployments"]}
    assert set(found) == set(STATED)
    for name, (flow_name, cron) in STATED.items():
        deployment = found[name]
        assert deployment["schedules"] == ([{"cron": cron, "timezone": "UTC"}] if cron else [])
        path, attr = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attr)
        assert flow.name == flow_name
        # every parameter of the flow is spelled out (so the UI shows it), and nothing else
        assert set(deployment["parameters"]) == set(flow.parameters.properties), name


def test_runner_deployments_match_prefect_yaml(spec: dict[str, Any]) -> None:
    from flows.deployments import deployments

    built = {d.name: d for d in deployments()}
    assert set(built) == set(STATED)
    by_name = {d["name"]: d for d in spec["deployments"]}
    for name, (flow_name, cron) in STATED.items():
        deployment = built[name]
        assert deployment.flow_name == flow_name
        assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == ([(cron, "UTC")] if cron else [])
        assert deployment.entrypoint == f"flows/deployments.py:{flow_name.replace('-', '_')}"
        assert deployment.parameters == by_name[name]["parameters"]
        limit = by_name[name].get("concurrency_limit")  # the same concurrency both ways: one run at a time, the next waits
        assert (limit == {"limit": 1, "collision_strategy": "ENQUEUE"}) == (cron is not None and flow_name != "event-valuation")
        options = deployment.concurrency_options
        got = None if deployment.concurrency_limit is None else (deployment.concurrency_limit, options and options.collision_strategy)
        assert got == ((1, "ENQUEUE") if limit else None)
