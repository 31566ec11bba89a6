"""The warm incident path: alert deliveries reach their incidents within a second.

A warm path (``syncline_app.warm_path``) that runs ``alert-to-incident`` in-process, in the
gateway's process (``with_incident_path``) or one of its own (``syncline alerts serve``). The
triggered deployment stays what users see, trigger and rerun: its runs drain the same outbox
with the same claims, so whichever drainer comes first applies a delivery, once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncline.alert_claims import AlertClaims
from syncline.alert_spec import DEFAULT_ALERT_SPEC
from syncline.state import Ledger
from syncline_app.warm_path import ASGIApp, WarmPath, serve_path, with_warm_path

# How often the application records of deliveries the outbox pruned are deleted.
PRUNE_EVERY = timedelta(hours=1)


class IncidentPath(WarmPath):
    """Drains alert deliveries into incidents by running ``alert-to-incident`` in-process."""

    name = "incident path"

    def __init__(
        self,
        *,
        alert_spec: str = DEFAULT_ALERT_SPEC,
        ledger_url: str | None = None,
        poll_interval: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        super().__init__(
            ledger_url=ledger_url, poll_interval=poll_interval, max_backoff=max_backoff
        )
        self.alert_spec = alert_spec
        self._claims: AlertClaims | None = None
        self._next_prune = datetime.now(UTC)

    def open(self, ledger: Ledger) -> None:
        self._claims = AlertClaims(ledger.engine)

    def waiting(self) -> bool:
        assert self._claims is not None, "open() first"
        now = datetime.now(UTC)
        if now >= self._next_prune:
            self._claims.prune()
            self._next_prune = now + PRUNE_EVERY
        return self._claims.claimable(now) > 0

    async def drain(self) -> bool:
        from flows.alert_to_incident import alert_to_incident

        # Another drainer's claims are not waited for here: the next look is soon.
        report = await alert_to_incident(alert_spec=self.alert_spec, wait_for_others=0.0)
        return bool(report.entries)


def with_incident_path(app: ASGIApp, path: IncidentPath) -> ASGIApp:
    """The gateway with the incident path beside it, woken by every accepted delivery."""
    return with_warm_path(app, path)


def serve(alert_spec: str = DEFAULT_ALERT_SPEC, *, poll_interval: float = 0.25) -> int:
    """``syncline alerts serve``: the path in a process of its own, polling the outbox."""
    return serve_path(
        IncidentPath(alert_spec=alert_spec, poll_interval=poll_interval),
        f"Syncline incident path: {alert_spec}, outbox polled every {poll_interval} s",
    )
