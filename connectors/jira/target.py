"""A project's issues as a record target: upserts by issue key/id or by the correlation field.

* Only changed fields are written (one ``PUT`` with the fields and label operations); an
  issue whose fields already hold the values is not touched (no new ``updated``, no echo).
* ``status`` is not a field Jira lets one set: a change of it goes through the transition
  that leads to the named status (``JiraClient.transition_to``).
* By the correlation field (``correlation_id``): the issue is looked up through its label
  and property (``connectors.jira.records``), created with both when absent. A create whose
  answer was lost (``UncertainWriteError``) is settled by looking the issue up again, after
  waiting ``index_lag_seconds`` for Jira's search to show it, and created again only if
  it is still absent: a create is never doubled by a blind retry.
* A record Jira refuses (400 with the fields named, a status no transition reaches, an issue
  that is gone) is a ``RejectedRecord`` for the dead-letter table, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import pandas as pd

from connectors.base.errors import FatalError, UncertainWriteError
from connectors.base.records import Column, DeleteRule, ReadWindow, RejectedRecord, WriteResult
from connectors.base.stats import CallStats
from connectors.jira.client import JiraClient
from connectors.jira.models import text_to_adf
from connectors.jira.records import JiraIssueSource
from connectors.jira.shape import CUSTOM_FIELD, RECORD_FIELDS, is_known_field

log = logging.getLogger("syncline.connectors.jira")

# Fields Jira sets itself; a record may carry them (read back from Jira) but they are not
# written.
READ_ONLY = frozenset({"id", "key", "project", "created", "updated"})


class JiraIssueTarget:
    """Writes issues of one project."""

    system = "jira"

    def __init__(self, client: JiraClient, project: str, *, concurrency: int = 4) -> None:
        self.client = client
        self.object_name = project
        self.project = project
        self.reader = JiraIssueSource(client, project)
        self.shape = self.reader.shape
        self.record_key = client.settings.record_key
        self._slots = asyncio.Semaphore(concurrency)
        # Issues created through this target, by correlation value, until search shows them.
        self._made: dict[str, dict[str, Any]] = {}

    async def prepare(self, columns: Sequence[Column], key: str) -> None:
        if key not in ("key", "id", self.shape.correlation_field):
            raise FatalError(
                self.system,
                f"issues cannot be upserted by {key!r}",
                detail=f"by key, id or {self.shape.correlation_field} (the field holding the "
                "other side's key)",
            )
        unknown = [
            column.name
            for column in columns
            if not is_known_field(column.name, self.shape.correlation_field)
        ]
        if unknown:
            raise FatalError(
                self.system,
                f"issues have no field {', '.join(unknown)} to write",
                detail=f"writable: summary, description, status, priority, issuetype, "
                f"labels, customfield_NNNNN and {self.shape.correlation_field}",
            )

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        await self.prepare([Column(str(name)) for name in batch.columns], key)
        rows = [
            {str(name): _clean(value) for name, value in row.items()}
            for row in batch.to_dict(orient="records")
        ]
        result = WriteResult()
        for row in rows:
            if row.get(key) is None or str(row[key]) == "":
                reason = f"jira: the record has no {key} to write it by"
                result.rejected.append(RejectedRecord("", reason, _payload(row)))
        rows = [row for row in rows if row.get(key) is not None and str(row[key]) != ""]
        if not rows:
            return result
        values = list(dict.fromkeys(str(row[key]) for row in rows))
        names = [*RECORD_FIELDS, self.shape.correlation_field, *_custom(batch.columns)]
        by_correlation = key == self.shape.correlation_field
        if by_correlation:
            found = await self.reader.by_correlation(values, names, scoped=False)
            current = _first_by(found, key)
            # Issues this target made may not be searchable yet (search lags behind writes).
            for value in values:
                if value not in current and value in self._made:
                    current[value] = self._made[value]
        else:
            issues = await self.reader.issues_by_key(values, names, by=key)
            current = {value: self.shape.flatten(issue) for value, issue in issues.items()}

        async def write(row: dict[str, Any]) -> None:
            value = str(row[key])
            try:
                existing = current.get(value)
                if existing is None and not by_correlation:
                    raise FatalError(
                        self.system, f"issue {value} does not exist (deleted or moved)"
                    )
                if existing is None:
                    existing = await self._create(row, value)
                    current[value] = {**existing, key: value}
                    self._made[value] = current[value]
                    result.created.append(value)
                    result.assigned_keys[value] = str(existing[self.record_key])
                    await self._move(existing, row)
                    return
                result.assigned_keys[value] = str(existing[self.record_key])
                if await self._update(existing, row):
                    result.updated.append(value)
                else:
                    result.unchanged += 1
            except FatalError as error:
                if error.status == 401:
                    raise
                result.rejected.append(RejectedRecord(value, str(error), _payload(row)))

        # Rows with the same key go one after the other (a second create of the same
        # correlation value would make a second issue); different keys concurrently.
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(str(row[key]), []).append(row)

        async def write_all(group: list[dict[str, Any]]) -> None:
            async with self._slots:
                for row in group:
                    await write(row)

        await _all([write_all(group) for group in groups.values()])
        return result

    # --- creates --------------------------------------------------------------------------

    async def _create(self, row: dict[str, Any], correlation: str) -> dict[str, Any]:
        """Create the issue once: a lost answer is settled by looking it up by label."""
        settings = self.client.settings
        fields = self._fields(row, creating=True)
        fields["project"] = {"key": self.project}
        fields.setdefault("issuetype", {"name": settings.issue_type})
        fields["labels"] = [*fields.get("labels", []), self.shape.label(correlation)]
        properties = {self.shape.property: {"correlationId": correlation}}
        for attempt in range(1, self.client.retry.max_attempts + 1):
            try:
                created = await self.client.create_issue(fields, properties)
                return {"id": created.id, "key": created.key, "status": None}
            except UncertainWriteError as error:
                if attempt >= self.client.retry.max_attempts:
                    raise
                wait = max(settings.index_lag_seconds, self.client.retry.delay(attempt))
                log.warning(
                    "jira: %s; looking %s=%s up in %.1fs before creating it again",
                    error,
                    self.shape.correlation_field,
                    correlation,
                    wait,
                )
                await asyncio.sleep(wait)
                names = ["id", "key", "status", self.shape.correlation_field]
                found = await self.reader.by_correlation([correlation], names, scoped=False)
                if found:
                    return found[0]
        raise AssertionError("unreachable")  # pragma: no cover

    # --- updates --------------------------------------------------------------------------

    async def _update(self, current: dict[str, Any], row: dict[str, Any]) -> bool:
        """Write what differs; True when anything was written."""
        issue = str(current["key"] or current["id"])
        changed = {
            name: value
            for name, value in row.items()
            if name not in READ_ONLY
            and name != "status"
            and name != self.shape.correlation_field
            and _normal(name, value) != _normal(name, current.get(name))
        }
        fields = self._fields(changed, creating=False)
        update: dict[str, Any] = {}
        if "labels" in changed:
            fields.pop("labels", None)
            before, after = set(_labels(current.get("labels"))), set(_labels(changed["labels"]))
            update["labels"] = [{"add": label} for label in sorted(after - before)] + [
                {"remove": label} for label in sorted(before - after)
            ]
        written = bool(fields or update.get("labels"))
        if written:
            await self.client.edit_issue(issue, fields, update if update.get("labels") else None)
        moved = await self._move(current, row)
        correlated = await self._correlate(current, row)
        return written or moved or correlated

    async def _move(self, current: dict[str, Any], row: dict[str, Any]) -> bool:
        status = row.get("status")
        if status is None or str(status).strip() == "":
            return False
        if current.get("status") is not None and _same(status, current["status"]):
            return False
        return await self.client.transition_to(str(current["key"] or current["id"]), str(status))

    async def _correlate(self, current: dict[str, Any], row: dict[str, Any]) -> bool:
        """Keep the correlation property and its label in step with the record's value."""
        field = self.shape.correlation_field
        if field not in row or row[field] is None:
            return False
        wanted, held = str(row[field]), current.get(field)
        if held == wanted:
            return False
        issue = str(current["key"] or current["id"])
        await self.client.set_property(issue, self.shape.property, {"correlationId": wanted})
        operations = [{"add": self.shape.label(wanted)}]
        if held:
            operations.append({"remove": self.shape.label(str(held))})
        await self.client.edit_issue(issue, update={"labels": operations})
        return True

    def _fields(self, row: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        """Jira's ``fields`` for the flat values of ``row`` (text to ADF, names to refs)."""
        fields: dict[str, Any] = {}
        for name, value in row.items():
            if name in READ_ONLY or name == "status" or name == self.shape.correlation_field:
                continue
            if creating and value is None:
                continue
            if name == "summary":
                fields[name] = "" if value is None else str(value)
            elif name == "description":
                text = _text(value)
                fields[name] = text_to_adf(text) if text else None
            elif name in ("priority", "issuetype"):
                fields[name] = {"name": str(value)} if value is not None else None
            elif name == "labels":
                fields[name] = _labels(value)
            elif CUSTOM_FIELD.fullmatch(name):
                fields[name] = value
        return fields

    # --- the rest of the protocol ---------------------------------------------------------

    async def delete(self, keys: Sequence[Any], key: str, rule: DeleteRule) -> list[str]:
        raise FatalError(
            self.system,
            "the Jira connector does not delete issues",
            detail="use deletes.policy: ignore for a Jira target",
        )

    async def read_keys(self, key: str) -> AsyncIterator[list[str]]:
        """Every correlation value (or key) the project's issues hold."""
        names = [key, "updated"]
        async for rows in self.reader.records_in(ReadWindow("updated"), names, scoped=False):
            yield [str(row[key]) for row in rows if row.get(key)]

    def call_stats(self) -> CallStats | None:
        return self.client.stats

    async def aclose(self) -> None:
        await self.client.aclose()


async def _all(work: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` concurrently; the first unexpected failure cancels the rest and is raised
    as itself (not as an exception group), so callers see the connector's own error."""
    try:
        async with asyncio.TaskGroup() as group:
            for item in work:
                group.create_task(item)
    except BaseExceptionGroup as failed:
        first: BaseException = failed
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from first.__cause__


def _clean(value: Any) -> Any:
    """``None`` for pandas' missing values, arrays as lists, numpy scalars as Python's."""
    if isinstance(value, list | tuple):
        return list(value)
    if getattr(value, "ndim", 0):
        return list(value.tolist())
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value


def _labels(value: Any) -> list[str]:
    """A list of labels from a list, or text split on commas and spaces."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).replace(",", " ").split()
    return list(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


def _text(value: Any) -> str:
    return "" if value is None else str(value).rstrip("\n")


def _normal(name: str, value: Any) -> Any:
    """A value as compared for "unchanged": labels as a set, text without trailing newlines,
    empty text as nothing."""
    if name == "labels":
        return sorted(_labels(value))
    if value is None:
        return None
    text = _text(value) if isinstance(value, str) else value
    return None if text == "" else text


def _same(a: Any, b: Any) -> bool:
    return str(a).strip().casefold() == str(b).strip().casefold()


def _first_by(rows: list[dict[str, Any]], field: str) -> dict[str, dict[str, Any]]:
    """By the field's value; the oldest issue wins where two hold the same value."""
    found: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda row: int(row["id"])):
        value = str(row[field])
        if value in found:
            log.warning(
                "jira: issues %s and %s both hold %s=%s; writing to the first",
                found[value]["key"],
                row["key"],
                field,
                value,
            )
            continue
        found[value] = row
    return found


def _custom(columns: Any) -> list[str]:
    return [str(name) for name in columns if CUSTOM_FIELD.fullmatch(str(name))]


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value.isoformat() if hasattr(value, "isoformat") else value
        for name, value in row.items()
    }
