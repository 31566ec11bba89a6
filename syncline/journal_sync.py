"""Journal entries of linked records, carried one by one: ServiceNow work notes ↔ Jira comments.

For each pair of records the two-way engine links (an incident and its issue), the entries
on each side are linked by id in the ledger (``syncline.journal_links``). A run reads both
sides' entries as they are now and, for each pair:

1. **recognises its own writes**: an entry Syncline wrote ends with a marker naming the entry
   it was copied from (``[Syncline: Jira comment 10023]`` on a work note, ``[Syncline:
   ServiceNow work note <sys_id>]`` on a comment). An unlinked entry with a marker is linked
   to the entry it names and never copied back: that is how a write survives a crash between
   the append and the link's save, or a lost ledger, without an echo or a second append;
2. **appends what is new** on the other side, oldest first, each with its marker, and links
   it at once (a work note's id is learned by reading the journal back, by its marker).

An entry is carried once, in the order it was written on its side; edits and deletions are not
carried (a ServiceNow journal entry cannot be edited). A lost answer to an append is settled
by the next run, which finds the marker or appends again. A pair whose journal cannot be
carried (a record gone, a refusal) is a dead letter of the integration (``journal:<A key>:<B
key>``, stage ``journal``), retried by every run and closed when it goes through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel

from connectors.base.errors import ConnectorError, UncertainWriteError
from connectors.base.records import RejectedRecord
from connectors.jira.comments import JiraComments
from connectors.jira.records import JiraIssueSource
from connectors.servicenow.journal import ServiceNowJournal
from connectors.servicenow.records import ServiceNowTableSource
from syncline.journal_links import EscalationLedger, JournalLink
from syncline.state import Ledger
from syncline.two_way_endpoints import Endpoint

log = logging.getLogger("syncline.journal_sync")

Side = Literal["a", "b"]
SIDES: tuple[Side, Side] = ("a", "b")

# The marker closing every entry Syncline writes: where the entry was copied from.
MARKER = re.compile(
    r"\[Syncline: (?P<system>ServiceNow work note|Jira comment) (?P<entry>[A-Za-z0-9_.:-]+)\]\s*\Z"
)
ORIGIN_LABEL: dict[Side, str] = {"a": "ServiceNow work note", "b": "Jira comment"}
LETTER_PREFIX = "journal:"


def letter_key(a_key: str, b_key: str) -> str:
    return f"{LETTER_PREFIX}{a_key}:{b_key}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry, as either side shows it."""

    id: str
    text: str


class Journal(Protocol):
    """One side's journal: its entries by record, oldest first, and appends."""

    async def entries(self, keys: Sequence[str]) -> dict[str, list[Entry]]: ...

    async def append(self, key: str, text: str) -> str | None:
        """Append an entry; its id when the system answers with it (else read back)."""
        ...


class ServiceNowWorkNotes:
    def __init__(self, journal: ServiceNowJournal) -> None:
        self.journal = journal

    async def entries(self, keys: Sequence[str]) -> dict[str, list[Entry]]:
        found = await self.journal.entries(keys)
        return {
            key: [Entry(entry.sys_id, entry.text) for entry in entries]
            for key, entries in found.items()
        }

    async def append(self, key: str, text: str) -> str | None:
        await self.journal.append(key, text)
        return None


class JiraIssueComments:
    def __init__(self, comments: JiraComments) -> None:
        self.comments = comments

    async def entries(self, keys: Sequence[str]) -> dict[str, list[Entry]]:
        found: dict[str, list[Entry]] = {}
        for key in dict.fromkeys(keys):
            found[key] = [Entry(c.id, c.text) for c in await self.comments.entries(key)]
        return found

    async def append(self, key: str, text: str) -> str | None:
        return await self.comments.append(key, text)


def journal_of(end: Endpoint) -> Journal:
    """The journal of an opened endpoint: an incident's work notes, an issue's comments."""
    source = end.source
    if isinstance(source, ServiceNowTableSource):
        return ServiceNowWorkNotes(ServiceNowJournal(source.client, source.object_name))
    if isinstance(source, JiraIssueSource):
        return JiraIssueComments(JiraComments(source.client))
    raise ValueError(
        f"{end.side}.connector: {end.spec.connector!r} has no journal Syncline can carry "
        "(ServiceNow work notes and Jira comments are supported)"
    )


def marker_of(text: str) -> tuple[Side, str] | None:
    """The side and id of the entry ``text`` was copied from, if Syncline wrote it."""
    found = MARKER.search(text)
    if found is None:
        return None
    origin: Side = "a" if found["system"] == ORIGIN_LABEL["a"] else "b"
    return origin, found["entry"]


def with_marker(text: str, origin: Side, entry_id: str) -> str:
    return f"{text.rstrip()}\n\n[Syncline: {ORIGIN_LABEL[origin]} {entry_id}]"


class JournalReport(BaseModel):
    """What one journal run did."""

    pairs: int = 0
    a_appended: int = 0  # entries written on A (from B)
    b_appended: int = 0  # entries written on B (from A)
    recognised: int = 0  # Syncline's own entries linked by their marker, not copied
    in_doubt: int = 0  # appends whose answer was lost: settled by the next run
    failed_pairs: list[str] = []

    def appended(self, side: Side) -> int:
        return self.a_appended if side == "a" else self.b_appended


