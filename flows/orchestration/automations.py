"""The Prefect automations an unattended installation needs, created once per server
(``prefect-local start`` does it; ``prefect-local automations`` does it for a managed server).

- **Crashed runs are noticed.** Every flow run of a deployment sends a heartbeat event
  (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, 180 s by default in Prefect 3.9). When a run stops sending
  them without reaching a final state (its worker or machine was killed), the automation sets it
  ``Crashed`` after ``BACKFILL_CRASH_AFTER_S`` seconds (default 540: three missed heartbeats), so a
  pool's concurrency slot is freed and the operator sees what happened. A window shorter than three
  heartbeats would mark live runs Crashed: it is refused, naming both settings (the heartbeat of
  this environment; give every worker the same). Prefect's own recipe ("detect zombie flows"), made
  idempotent: an automation of the same name is replaced only when told (``BACKFILL_CRASH_AFTER_S``
  set) and its settings changed; a plain ``prefect-local start`` keeps the window that was set.
- **Alerts** (when ``BACKFILL_ALERT_URL`` is set): a deployment run that ends Failed (a failure, bad
  input, or rate-limited with its continuations used up) or Crashed posts one message to that URL
  (a webhook: Slack, Teams, a relay to mail; the Webhook block ``market-backfill-alert`` holds it):
  the deployment, the run, its state and its state message (which carries the resume command).
- **Nothing runs** (alerts on): a run that stays ``Late`` (due, and no worker took it: every worker
  of its pool is down) for ``BACKFILL_LATE_ALERT_S`` seconds (default 900) posts one message there too.
"""

from __future__ import annotations

import urllib.parse
from datetime import timedelta
from typing import Any

from flows.config import env
from tasks.core.errors import BadInput

CRASH_AUTOMATION = "market-backfill: crash runs that stopped sending heartbeats"
CRASH_AFTER_S = 540.0
HEARTBEAT_S = 180  # Prefect's default PREFECT_FLOWS_HEARTBEAT_FREQUENCY (its least: 30)


def heartbeat_s() -> int:
    """``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` in this environment, else Prefect's default.

    Raises:
        BadInput: not a whole number of seconds of at least 30 (what Prefect accepts).
    """
    text = env("PREFECT_FLOWS_HEARTBEAT_FREQUENCY") or str(HEARTBEAT_S)
    if not text.isdigit() or int(text) < 30:
        raise BadInput(f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY must be a whole number of seconds, at least 30: {text!r}")
    return int(text)


def crash_after_s() -> float:
    """``BACKFILL_CRASH_AFTER_S``, else CRASH_AFTER_S: at least three heartbeats.

    Raises:
        BadInput: not a number, over a day, or shorter than three heartbeats (a live run, between
            two of its heartbeats, would be marked Crashed).
    """
    text = env("BACKFILL_CRASH_AFTER_S")
    beat = heartbeat_s()
    if not text:
        value = CRASH_AFTER_S
    else:
        try:
            value = float(text)
        except ValueError:
            raise BadInput(f"BACKFILL_CRASH_AFTER_S must be a number of seconds: {text!r}") from None
        if not 0 < value <= 86_400:
            raise BadInput(f"BACKFILL_CRASH_AFTER_S must be a number of seconds up to 86400: {text!r}")
    if value < 3 * beat:
        raise BadInput(f"BACKFILL_CRASH_AFTER_S={value:g} is shorter than three heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY="
                       f"{beat} s{'' if env('PREFECT_FLOWS_HEARTBEAT_FREQUENCY') else ', Prefect default'}): live runs"
                       f" would be marked Crashed. Set BACKFILL_CRASH_AFTER_S to at least {3 * beat}, or"
                       f" PREFECT_FLOWS_HEARTBEAT_FREQUENCY to at most {max(30, int(value // 3))} here and on every worker")
    return value


def silence_after(event: str, within_s: float) -> Any:
    """A trigger that fires for a flow run that sent ``event`` and then no flow-run event at all for
    ``within_s`` seconds (any later state or heartbeat of that run disarms it)."""
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return EventTrigger(after={event}, expect={"prefect.flow-run.*"},
                        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1, within=timedelta(seconds=within_s))


def crash_automation(within_s: float) -> Any:
    """Prefect's zombie-run automation: no flow-run event within ``within_s`` after a heartbeat → Crashed."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState

    return Automation(
        name=CRASH_AUTOMATION,
        description="Marks a flow run Crashed when its heartbeats stop before it ends (its process or machine died).",
        trigger=silence_after("prefect.flow-run.heartbeat", within_s),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, name="Crashed", force=False,
                                    message=f"Crashed: no heartbeat for {within_s:.0f} s (its process or machine died). "
                                            "Its committed work is kept; the next run resumes it.")],
    )


ALERT_AUTOMATION = "market-backfill: alert when a deployment run fails or crashes"
ALERT_BLOCK = "market-backfill-alert"
RUN_LINK = "{% set link = flow_run|ui_url %}{% if link %}The run in Prefect's UI: {{ link }}\n{% endif %}"
ALERT_PAYLOAD = (
    "Prefect: deployment {{ flow.name }}/{{ deployment.name }}, run {{ flow_run.name }} ended {{ flow_run.state.name }}.\n"
    "{{ flow_run.state.message }}\n" + RUN_LINK
)
LATE_AUTOMATION = "market-backfill: alert when a due run stays Late (no worker took it)"
LATE_AFTER_S = 900.0


def late_after_s() -> float:
    """``BACKFILL_LATE_ALERT_S`` (seconds a run may stay Late before the alert), else LATE_AFTER_S.

    Raises:
        BadInput: not a number of seconds from 10 to 86400.
    """
    text = env("BACKFILL_LATE_ALERT_S")
    if not text:
        return LATE_AFTER_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 10 <= value <= 86_400:
        raise BadInput(f"BACKFILL_LATE_ALERT_S must be a number of seconds from 10 to 86400: {text!r}")
    return value


def late_automation(block_id: Any, within_s: float) -> Any:
    """A run that turned Late and has no other state within ``within_s`` (no worker took it) → one
    POST through the webhook block ``block_id``."""
    from prefect.automations import Automation
    from prefect.events.actions import CallWebhook

    payload = ("Prefect: run {{ flow_run.name }} of deployment {{ flow.name }}/{{ deployment.name }} has been Late for "
               f"{within_s:.0f} s: no worker took it. Is a worker of its pool running (prefect worker start --pool ...)?\n"
               + RUN_LINK)
    return Automation(
        name=LATE_AUTOMATION,
        description="Posts to BACKFILL_ALERT_URL when a due run stays Late: no worker runs for its pool.",
        trigger=silence_after("prefect.flow-run.Late", within_s),
        actions=[CallWebhook(block_document_id=block_id, payload=payload)],
    )


def alert_automation(block_id: Any) -> Any:
    """Failed (any name: BadInput, RateLimited with its continuations used up) or Crashed, of a
    deployment's run → one POST of ``ALERT_PAYLOAD`` through the webhook block ``block_id``."""
    from prefect.automations import Automation
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=ALERT_AUTOMATION,
        description="Posts the run's state and message to BACKFILL_ALERT_URL.",
        trigger=EventTrigger(expect={"prefect.flow-run.*"},
                             match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*",
                                                          "prefect.state-type": ["FAILED", "CRASHED"]}),
                             match_related=ResourceSpecification({"prefect.resource.role": "deployment"}),
                             posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=[CallWebhook(block_document_id=block_id, payload=ALERT_PAYLOAD)],
    )


