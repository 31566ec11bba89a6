"""Polling mode: alerts read by cursor from a table a monitoring tool fills, into the outbox.

For tools that send no webhooks: an alert spec's ``poll:`` section (``syncline.alert_spec.
PollSpec``) names a source read like a sync spec's (any connector with a cursor: a SQL table or
view of alerts, a ServiceNow table such as ``em_event``) and which of its columns hold the
alert's parts. A poll reads the rows changed since its cursor (``<spec>-poll`` in the ledger,
minus the overlap), turns each into a normalised alert exactly as a generic JSON alert is
(``syncline.inbound.generic``) and admits it into the gateway's outbox. The drain that follows
applies them like any delivery: claims, coalescing, the one apply path, links and audit.

- The cursor moves only once every row read is in the outbox (or parked): a poll that fails
  in between reads the same rows again, and rows it had admitted are duplicates by their key.
- A row's dedupe key is (alert key, status, cursor value): the overlap's re-read rows are
  duplicates within ``dedupe_window``, while a row that changed again is news.
- A row that is not an alert (a status outside ``statuses``, no title) is a dead letter of the
  alert spec's integration with the reason, stage ``poll``; never silence.

Engine code: no Prefect. The flow ``alert-to-incident`` (``poll: true``) calls ``poll_alerts``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel

from connectors.base.records import CursorValue, ReadWindow, RecordSource, RejectedRecord
from syncline.alert_spec import AlertSpec, PollSpec
from syncline.inbound import generic
from syncline.inbound.errors import InboundError
from syncline.inbound.models import InboundEvent
from syncline.inbound.values import split_tags
from syncline.outbox import GatewayOutbox, InboundDelivery
from syncline.state import Ledger
from syncline.sync import read_until, window_start

POLL_STAGE = "poll"

Clock = Callable[[], datetime]


class PollReport(BaseModel):
    """What one poll read and what became of it."""

    cursor_before: datetime | int | None = None
    cursor_after: datetime | int | None = None
    read: int = 0
    admitted: int = 0  # new outbox entries
    duplicates: int = 0  # rows admitted before (the overlap, a poll that failed after admitting)
    dead_lettered: int = 0


class RowNotAnAlert(ValueError):
    """A polled row the poll cannot turn into an alert; the message says why."""


@dataclass(frozen=True, slots=True)
class PolledAlert:
    row_key: str
    event: InboundEvent
    cursor: str  # the row's cursor value as text, part of its dedupe key
    row: dict[str, Any]


def plain(value: Any) -> Any:
    """A cell as JSON-ready Python: NaN/NaT -> None, timestamps -> ISO 8601, numpy -> Python."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return plain(value.item())
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def alert_from_row(poll: PollSpec, row: Mapping[str, Any]) -> InboundEvent:
    """One polled row as a normalised alert of ``poll.alert_source``; ``RowNotAnAlert`` if not.

    The row goes through the generic alert's checks, so a polled alert is held to the same
    rules as one posted to the gateway."""
    columns = poll.fields.columns()
    missing = sorted({column for column in columns.values() if column not in row})
    if missing:
        raise RowNotAnAlert(f"the row has no column {', '.join(missing)}")
    # An empty cell is a part the row leaves out, as a key a JSON alert leaves out.
    body: dict[str, Any] = {
        part: value for part, column in columns.items() if (value := plain(row[column])) is not None
    }
    status = body.get("status")
    status_text = "" if status is None else str(status)
    mapped = poll.statuses.get(status_text.strip().casefold())
    if mapped is None:
        known = ", ".join(sorted(poll.statuses))
        raise RowNotAnAlert(
            f"status {status_text[:80]!r} (column {poll.fields.status}) is not in the poll's "
            f"statuses ({known})"
        )
    body["status"] = mapped
    if isinstance(body.get("tags"), str):
        body["tags"] = split_tags(body["tags"])
    for part in ("alert_key", "title", "severity", "display_key"):
        if isinstance(body.get(part), int | float) and not isinstance(body.get(part), bool):
            body[part] = str(body[part])
    try:
        parsed = generic.parse(body)
    except InboundError as error:
        # "generic: title: missing" -> "title (column summary): missing"
        where, _, what = str(error).removeprefix(f"{generic.SOURCE}: ").partition(": ")
        part = where.split(".")[0].split("[")[0]
        if part in columns:
            where = f"{where} (column {columns[part]})"
        raise RowNotAnAlert(f"{where}: {what}" if what else where) from None
    assert parsed.alert is not None  # generic alerts always carry one
    return InboundEvent.for_alert(parsed.alert.model_copy(update={"source": poll.alert_source}))


def dedupe_key(alert_key: str, status: str, cursor: str) -> str:
    """One key per (alert, status, cursor value): a row read again is the same delivery."""
    digest = hashlib.sha256(json.dumps([alert_key, status, cursor]).encode()).hexdigest()
    return f"row:{digest}"