@dataclass(slots=True)
class _PairState:
    a_key: str
    b_key: str
    entries: dict[Side, list[Entry]]
    linked: dict[Side, set[str]] = field(default_factory=lambda: {"a": set(), "b": set()})


class JournalSync:
    """Carries the journal entries of linked pairs between two opened endpoints."""

    def __init__(
        self,
        integration: str,
        a: Journal,
        b: Journal,
        ledger: Ledger,
        *,
        flow_run_id: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
    ) -> None:
        self.integration = integration
        self.journals: dict[Side, Journal] = {"a": a, "b": b}
        self.ledger = ledger
        self.links = EscalationLedger(ledger.engine)
        self.flow_run_id = flow_run_id
        self.now = now
        self.logger = logger
        self.report = JournalReport()

    async def run(self, pairs: Iterable[tuple[str, str]]) -> JournalReport:
        """Carry the new entries of each (A key, B key) pair, and of the pairs held as dead
        letters; one pair failing (the record gone, a refusal) is parked as a dead letter and
        the others still go through."""
        held = {
            key
            for key in self.ledger.pending_dead_letter_keys(self.integration)
            if key.startswith(LETTER_PREFIX)
        }
        retried = [tuple(key[len(LETTER_PREFIX) :].split(":", 1)) for key in sorted(held)]
        wanted = list(dict.fromkeys([*pairs, *((a, b) for a, b in retried)]))
        if not wanted:
            return self.report
        notes = await self.journals["a"].entries([a for a, _ in wanted])
        comments = await self.journals["b"].entries([b for _, b in wanted])
        letters: list[RejectedRecord] = []
        through: list[str] = []
        for a_key, b_key in wanted:
            state = _PairState(
                a_key, b_key, {"a": notes.get(a_key, []), "b": comments.get(b_key, [])}
            )
            self.report.pairs += 1
            try:
                await self._pair(state)
            except ConnectorError as error:
                self.report.failed_pairs.append(f"{a_key}:{b_key}")
                reason = f"work notes / comments of {a_key} / {b_key} not carried: {error}"
                letters.append(
                    RejectedRecord(letter_key(a_key, b_key), reason, {"a": a_key, "b": b_key})
                )
                self.logger.warning("%s: %s", self.integration, reason)
            else:
                through.append(letter_key(a_key, b_key))
        self.ledger.dead_letter(
            self.integration, letters, stage="journal", flow_run_id=self.flow_run_id
        )
        closing = sorted(set(through) & held)
        if closing:
            self.ledger.resolve_dead_letters(
                self.integration, closing, status="resolved", flow_run_id=self.flow_run_id
            )
        return self.report

    def _link(self, state: _PairState, a_entry: str, b_entry: str, origin: Side) -> None:
        link = JournalLink(state.a_key, state.b_key, a_entry, b_entry, origin)
        self.links.link(self.integration, link, flow_run_id=self.flow_run_id, now=self.now())
        state.linked["a"].add(a_entry)
        state.linked["b"].add(b_entry)

    async def _pair(self, state: _PairState) -> None:
        for link in self.links.links(self.integration, state.a_key, state.b_key):
            state.linked["a"].add(link.a_entry)
            state.linked["b"].add(link.b_entry)
        self._recognise(state)
        await self._carry(state, "a", "b")
        await self._carry(state, "b", "a")

    def _recognise(self, state: _PairState, *, count: bool = True) -> None:
        """Link the unlinked entries Syncline wrote (their marker names their origin);
        ``count``: they were written before this run (not just read back after an append)."""
        for side in SIDES:
            for entry in state.entries[side]:
                if entry.id in state.linked[side]:
                    continue
                marker = marker_of(entry.text)
                if marker is None or marker[0] == side:
                    continue
                origin, origin_id = marker
                if origin_id in state.linked[origin]:
                    continue  # its origin is linked to another copy: a duplicate, left alone
                a_entry, b_entry = (origin_id, entry.id) if origin == "a" else (entry.id, origin_id)
                self._link(state, a_entry, b_entry, origin)
                self.report.recognised += int(count)

    async def _carry(self, state: _PairState, origin: Side, target: Side) -> None:
        """Append ``origin``'s new entries on ``target``, oldest first, and link them."""
        keys = {"a": state.a_key, "b": state.b_key}
        new = [
            entry
            for entry in state.entries[origin]
            if entry.id not in state.linked[origin] and marker_of(entry.text) is None
        ]
        unread: list[str] = []  # origin ids appended whose new id the target did not answer
        for entry in new:
            text = with_marker(entry.text, origin, entry.id)
            try:
                new_id = await self.journals[target].append(keys[target], text)
            except UncertainWriteError:
                self.report.in_doubt += 1
                raise
            if target == "a":
                self.report.a_appended += 1
            else:
                self.report.b_appended += 1
            if new_id is None:
                unread.append(entry.id)
            else:
                a_entry, b_entry = (entry.id, new_id) if origin == "a" else (new_id, entry.id)
                self._link(state, a_entry, b_entry, origin)
        if unread:
            # Read the target's journal back to learn the new entries' ids by their markers.
            found = (await self.journals[target].entries([keys[target]])).get(keys[target], [])
            state.entries[target] = found
            self._recognise(state, count=False)
        if new:
            self.logger.info(
                "%s: %s / %s: %d %s(s) carried to %s",
                self.integration,
                state.a_key,
                state.b_key,
                len(new),
                ORIGIN_LABEL[origin],
                target.upper(),
            )
