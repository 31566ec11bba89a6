"""``make demo``: the nightly CMDB sync, twice, against the sandbox, on the embedded defaults.

1. serves a 50,000-CI ServiceNow sandbox on loopback (in this process);
2. runs the `scheduled-sync` flow for `cmdb-nightly` on a local Prefect server (a temporary
   one, with its SQLite database under ``$PREFECT_HOME``, unless ``PREFECT_API_URL`` names
   one), loading every CI into ``.syncline/reporting.db``;
3. changes 1% of the CIs in the sandbox (and adds two that cannot be mapped);
4. runs the flow again: the incremental run touches only those;
5. posts a signed PagerDuty alert to the webhook gateway (in this process, with the warm
   incident path) and shows the ServiceNow incident the `alert-to-incident` flow opened;
6. escalates an incident of the development group to a Jira sandbox through the gateway
   (signed Jira webhooks, ServiceNow outbound REST, the warm escalation path), and shows a
   Jira comment becoming a work note and a work note becoming a comment, once each;
7. prints where to look, and exits with nothing left running.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from connectors.sql import make_engine
from sandboxes.core.server import BackgroundServer
from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig
from sandboxes.servicenow.admin import build_app
from syncline.settings import SynclineSettings
from syncline.specs import IntegrationSpec, find_spec
from syncline.state import Ledger, dead_letters, record_links
from syncline.sync import SyncSummary, summary_row
from syncline.two_way_summary import TwoWaySummary
from syncline_app.devstack import JIRA_STATE, SANDBOX_STATE, temporary_prefect_server

# Before Prefect is imported (the flows are, later): no telemetry, a patient first start.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The gateway and the incident path log outside flow runs too: those lines stay local.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

INTEGRATION = "cmdb-nightly"
CIS = int(os.environ.get("SYNCLINE_DEMO_CIS", "50000"))


def _say(text: str) -> None:
    print(text, flush=True)


def main() -> int:
    settings = SynclineSettings()
    reporting_url = os.environ.setdefault(
        "SYNCLINE_REPORTING_DB_URL", f"sqlite:///{settings.home / 'reporting.db'}"
    )
    os.environ.setdefault("SYNCLINE_SERVICENOW_USER", "admin")
    os.environ.setdefault("SYNCLINE_SERVICENOW_PASSWORD", "sandbox")

    started = time.perf_counter()
    _say(f"Seeding a ServiceNow sandbox with {CIS:,} servers ...")
    # The outbound REST message sends sys_mod_count, as the README's business rule does.
    sandbox = ServiceNowSandbox(
        ServiceNowSandboxConfig(cmdb_ci_server=CIS, outbound_fields=["sys_mod_count"])
    )
    spec, ledger, reporting = _fresh_state(settings, reporting_url)
    # The Prefect server first: it dies with this process (see temporary_prefect_server),
    # and is forked before the sandbox's thread exists.
    with temporary_prefect_server(settings.home), BackgroundServer(build_app(sandbox)) as server:
        os.environ["SYNCLINE_SERVICENOW_URL"] = server.url
        _run_twice(sandbox)
        _alert_to_incident(sandbox)
        _escalation(sandbox, server.url)
    sandbox.save(settings.home / SANDBOX_STATE)  # `make up` serves this same world

    with reporting.connect() as connection:
        rows = connection.execute(sa.text(f"SELECT count(*) FROM {spec.target.object}")).scalar()
    reporting.dispose()
    pending = ledger.dead_letters(INTEGRATION)
    database = reporting_url.removeprefix("sqlite:///")
    _say(
        f"\nDone in {time.perf_counter() - started:.0f}s. {rows:,} servers in the report, "
        f"{len(pending)} dead letter(s) waiting.\n"
        "\nWhere to look (`make up` serves this same sandbox world):\n"
        "  Prefect UI         make up, then http://127.0.0.1:4200 (Runs; Artifacts: "
        f"sync-{INTEGRATION})\n"
        f"  reporting DB       {database}  e.g.\n"
        f'                     sqlite3 {database} "SELECT ci_id, name, status, ram_mb '
        f'FROM {spec.target.object} LIMIT 5"\n'
        f"  dead letters       .venv/bin/syncline dead-letters {INTEGRATION}\n"
        f"  ledger             {settings.ledger()}"
    )
    ledger.dispose()
    return 0


def _fresh_state(
    settings: SynclineSettings, reporting_url: str
) -> tuple[IntegrationSpec, Ledger, sa.Engine]:
    """A demo starts from scratch each time: no cursor, no report, no dead letters."""
    spec = find_spec(settings.specs_dir, INTEGRATION)
    ledger = Ledger(settings.ledger())
    ledger.reset_cursor(INTEGRATION)
    with ledger.engine.begin() as connection:
        connection.execute(sa.delete(dead_letters).where(dead_letters.c.integration == INTEGRATION))
    reporting = make_engine(reporting_url)
    with reporting.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {spec.target.object}"))
    return spec, ledger, reporting


def _show(title: str, summary: SyncSummary | TwoWaySummary) -> None:
    assert isinstance(summary, SyncSummary), "the demo's integration is one-way"
    row = summary_row(summary)
    _say(f"\n{title}")
    for name in ("read", "created", "updated", "unchanged", "dead_lettered", "deleted",
                 "cursor_before", "cursor_after", "api_calls", "duration_s"):  # fmt: skip
        _say(f"  {name:<14} {row[name]}")


def _in_scope(sandbox: ServiceNowSandbox, sys_id: str) -> bool:
    return (sandbox.get("cmdb_ci_server", sys_id) or {}).get("install_status") != "7"


def _run_twice(sandbox: ServiceNowSandbox) -> None:
    from flows.scheduled_sync import scheduled_sync

    _say("Run 1: full load (the first run has no cursor) ...")
    _show("Run 1 (first, full)", scheduled_sync(INTEGRATION))
    changed = sandbox.touch("cmdb_ci_server", CIS // 100, seed=int(time.time()))
    for name, ram, status in (("demo-bad-ram", "a lot", "1"), ("demo-bad-status", "16", "99")):
        sandbox.insert(
            "cmdb_ci_server",
            {"name": name, "ram": ram, "install_status": "1", "operational_status": status},
        )
    # Retire three reported CIs: leaving the filter's scope, they leave the report too.
    reported = [sys_id for sys_id in changed if _in_scope(sandbox, sys_id)][:3]
    for sys_id in reported:
        sandbox.update("cmdb_ci_server", sys_id, {"install_status": "7"})
    _say(
        f"\nChanged {len(changed):,} CIs in the sandbox, retired {len(reported)} of them "
        "(install_status 7, which the spec's filter leaves out: they leave the report) and "
        "added 2 that cannot be mapped."
    )
    # A run reads changes up to the second before it starts; let this one pass.
    time.sleep(1.02 - time.time() % 1)
    _say("Run 2: incremental ...")
    _show("Run 2 (incremental)", scheduled_sync(INTEGRATION))


# The demo gateway's own secret: it lives on loopback for one command.
DEMO_PAGERDUTY_SECRET = "demo-pagerduty-secret-0123456789"  # noqa: S105
ALERTS = "alert-to-servicenow"


def _alert_to_incident(sandbox: ServiceNowSandbox) -> None:
    """One signed PagerDuty alert through the gateway and its warm path into an incident."""
    import hashlib
    import hmac
    import json

    import httpx

    from syncline.outbox import GatewayOutbox
    from syncline_app.gateway.app import create_app
    from syncline_app.gateway.config import GatewaySettings, load_gateway_config
    from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI
    from syncline_app.incident_path import IncidentPath, with_incident_path

    environ = {"SYNCLINE_GATEWAY_PAGERDUTY_SECRET": DEMO_PAGERDUTY_SECRET}
    only_pagerduty = GatewaySettings(disabled="datadog,dynatrace,jira,servicenow,generic")
    outbox = GatewayOutbox(SynclineSettings().ledger())
    # Each demo seeds a new sandbox world: links to the incidents of an earlier one are void.
    with outbox.engine.begin() as connection:
        connection.execute(sa.delete(record_links).where(record_links.c.integration == ALERTS))
    forwarder = OutboxForwarder(outbox, PrefectEventsAPI.from_prefect_settings())
    gateway = create_app(load_gateway_config(environ, settings=only_pagerduty), outbox, forwarder)
    alert_key = f"PDEMO{int(time.time())}"
    body = json.dumps(
        {"event": {"id": f"evt-{alert_key}", "event_type": "incident.triggered",
                   "resource_type": "incident", "occurred_at": "2026-01-05T10:00:00Z",
                   "agent": None, "client": None,
                   "data": {"id": alert_key, "type": "incident", "number": 1,
                            "status": "triggered", "title": "Checkout latency above SLO",
                            "service": {"id": "PF9KMXH", "summary": "checkout"},
                            "urgency": "high",
                            "html_url": f"https://acme.pagerduty.com/incidents/{alert_key}"}}}
    ).encode()  # fmt: skip
    signature = hmac.new(DEMO_PAGERDUTY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    _say("\nAlert: a signed PagerDuty webhook to the gateway ...")
    with BackgroundServer(with_incident_path(gateway, IncidentPath())) as served:
        answer = httpx.post(
            f"{served.url}/hooks/pagerduty",
            content=body,
            headers={"Content-Type": "application/json", "X-PagerDuty-Signature": f"v1={signature}",
                     "X-Webhook-Id": f"demo-{alert_key}"},
        )  # fmt: skip
        _say(f"  POST /hooks/pagerduty -> {answer.status_code} {answer.text}")
        accepted, incident = time.perf_counter(), None
        while incident is None and time.perf_counter() - accepted < 30:
            time.sleep(0.05)
            incident = next(
                (r for r in sandbox.records("incident")
                 if r.get("correlation_id") == f"pagerduty:{alert_key}"),
                None,
            )  # fmt: skip
        waited = time.perf_counter() - accepted
    outbox.dispose()
    if incident is None:
        _say("  no incident after 30 s: see the alert-to-incident flow runs in the UI")
        return
    _say(f"  incident {incident['number']} opened {waited:.2f}s after the 202:")
    for name in ("short_description", "impact", "urgency", "priority", "assignment_group",
                 "category", "correlation_id", "state"):  # fmt: skip
        _say(f"    {name:<18} {incident.get(name)}")


# --- ServiceNow ↔ Jira escalation ---------------------------------------------------------

ESCALATION = "servicenow-jira-escalation"
# The demo gateway's own secrets, as above.
DEMO_JIRA_SECRET = "demo-jira-secret-0123456789"  # noqa: S105
DEMO_SERVICENOW_TOKEN = "demo-servicenow-token-0123456789"  # noqa: S105


def _forget_escalation(ledger: Ledger) -> None:
    """A demo's Jira sandbox starts empty (ESC-1 again): the ledger forgets the last demo's
    pairs, journal links, carried events and cursors of the escalation."""
    from syncline.journal_links import journal_links, record_event_applications
    from syncline.state import cursors, record_links

    with ledger.engine.begin() as connection:
        for table in (record_links, dead_letters, journal_links, record_event_applications):
            connection.execute(sa.delete(table).where(table.c.integration == ESCALATION))
        connection.execute(sa.delete(cursors).where(cursors.c.integration.like(f"{ESCALATION}%")))


def _wait(check: Callable[[], Any], timeout: float = 20.0) -> tuple[Any, float]:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        found = check()
        if found:
            return found, time.perf_counter() - started
        time.sleep(0.05)
    return None, time.perf_counter() - started


def _escalation(sandbox: ServiceNowSandbox, instance_url: str) -> None:
    """One incident escalated to Jira, one comment crossing each way."""
    import httpx

    from connectors.jira import adf_to_text, text_to_adf
    from sandboxes.core.server import free_port
    from sandboxes.jira import JiraSandbox, JiraSandboxConfig
    from sandboxes.jira.admin import build_app as build_jira_app
    from syncline.outbox import GatewayOutbox
    from syncline_app.escalation_path import EscalationPath, with_escalation_path
    from syncline_app.gateway.app import create_app
    from syncline_app.gateway.config import GatewaySettings, load_gateway_config
    from syncline_app.gateway.forwarder import OutboxForwarder, PrefectEventsAPI

    ledger = Ledger(SynclineSettings().ledger())
    _forget_escalation(ledger)
    ledger.dispose()
    port = free_port()
    jira = JiraSandbox(
        JiraSandboxConfig(issues=0, projects=["ESC"], site_url=f"http://127.0.0.1:{port}")
    )
    environ = {
        "SYNCLINE_GATEWAY_JIRA_SECRET": DEMO_JIRA_SECRET,
        "SYNCLINE_GATEWAY_SERVICENOW_SECRET": DEMO_SERVICENOW_TOKEN,
    }
    records_only = GatewaySettings(disabled="datadog,dynatrace,pagerduty,generic")
    outbox = GatewayOutbox(SynclineSettings().ledger())
    forwarder = OutboxForwarder(outbox, PrefectEventsAPI.from_prefect_settings())
    gateway = create_app(load_gateway_config(environ, settings=records_only), outbox, forwarder)
    _say("\nEscalation: a ServiceNow incident of the Development group, to Jira and back ...")
    with (
        BackgroundServer(build_jira_app(jira), port=port) as jira_server,
        BackgroundServer(with_escalation_path(gateway, EscalationPath())) as served,
        httpx.Client(base_url=instance_url, auth=("admin", "sandbox"), timeout=10) as sn,
        httpx.Client(
            base_url=jira_server.url, auth=("integration@example.com", "sandbox-api-token")
        ) as jira_api,
    ):
        os.environ["SYNCLINE_JIRA_URL"] = jira_server.url
        os.environ.setdefault("SYNCLINE_JIRA_API_TOKEN", "sandbox-api-token")
        jira.register_webhook(f"{served.url}/hooks/jira", DEMO_JIRA_SECRET, jql="project = ESC")
        sandbox.register_outbound_rest(f"{served.url}/hooks/servicenow", DEMO_SERVICENOW_TOKEN)
        sn.post("/api/now/table/sys_user_group", json={"name": "Development"})
        body = {
            "short_description": "Checkout rejects EU cards after release 4.2",
            "assignment_group": "Development",
            "impact": "1",
            "urgency": "2",  # priority 2 - High, by the instance's lookup
        }
        sys_id = sn.post("/api/now/table/incident", json=body).json()["result"]["sys_id"]

        def incident() -> dict[str, Any]:
            return sandbox.get("incident", sys_id) or {}

        key, waited = _wait(lambda: str(incident().get("correlation_id", "")).startswith("ESC-"))
        key = incident().get("correlation_id") if key else None
        if not key:
            _say("  no Jira issue after 20 s: see the servicenow-jira-escalation flow runs")
            return
        fields = jira.issue(key)["fields"]
        _say(
            f"  {incident()['number']} -> Jira {key} in {waited:.2f}s: {fields['summary']!r}, "
            f"priority {fields['priority']['name']}, status {fields['status']['name']}"
        )

        def notes() -> list[str]:
            rows = sandbox.records("sys_journal_field")
            return [
                r["value"]
                for r in rows
                if r["element_id"] == sys_id and r["element"] == "work_notes"
            ]

        def comments() -> list[str]:
            page = jira_api.get(f"/rest/api/3/issue/{key}/comment").json()
            return [adf_to_text(comment["body"]) for comment in page["comments"]]

        found = {"body": text_to_adf("Root cause found: a stale BIN table.")}
        jira_api.post(f"/rest/api/3/issue/{key}/comment", json=found)
        note, waited = _wait(lambda: notes()[-1] if notes() else None)
        _say(f"  Jira comment -> work note in {waited:.2f}s: {note!r}")
        sn.patch(f"/api/now/table/incident/{sys_id}", json={"work_notes": "Customers informed."})
        comment, waited = _wait(lambda: comments()[-1] if len(comments()) > 1 else None)
        _say(f"  work note -> Jira comment in {waited:.2f}s: {comment!r}")
        time.sleep(1.0)  # Syncline's own writes come back as webhooks: carried, not echoed
        _say(f"  now {len(notes())} work notes and {len(comments())} comments: none echoed")
    jira.save(SynclineSettings().home / JIRA_STATE)  # `make up` serves this same site
    sandbox.close()
    jira.close()
    outbox.dispose()


if __name__ == "__main__":
    sys.exit(main())
