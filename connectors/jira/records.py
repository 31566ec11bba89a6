"""Jira issues as flat records, and a project's issues as a record source.

A record is one issue: ``id``, ``key``, ``project``, ``summary``, ``description`` (the ADF
document as plain text), ``status``, ``priority`` and ``issuetype`` (their names),
``labels`` (a list, correlation labels left out), ``created`` and ``updated`` (UTC), every
``customfield_NNNNN`` asked for, and the correlation field (``correlation_id`` by default:
the other side's key, from the issue property ``syncline``).

**Correlation.** Jira issue properties are not searchable by JQL for REST clients, so the
other side's key is kept twice: in the entity property (the truth, set atomically with the
create) and in a label ``syncline-<sanitised key>`` (the index). A lookup searches
``labels in (...)`` and keeps only the issues whose property holds the exact value.

**Incremental reads** (``updated``): JQL is minute-precise and in the user's time zone, so
the window is widened (see ``connectors.jira.jql``), the rows outside the exact window are
dropped and every issue is delivered once (by id). Reads are sorted ``updated ASC, id ASC``
and page by minute keyset: after each page the query starts again from the minute of the
last issue read (when that is later than where it started), following
``nextPageToken`` only inside one minute. An issue that changes mid-read moves to the end of
the results and would shift an offset-based token past an issue not yet read; a fresh query
from a later lower bound cannot skip. Search is eventually consistent: an issue changed a
few seconds before the read may be missing from it; the engine's cursor overlap reads it on
the next run (keep the overlap above the site's indexing lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from connectors.base.errors import FatalError
from connectors.base.records import CursorValue, ReadWindow
from connectors.base.stats import CallStats
from connectors.jira import jql as q
from connectors.jira.client import JiraClient
from connectors.jira.models import IssueBean
from connectors.jira.shape import RECORD_FIELDS, IssueShape, is_known_field

CURSOR_FIELDS = frozenset({"updated", "created"})
LOOKUP_CHUNK = 50
# Jira's answer to ``key in (...)`` naming an issue that does not exist.
MISSING_VALUE = re.compile(r"'([^']+)' does not exist for field")


class JiraIssueSource:
    """A project's issues (narrowed by a JQL ``filter``), read by ``updated``."""

    system = "jira"

    def __init__(
        self,
        client: JiraClient,
        project: str,
        *,
        fields: Sequence[str] | None = None,
        jql_filter: str | None = None,
        key: str = "key",
    ) -> None:
        if key not in ("key", "id"):
            raise FatalError(
                self.system,
                f"source.key {key!r}: Jira issues are identified by key or id",
            )
        if jql_filter and re.search(r"\border\s+by\b", jql_filter, re.IGNORECASE):
            raise FatalError(
                self.system,
                f"source.filter sorts by itself: {jql_filter!r}",
                detail="reads are sorted by updated and id so that no issue is skipped; "
                "remove the ORDER BY",
            )
        self.client = client
        self.object_name = project
        self.project = project
        self.key = key
        self.fields = list(fields) if fields else None
        self.filter = jql_filter
        self.shape = IssueShape(client)
        self.zone = client.settings.zone

    # --- what is asked ---------------------------------------------------------------------

    def _columns(self, extra: Iterable[str] = ()) -> list[str]:
        listed = self.fields or [*RECORD_FIELDS, self.shape.correlation_field]
        return list(dict.fromkeys([self.key, *listed, *extra]))

    def _scope(self, scoped: bool = True) -> list[str]:
        clauses = [f"project = {q.quote(self.project)}"]
        if scoped and self.filter:
            clauses.append(f"({self.filter})")
        return clauses

    async def prepare(self, fields: Sequence[str]) -> None:
        unknown = [
            name for name in fields if not is_known_field(name, self.shape.correlation_field)
        ]
        if unknown:
            raise FatalError(
                self.system,
                f"issues have no field {', '.join(unknown)}",
                detail=f"known: {', '.join(RECORD_FIELDS)}, {self.shape.correlation_field} "
                "and customfield_NNNNN",
            )

    # --- reads -----------------------------------------------------------------------------

    async def records_in(
        self, window: ReadWindow, names: Sequence[str], scoped: bool = True
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Flat records in the window, each once, page by page (see the module docstring)."""
        field = window.cursor_field or "updated"
        if field not in CURSOR_FIELDS:
            raise FatalError(
                self.system, f"cursor field {field!r}: Jira issues are read by updated or created"
            )
        since = _moment(window.since, "since")
        until = _moment(window.until, "until")
        lower = q.lower_bound(since, self.zone) if since is not None else None
        upper = q.upper_bound(until, self.zone) if until is not None else None
        native = self.shape.native_fields([*names, field])
        seen: set[str] = set()
        while True:
            clauses = self._scope(scoped)
            if lower is not None:
                clauses.append(f"{field} >= {q.jql_time(lower, self.zone)}")
            if upper is not None:
                clauses.append(f"{field} <= {q.jql_time(upper, self.zone)}")
            jql = " AND ".join(clauses) + f" ORDER BY {field} ASC, id ASC"
            restart: datetime | None = None
            size = min(window.batch_size, self.client.settings.page_size)
            pages = self.client.search(
                jql, native, properties=[self.shape.property], page_size=size
            )
            async with contextlib.aclosing(pages):
                async for page in pages:
                    rows = []
                    for issue in page:
                        if issue.id in seen:
                            continue
                        seen.add(issue.id)
                        record = self.shape.flatten(issue)
                        stamp = record.get(field)
                        if since is not None and (stamp is None or stamp < since):
                            continue
                        if until is not None and (stamp is None or stamp > until):
                            continue
                        rows.append(record)
                    if rows:
                        yield rows
                    # A short page is the last: nothing more to start again for.
                    full = len(page) >= size
                    last = q.parse_jira_time(page[-1].fields.get(field)) if full else None
                    if last is not None:
                        # Everything before the last issue's minute has been read.
                        candidate = q.floor_minute(last, self.zone)
                        if lower is None or candidate > lower:
                            restart = candidate
                            break
            if restart is None:
                return
            lower = restart

    async def read(self, window: ReadWindow) -> AsyncIterator[pd.DataFrame]:
        columns = self._columns([window.cursor_field] if window.cursor_field else [])
        pending: list[dict[str, Any]] = []
        async for rows in self.records_in(window, columns):
            pending.extend(rows)
            if len(pending) >= window.batch_size:
                yield _frame(pending, columns)
                pending = []
        if pending:
            yield _frame(pending, columns)

    async def read_keys(
        self, window: ReadWindow, *, scoped: bool = True
    ) -> AsyncIterator[list[str]]:
        async for rows in self.records_in(window, [self.key], scoped):
            yield [str(row[self.key]) for row in rows]

    async def in_scope(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` exist now and match the filter, asked of search in chunks. Keys
        search does not show (deleted, or changed too recently to be indexed) are read one
        GET each and judged with ``reconcileIssues``: search's lag never makes an issue look
        out of scope (which would delete it downstream)."""
        wanted = _distinct(keys)
        found: set[str] = set()
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            found |= await self._searched(wanted[start : start + LOOKUP_CHUNK])
        rest = [key for key in wanted if key not in found]
        if rest:
            issues = await self.issues_by_key(rest, [self.key, "project"], by=self.key)
            matched = await self._in_filter(list(issues.values()))
            found |= {key for key, issue in issues.items() if issue.id in matched}
        return found

    async def _searched(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` search shows in scope. Jira refuses ``key in (...)`` as a whole
        when one key names no issue: that key is left out and the query asked again."""
        by_spelling = {key.upper(): key for key in keys}
        while by_spelling:
            values = list(by_spelling.values())
            listed = q.value_list(values) if self.key == "key" else f"({', '.join(values)})"
            jql = " AND ".join([*self._scope(), f"{self.key} in {listed}"])
            try:
                return {
                    by_spelling[str(getattr(issue, self.key)).upper()]
                    async for page in self.client.search(jql, ["project"])
                    for issue in page
                    if str(getattr(issue, self.key)).upper() in by_spelling
                }
            except FatalError as error:
                named = MISSING_VALUE.search(str(error.detail or ""))
                if error.status != 400 or named is None:
                    raise
                if by_spelling.pop(named.group(1).upper(), None) is None:
                    return set()  # refused for a reason of its own: each is read by GET
        return set()

    async def fetch(self, keys: Sequence[str], *, by: str | None = None) -> pd.DataFrame:
        """The issues of ``keys`` as they are now and in scope. By key or id each is read
        with its own GET (strongly consistent, and a deleted one is simply absent, where
        ``key in (...)`` fails as a whole); by the correlation field, through its label."""
        field = by or self.key
        columns = self._columns([field])
        wanted = _distinct(keys)
        if field in ("key", "id"):
            found = await self.issues_by_key(wanted, columns, by=field)
            rows = [self.shape.flatten(issue) for issue in found.values()]
            in_scope = await self._in_filter(list(found.values()))
            rows = [row for row in rows if row["id"] in in_scope]
        elif field == self.shape.correlation_field:
            rows = await self.by_correlation(wanted, columns)
        else:
            raise FatalError(
                self.system,
                f"issues cannot be looked up by {field!r}",
                detail=f"by key, id or {self.shape.correlation_field}",
            )
        return _frame(rows, columns)

    async def by_correlation(
        self, values: Sequence[str], names: Sequence[str], *, scoped: bool = True
    ) -> list[dict[str, Any]]:
        """Issues whose correlation property is one of ``values`` exactly (found by label)."""
        wanted = set(values)
        native = self.shape.native_fields(names)
        rows: list[dict[str, Any]] = []
        ordered = sorted(wanted)
        for start in range(0, len(ordered), LOOKUP_CHUNK):
            labels = [self.shape.label(value) for value in ordered[start : start + LOOKUP_CHUNK]]
            clauses = [*self._scope(scoped), f"labels in {q.value_list(labels)}"]
            jql = " AND ".join(clauses) + " ORDER BY id ASC"
            async for page in self.client.search(jql, native, properties=[self.shape.property]):
                for issue in page:
                    record = self.shape.flatten(issue)
                    if record[self.shape.correlation_field] in wanted:
                        rows.append(record)
        return rows

    async def issues_by_key(
        self, keys: Sequence[str], names: Sequence[str], *, by: str = "key"
    ) -> dict[str, IssueBean]:
        """The issues of ``keys`` (by key or id) that exist, read one GET each."""
        native = self.shape.native_fields([*names, "project"])
        slots = asyncio.Semaphore(4)

        async def one(key: str) -> tuple[str, IssueBean | None]:
            async with slots:
                issue = await self.client.get_issue(key, native, [self.shape.property])
            return key, issue

        found = await asyncio.gather(*(one(key) for key in keys))
        project = self.project.upper()
        return {
            key: issue
            for key, issue in found
            if issue is not None
            and _project_key(issue) == project
            and (by != "key" or issue.key.upper() == key.upper())
        }

    async def _in_filter(self, issues: Sequence[IssueBean]) -> set[str]:
        """Ids of ``issues`` that match the filter; asked of search with ``reconcileIssues``
        so that issues changed a moment ago are judged on their current values."""
        ids = [issue.id for issue in issues]
        if not self.filter or not ids:
            return set(ids)
        matched: set[str] = set()
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            jql = " AND ".join([*self._scope(), f"id in ({', '.join(chunk)})"])
            async for page in self.client.search(jql, ["id"], reconcile=map(int, chunk)):
                matched.update(issue.id for issue in page)
        return matched

    def unread(self) -> int:
        return 0

    def expected_rows(self) -> int | None:
        return None  # enhanced search gives no total

    def max_cursor(self, batch: pd.DataFrame, cursor_field: str) -> CursorValue | None:
        values = [value for value in batch[cursor_field] if isinstance(value, datetime)]
        newest = max(values) if values else None
        return newest.to_pydatetime() if isinstance(newest, pd.Timestamp) else newest

    def call_stats(self) -> CallStats | None:
        return self.client.stats

    async def aclose(self) -> None:
        await self.client.aclose()


def _moment(value: CursorValue | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise FatalError("jira", f"window {what} {value!r}: Jira reads by time, not by number")
    return q.as_utc(value)


def _project_key(issue: IssueBean) -> str:
    project = issue.fields.get("project")
    if isinstance(project, dict):
        return str(project.get("key", "")).upper()
    return issue.key.rsplit("-", 1)[0].upper()


def _distinct(keys: Sequence[Any]) -> list[str]:
    return list(dict.fromkeys(str(key) for key in keys if key is not None and str(key)))


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(
        [{name: row.get(name) for name in columns} for row in rows], columns=list(columns)
    )