def alert_url() -> str | None:
    """``BACKFILL_ALERT_URL``, checked: an http(s) URL with a host, or None when unset.

    Raises:
        BadInput: anything else (never quoted: a webhook's URL usually holds its token).
    """
    text = (env("BACKFILL_ALERT_URL") or "").strip()
    if not text:
        return None
    try:
        parts = urllib.parse.urlsplit(text)
        scheme, host = parts.scheme, parts.hostname
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:  # a malformed URL (an unclosed "[", a bad port) raises as it is split or read
        scheme, host = "", None
    if scheme not in ("http", "https") or not host or any(c.isspace() for c in text):
        raise BadInput("BACKFILL_ALERT_URL must be an http:// or https:// URL with a host (a webhook: Slack, Teams, a relay"
                       " to mail); the value set is not one (not shown: a webhook's URL usually holds its token)")
    return text


def alert_block(url: str) -> tuple[Any, bool]:
    """The Webhook block that holds ``url`` (saved, overwriting an older one): its id, and whether
    the URL it held before was another one (or there was none)."""
    from prefect.blocks.webhook import Webhook

    try:
        before = Webhook.load(ALERT_BLOCK, _sync=True).url.get_secret_value()  # type: ignore[union-attr,call-arg]
    except ValueError:  # no such block yet
        before = None
    block = Webhook.model_validate({"method": "POST", "url": url, "headers": {"Content-Type": "text/plain; charset=utf-8"}})
    return block.save(ALERT_BLOCK, overwrite=True), before != url


def ensure_automations() -> list[str]:
    """Create (or bring up to date) the automations on the server ``PREFECT_API_URL`` names; what changed.

    Raises:
        BadInput: a setting is unusable.
    """
    from prefect.client.orchestration import get_client

    window = crash_after_s()
    told = bool(env("BACKFILL_CRASH_AFTER_S"))  # without it, a window set before is kept
    wanted = [crash_automation(window)]
    url = alert_url()
    changed = []
    if url:
        late = late_after_s()
        block_id, new_url = alert_block(url)
        wanted += [alert_automation(block_id), late_automation(block_id, late)]
        if new_url:
            host = urllib.parse.urlsplit(url).hostname
            changed.append(f"{ALERT_BLOCK} (alerts now go to a webhook at {host}; its URL is kept in that block, not shown)")
    with get_client(sync_client=True) as client:
        for automation in wanted:
            existing = client.read_automations_by_name(name=automation.name)
            same = [a for a in existing if a.trigger == automation.trigger and a.actions == automation.actions and a.enabled]
            if same and len(existing) == 1:
                continue
            if automation.name == CRASH_AUTOMATION and existing and not told:
                continue  # a window set before (BACKFILL_CRASH_AFTER_S then) stays until it is set again
            for old in existing:
                client.delete_automation(old.id)
            automation.create()
            changed.append(automation.name)
    return changed
