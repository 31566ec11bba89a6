"""The escalation phase of ``bench/event_latency.py``: a Jira comment → a ServiceNow work note.

The Jira sandbox runs as a process of its own; its admin webhook (signed ``X-Hub-Signature``)
and the ServiceNow sandbox's outbound REST message are registered with the gateway only when
this phase starts (so the alert phases are measured without record-change traffic). One
incident assigned to the development group is escalated; then comments are added to its issue
at a steady rate, and the ServiceNow journal is polled every 50 ms.

Per comment: from Jira's answer to the comment's POST to the work note carrying its marker
visible in ``sys_journal_field``. ``echo_writes``: entries Syncline wrote back that were its
own, counted at the end, once the traffic its writes caused has been carried: Jira comments
holding a ServiceNow work note's marker (no person wrote a work note here) and work notes
beyond one per comment. It must be 0.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

JIRA_EMAIL = "integration@example.com"
JIRA_TOKEN = "sandbox-api-token"  # the sandbox's published demo token
SANDBOX_AUTH = ("admin", "sandbox")
GROUP = "Development"
NOTE_MARKER = re.compile(r"\[Syncline: Jira comment (\d+)\]\s*$")
COMMENT_MARKER = "[Syncline: ServiceNow work note"


def _adf(text: str) -> dict[str, Any]:
    paragraph = {"type": "paragraph", "content": [{"type": "text", "text": text}]}
    return {"type": "doc", "version": 1, "content": [paragraph]}


@dataclass
class CommentRun:
    servicenow: str
    jira: str
    gateway: str
    secrets: dict[str, str]
    accepted: dict[str, float] = field(default_factory=dict)  # comment id -> answered at
    seen: dict[str, float] = field(default_factory=dict)  # comment id -> note visible at
    sys_id: str = ""
    key: str = ""

    def clients(self) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        sn = httpx.AsyncClient(base_url=self.servicenow, auth=SANDBOX_AUTH, timeout=30)
        jira = httpx.AsyncClient(base_url=self.jira, auth=(JIRA_EMAIL, JIRA_TOKEN), timeout=30)
        return sn, jira

    async def connect(self, sn: httpx.AsyncClient, jira: httpx.AsyncClient) -> None:
        """The integration's webhooks, pointed at the gateway."""
        hook = {
            "name": "Syncline",
            "url": f"{self.gateway}/hooks/jira",
            "events": ["jira:issue_created", "jira:issue_updated", "comment_created"],
            "filters": {"issue-related-events-section": "project = ESC"},
            "secret": self.secrets["jira"],
        }
        (await jira.post("/rest/webhooks/1.0/webhook", json=hook)).raise_for_status()
        outbound = {
            "url": f"{self.gateway}/hooks/servicenow",
            "header_value": self.secrets["servicenow"],
            "name": "Syncline",
        }
        answer = await sn.post("/sandbox/servicenow/outbound-rest", json=outbound)
        answer.raise_for_status()

    async def escalate(self, sn: httpx.AsyncClient, timeout: float) -> None:
        await sn.post("/api/now/table/sys_user_group", json={"name": GROUP})
        body = {"short_description": "Checkout errors after release 4.2", "assignment_group": GROUP}
        created = await sn.post("/api/now/table/incident", json=body)
        created.raise_for_status()
        self.sys_id = str(created.json()["result"]["sys_id"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            incident = await sn.get(f"/api/now/table/incident/{self.sys_id}")
            key = str(incident.json()["result"].get("correlation_id") or "")
            if key.startswith("ESC-"):
                self.key = key
                return
            await asyncio.sleep(0.1)
        raise SystemExit(f"the incident was not escalated within {timeout:.0f} s")

    async def poll_notes(self, sn: httpx.AsyncClient, stop: asyncio.Event) -> None:
        params = {
            "sysparm_query": f"element_id={self.sys_id}^element=work_notes",
            "sysparm_fields": "value",
            "sysparm_limit": "10000",
        }
        while not stop.is_set():
            answer = await sn.get("/api/now/table/sys_journal_field", params=params)
            now = time.monotonic()
            for row in answer.json()["result"]:
                found = NOTE_MARKER.search(str(row["value"]))
                if found:
                    self.seen.setdefault(found.group(1), now)
            await asyncio.sleep(0.05)

    async def comment(self, jira: httpx.AsyncClient, number: int) -> None:
        body = {"body": _adf(f"Progress update {number}: canary at {number}%.")}
        answer = await jira.post(f"/rest/api/3/issue/{self.key}/comment", json=body)
        answer.raise_for_status()
        self.accepted[str(answer.json()["id"])] = time.monotonic()

    async def echo_writes(self, sn: httpx.AsyncClient, jira: httpx.AsyncClient) -> int:
        comments = (await jira.get(f"/rest/api/3/issue/{self.key}/comment")).json()
        copied_back = sum(COMMENT_MARKER in str(c["body"]) for c in comments["comments"])
        params = {"sysparm_query": f"element_id={self.sys_id}^element=work_notes"}
        notes = (await sn.get("/api/now/table/sys_journal_field", params=params)).json()
        return copied_back + max(0, len(notes["result"]) - len(self.accepted))

    def latencies(self) -> list[float]:
        return [self.seen[c] - at for c, at in self.accepted.items() if c in self.seen]


async def measure_comments(
    servicenow: str,
    jira: str,
    gateway: str,
    secrets: dict[str, str],
    *,
    comments: int,
    interval: float,
    progress: Any,
) -> dict[str, Any]:
    run = CommentRun(servicenow, jira, gateway, secrets)
    sn, jira_client = run.clients()
    async with sn, jira_client:
        await run.connect(sn, jira_client)
        await run.escalate(sn, timeout=60)
        progress(f"escalated {run.sys_id} as {run.key}; {comments} comments, 1 every {interval} s")
        stop = asyncio.Event()
        poller = asyncio.create_task(run.poll_notes(sn, stop))
        start = time.monotonic()
        for number in range(comments):
            await asyncio.sleep(max(0.0, start + number * interval - time.monotonic()))
            await run.comment(jira_client, number + 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and set(run.accepted) - set(run.seen):
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # the webhooks of Syncline's own writes are carried too
        stop.set()
        await poller
        echoes = await run.echo_writes(sn, jira_client)
    return {
        "latencies": run.latencies(),
        "sent": len(run.accepted),
        "lost": len(set(run.accepted) - set(run.seen)),
        "echo_writes": echoes,
    }