class AlertPoller:
    """Reads ``spec.poll``'s source into ``outbox`` by the cursor ``spec.poll_name``."""

    def __init__(
        self,
        spec: AlertSpec,
        source: RecordSource,
        outbox: GatewayOutbox,
        ledger: Ledger,
        *,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        if spec.poll is None:
            raise ValueError(f"alert spec {spec.name!r} has no poll section")
        self.spec = spec
        self.poll: PollSpec = spec.poll
        self.source = source
        self.outbox = outbox
        self.ledger = ledger
        self.clock = clock

    async def poll_once(self, *, flow_run_id: str | None = None) -> PollReport:
        """Admit every row changed since the cursor, then move the cursor past them."""
        cursor_spec = self.poll.source.cursor
        assert cursor_spec is not None  # PollSpec requires one
        started = self.clock()
        before = await asyncio.to_thread(self.ledger.read_cursor, self.spec.poll_name)
        report = PollReport(cursor_before=before)
        window = ReadWindow(
            cursor_field=cursor_spec.field,
            since=window_start(before, cursor_spec),
            # Rows changed while we read belong to the next poll (as in a sync run).
            until=read_until(started) if cursor_spec.type == "datetime" else None,
            batch_size=self.poll.batch_size,
        )
        await self.source.prepare(self.poll_fields())
        newest: CursorValue | None = None
        async for batch in self.source.read(window):
            report.read += len(batch)
            newest = _newest(newest, self.source.max_cursor(batch, cursor_spec.field))
            await asyncio.to_thread(self._admit_batch, batch, report, flow_run_id)
        after = _newest(before, newest)
        if after is not None and after != before:
            # Only now: every row read is in the outbox or parked.
            await asyncio.to_thread(
                self.ledger.commit_cursor, self.spec.poll_name, after, flow_run_id=flow_run_id
            )
        report.cursor_after = after
        return report

    def poll_fields(self) -> list[str]:
        fields = {self.poll.source.key, *self.poll.fields.columns().values()}
        if self.poll.source.cursor is not None:
            fields.add(self.poll.source.cursor.field)
        return sorted(fields)

    def _admit_batch(self, batch: pd.DataFrame, report: PollReport, run: str | None) -> None:
        cursor_field = self.poll.source.cursor.field if self.poll.source.cursor else None
        # In cursor order, so an alert's notifications reach the outbox as they happened and
        # the drain's coalescing ends on the newest.
        if cursor_field is not None and cursor_field in batch.columns and len(batch) > 1:
            batch = batch.sort_values(cursor_field, kind="stable")
        rejected: list[RejectedRecord] = []
        admitted_ids: list[str] = []
        recovered: list[str] = []  # rows parked by an earlier poll that are alerts now
        for record in batch.to_dict(orient="records"):
            row = {str(name): value for name, value in record.items()}
            row_key = str(plain(row.get(self.poll.source.key)))
            cursor = "" if cursor_field is None else str(plain(row.get(cursor_field)))
            try:
                event = alert_from_row(self.poll, row)
            except RowNotAnAlert as error:
                payload = {str(name): plain(value) for name, value in row.items()}
                rejected.append(
                    RejectedRecord(
                        self._parked_key(row_key),
                        f"polled row {row_key} ({self.poll.source.object}) is not an alert: "
                        f"{error}",
                        payload,
                    )
                )
                continue
            admission = self.outbox.admit(self._delivery(PolledAlert(row_key, event, cursor, row)))
            recovered.append(self._parked_key(row_key))
            if admission.duplicate:
                report.duplicates += 1
            else:
                report.admitted += 1
                admitted_ids.append(admission.id)
        if admitted_ids:
            # The poll's own run drains these next; an event per row would only start more
            # drainers (and the gateway's forwarder, where one runs, would emit them again).
            self.outbox.mark_emitted(admitted_ids, self.clock())
        if rejected:
            self.ledger.dead_letter(self.spec.name, rejected, stage=POLL_STAGE, flow_run_id=run)
            report.dead_lettered += len(rejected)
        if recovered:
            # The tool corrected the row (it changed, so the cursor read it again).
            self.ledger.resolve_dead_letters(
                self.spec.name, recovered, status="resolved", flow_run_id=run
            )

    def _parked_key(self, row_key: str) -> str:
        """A parked row's key among the alert spec's dead letters (correlation ids otherwise)."""
        return f"{self.poll.alert_source}-row:{row_key}"

    def _delivery(self, polled: PolledAlert) -> InboundDelivery:
        event = polled.event
        assert event.alert is not None
        raw = {str(name): plain(value) for name, value in polled.row.items()}
        return InboundDelivery(
            source=self.poll.alert_source,
            delivery_id=None,
            dedupe_key=dedupe_key(event.alert.alert_key, event.alert.status, polled.cursor),
            dedupe_window=self.poll.dedupe_window,
            received_at=self.clock(),
            event=event.event,
            resource_id=event.resource_id,
            subject_key=event.subject_key,
            payload=event.payload(),
            # The row as read, for audit and replay (what a webhook's body is).
            raw_body=json.dumps(raw, default=str, sort_keys=True).encode(),
        )


def _newest(current: CursorValue | None, value: CursorValue | None) -> CursorValue | None:
    if value is None:
        return current
    if current is None or type(current) is not type(value):
        return value
    return max(current, value)


async def poll_alerts(
    spec: AlertSpec,
    source: RecordSource,
    outbox: GatewayOutbox,
    ledger: Ledger,
    *,
    flow_run_id: str | None = None,
    clock: Clock = lambda: datetime.now(UTC),
) -> PollReport:
    """One poll of ``spec.poll`` into ``outbox`` (see the module docstring)."""
    poller = AlertPoller(spec, source, outbox, ledger, clock=clock)
    return await poller.poll_once(flow_run_id=flow_run_id)
