"""The warm escalation path: a Jira comment or a ServiceNow change crosses within a second.

A warm path (``syncline_app.warm_path``) that runs ``servicenow-jira-escalation`` in-process,
in the gateway's process (``with_escalation_path``) or one of its own (``python -m
syncline_app.escalation_path``). One lease per integration in the ledger keeps the warm path
and the deployment's runs from carrying the same change at once: the path starts a run only
when events wait and nobody holds the lease.
"""

from __future__ import annotations

from datetime import UTC, datetime

from syncline.escalation import event_prefix
from syncline.journal_links import EscalationLedger
from syncline.settings import SynclineSettings
from syncline.specs import find_integration
from syncline.state import Ledger
from syncline.two_way import TwoWaySpec
from syncline_app.warm_path import ASGIApp, WarmPath, serve_path, with_warm_path

DEFAULT_INTEGRATION = "servicenow-jira-escalation"


class EscalationPath(WarmPath):
    """Carries record-change events by running ``servicenow-jira-escalation`` in-process."""

    name = "escalation path"
    hooks = ("/hooks/jira", "/hooks/servicenow")

    def __init__(
        self,
        *,
        integration: str = DEFAULT_INTEGRATION,
        ledger_url: str | None = None,
        poll_interval: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        super().__init__(
            ledger_url=ledger_url, poll_interval=poll_interval, max_backoff=max_backoff
        )
        self.integration = integration
        self._links: EscalationLedger | None = None
        self._prefixes: list[str] = []

    def open(self, ledger: Ledger) -> None:
        spec = find_integration(SynclineSettings().specs_dir, self.integration)
        if not isinstance(spec, TwoWaySpec):
            raise ValueError(f"{self.integration!r} is not a two-way integration")
        self._prefixes = [event_prefix(spec.a), event_prefix(spec.b)]
        self._links = EscalationLedger(ledger.engine)

    def waiting(self) -> bool:
        """Events wait and no drainer holds the integration."""
        assert self._links is not None, "open() first"
        if self._links.lease_holder(self.integration, datetime.now(UTC)) is not None:
            return False
        return self._links.backlog(self.integration, self._prefixes) > 0

    async def drain(self) -> bool:
        from flows.escalation import escalation

        report = await escalation(integration=self.integration)
        return bool(report.events)


def with_escalation_path(app: ASGIApp, path: EscalationPath) -> ASGIApp:
    """The gateway with the escalation path beside it, woken by accepted Jira and ServiceNow
    deliveries."""
    return with_warm_path(app, path)


def serve(integration: str = DEFAULT_INTEGRATION, *, poll_interval: float = 0.25) -> int:
    """The path in a process of its own, polling the outbox."""
    return serve_path(
        EscalationPath(integration=integration, poll_interval=poll_interval),
        f"Syncline escalation path: {integration}, outbox polled every {poll_interval} s",
    )


if __name__ == "__main__":
    raise SystemExit(serve())
