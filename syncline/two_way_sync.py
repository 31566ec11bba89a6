"""The two-way run: both sides' changes, paired, merged field by field, written both ways.

    A changes ─┐                          ┌─▶ creates on A / B (by the field holding the other key)
               ├─▶ pair ─▶ fetch ─▶ decide ┤
    B changes ─┘   (links,  (the other     └─▶ updates on A / B (by their own key), back-links
                   back-links) side now)       ─▶ links (keys, agreed values, written hashes)

1. **Read** each side's changes since its own cursor (the cursors of the spec's two views).
2. **Pair** each changed record with its counterpart: the ledger's link first, else the
   back-link the record holds (the field where it keeps the other side's key). A record whose
   back-link names a record linked to another is a duplicate: a dead letter, never merged.
3. **Fetch** the counterpart as it is now, so a decision always compares both sides' current
   values (and a rerun decides the same way).
4. **Decide** per field (``syncline.two_way_merge``): echoes of Syncline's own writes are no
   changes; a change flows to the other side; a conflict follows the field's policy, and a
   ``manual`` one is held as a dead letter with both versions.
5. **Write**: records new on one side are created on the other first (upserted by the field
   holding the first side's key, so a rerun finds them instead of creating them again), then
   updates by each side's own key, which also write each record's back-link. Writes are
   audited, with an intent before each (``AuditedWrites``).
6. **Link**: both keys, the values now agreed, the hash of what each side holds for the fields
   Syncline writes there, and the version seen.

Dead letters of the integration (``a:<key>`` / ``b:<key>``) are retried by every run: their
records are fetched and decided again, and the letter closes when they go through. Cursors are
moved by ``finish_two_way_run`` once the caller has the summary. Both sides' windows of changes
are held in memory (a first run reads both sides whole).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from connectors.base.records import (
    Column,
    ColumnType,
    CursorValue,
    ReadWindow,
    RejectedRecord,
    WriteResult,
)
from connectors.base.stats import CallStats
from syncline.apply import AuditedWrites, open_intent_keys
from syncline.mapping import jsonable
from syncline.state import Ledger, PairLink
from syncline.sync import read_until, window_start
from syncline.two_way import TwoWaySpec
from syncline.two_way_endpoints import Endpoint
from syncline.two_way_merge import (
    SIDES,
    Decision,
    FieldRule,
    Side,
    SideRecord,
    UnmappableValueError,
    Values,
    decide,
    other,
    side_record,
)
from syncline.two_way_summary import TwoWaySummary

log = logging.getLogger("syncline.two_way")

COLUMN_TYPES: dict[str, ColumnType] = {
    "text": ColumnType.STRING,
    "integer": ColumnType.INTEGER,
    "number": ColumnType.FLOAT,
    "boolean": ColumnType.BOOLEAN,
    "datetime": ColumnType.DATETIME,
}


@dataclass(slots=True)
class Pair:
    """A record and its counterpart, as far as they are known."""

    keys: dict[Side, str | None]
    link: PairLink | None = None
    records: dict[Side, SideRecord | None] = field(default_factory=lambda: {"a": None, "b": None})
    from_window: set[Side] = field(default_factory=set)
    written: set[Side] = field(default_factory=set)  # sides this run wrote the pair to

    def letter_key(self) -> str:
        a_key = self.keys["a"]
        return f"a:{a_key}" if a_key is not None else f"b:{self.keys['b']}"


class TwoWayRun:
    """One run of a two-way spec between two opened endpoints."""

    def __init__(
        self,
        spec: TwoWaySpec,
        a: Endpoint,
        b: Endpoint,
        ledger: Ledger,
        *,
        flow_run_id: str | None,
        full_refresh: bool,
        now: Callable[[], datetime],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.spec = spec
        self.ends: dict[Side, Endpoint] = {"a": a, "b": b}
        self.ledger = ledger
        self.flow_run_id = flow_run_id
        self.now = now
        self.logger = logger
        self.rules = [FieldRule(name, rule) for name, rule in spec.fields.items()]
        started = now()
        self.summary = TwoWaySummary(
            integration=spec.name,
            flow_run_id=flow_run_id,
            full_refresh=full_refresh,
            started_at=started,
            finished_at=started,
        )
        self.letters: list[tuple[str, RejectedRecord]] = []  # (stage, letter)
        self.failed: set[str] = set()  # letter keys of pairs that did not go through
        self.held_keys: set[str] = set()  # letter keys of pairs with a conflict held

    # reading -------------------------------------------------------------------------------

    def fields_of(self, side: Side) -> list[str]:
        end = self.ends[side]
        names = [rule.native_name(side) for rule in self.rules]
        extra = [end.spec.key, end.link_field]
        if end.spec.cursor is not None:
            extra.append(end.spec.cursor.field)
        listed = end.spec.fields or []
        return list(dict.fromkeys([*listed, *names, *extra]))

    async def read_changes(self, side: Side) -> pd.DataFrame:
        end, counts = self.ends[side], self.summary.side(side)
        cursor = end.spec.cursor
        before = (
            None
            if self.summary.full_refresh or cursor is None
            else self.ledger.read_cursor(end.cursor_name)
        )
        counts.cursor_before = before
        window = ReadWindow(
            cursor_field=cursor.field if cursor else None,
            since=window_start(before, cursor),
            until=read_until(self.summary.started_at)
            if cursor and cursor.type == "datetime"
            else None,
            batch_size=self.spec.batch_size,
        )
        await end.source.prepare(self.fields_of(side))
        frames: list[pd.DataFrame] = []
        newest: CursorValue | None = None
        async for batch in end.source.read(window):
            frames.append(batch)
            if window.cursor_field:
                seen = end.source.max_cursor(batch, window.cursor_field)
                if seen is not None:
                    newest = seen if newest is None else max(newest, seen)
        counts.cursor_after = before if newest is None else max(newest, before or newest)
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        counts.read = len(frame)
        self.logger.info(
            "%s: %d change(s) read from %s (%s) since %s",
            self.spec.name,
            len(frame),
            side.upper(),
            end.name,
            window.since or "the beginning",
        )
        return frame

    async def read_keys(self, side: Side, keys: Sequence[str]) -> dict[str, SideRecord]:
        """The records of ``keys`` on ``side`` as they are now (absent ones left out)."""
        if not keys:
            return {}
        end = self.ends[side]
        await end.source.prepare(self.fields_of(side))
        found = self.records(side, await end.source.fetch(list(dict.fromkeys(keys))))
        self.summary.side(side).read = len(found)
        return found

    def records(self, side: Side, frame: pd.DataFrame) -> dict[str, SideRecord]:
        """The rows of ``frame`` as records by key (the last of a key wins); a row whose
        values do not map is a dead letter."""
        end = self.ends[side]
        if frame.empty:
            return {}
        cursor = end.spec.cursor
        times: list[datetime | None] = [None] * len(frame)
        if cursor is not None and cursor.type == "datetime" and cursor.field in frame:
            parsed = pd.to_datetime(frame[cursor.field], utc=True, errors="coerce")
            times = [None if pd.isna(stamp) else stamp.to_pydatetime() for stamp in parsed]
        found: dict[str, SideRecord] = {}
        rows: list[dict[str, Any]] = frame.to_dict(orient="records")  # type: ignore[assignment]
        for row, changed_at in zip(rows, times, strict=True):
            key = str(row[end.spec.key])
            try:
                found[key] = side_record(
                    self.rules,
                    side,
                    key,
                    row,
                    link_field=end.link_field,
                    changed_at=changed_at,
                )
            except UnmappableValueError as error:
                self.dead_letter("map", f"{side}:{key}", str(error), {side: jsonable(row)})
        return found

    # pairing -------------------------------------------------------------------------------

    def pair(self, changed: dict[Side, dict[str, SideRecord]], retried: set[str]) -> list[Pair]:
        """Each changed (or retried) record with its counterpart's key."""
        name = self.spec.name
        a_keys = set(changed["a"]) | {key[2:] for key in retried if key.startswith("a:")}
        b_keys = set(changed["b"]) | {key[2:] for key in retried if key.startswith("b:")}
        by_a: dict[str, Pair] = {}
        b_only: dict[str, Pair] = {}
        links_a = self.ledger.pair_links(name, a_keys=a_keys)
        for a_key in a_keys:
            link = links_a.get(a_key)
            record = changed["a"].get(a_key)
            claimed = link.b_key if link else (record.back_link if record else None)
            pair = Pair({"a": a_key, "b": claimed}, link)
            pair.records["a"] = record
            if record is not None:
                pair.from_window.add("a")
            by_a[a_key] = pair
        links_b = self.ledger.pair_links(name, b_keys=b_keys)
        for b_key in b_keys:
            link = links_b.get(b_key)
            record = changed["b"].get(b_key)
            owner = link.a_key if link else (record.back_link if record else None)
            if owner is None:
                pair = b_only.setdefault(b_key, Pair({"a": None, "b": b_key}))
            else:
                pair = by_a.setdefault(owner, Pair({"a": owner, "b": b_key}, link))
                if pair.keys["b"] is None:
                    pair.keys["b"] = b_key
                elif pair.keys["b"] != b_key:
                    self.dead_letter(
                        "identity",
                        f"b:{b_key}",
                        f"B record {b_key} holds A key {owner}, which is paired with B record "
                        f"{pair.keys['b']}: one of the two B records is a duplicate; merge or "
                        f"unlink it (clear its {self.ends['b'].link_field})",
                        {"b": jsonable(record.raw) if record else {}},
                    )
                    continue
                pair.link = pair.link or link
            pair.records["b"] = record
            if record is not None:
                pair.from_window.add("b")
        self._links_for_back_links(by_a)
        return [*by_a.values(), *b_only.values()]

    def _links_for_back_links(self, pairs: dict[str, Pair]) -> None:
        """Pairs found by back-link alone: the ledger may link either key elsewhere."""
        unlinked = [pair for pair in pairs.values() if pair.link is None and pair.keys["b"]]
        if not unlinked:
            return
        name = self.spec.name
        by_a = self.ledger.pair_links(name, a_keys=[str(pair.keys["a"]) for pair in unlinked])
        by_b = self.ledger.pair_links(name, b_keys=[str(pair.keys["b"]) for pair in unlinked])
        for pair in unlinked:
            a_key, b_key = str(pair.keys["a"]), str(pair.keys["b"])
            link = by_a.get(a_key) or by_b.get(b_key)
            if link is None:
                continue
            if (link.a_key, link.b_key) == (a_key, b_key):
                pair.link = link
                continue
            # The ledger pairs one of them elsewhere: the ledger's pair stands.
            del pairs[a_key]
            self.dead_letter(
                "identity",
                f"a:{a_key}",
                f"A record {a_key} and B record {b_key} name each other, but the ledger pairs "
                f"A {link.a_key} with B {link.b_key}: a duplicate; merge or unlink it",
                {},
            )

    async def fetch_counterparts(self, pairs: list[Pair]) -> None:
        for side in SIDES:
            wanted = sorted(
                {
                    str(pair.keys[side])
                    for pair in pairs
                    if pair.keys[side] is not None and pair.records[side] is None
                }
            )
            if not wanted:
                continue
            frame = await self.ends[side].source.fetch(wanted)
            found = self.records(side, frame)
            for pair in pairs:
                key = pair.keys[side]
                if key is not None and pair.records[side] is None:
                    pair.records[side] = found.get(key)

    # deciding ------------------------------------------------------------------------------

    def decide_pair(self, pair: Pair) -> Decision | None:
        """The pair's decision, or ``None`` when it cannot be decided (then a dead letter)."""
        for side in SIDES:
            key = pair.keys[side]
            if key is not None and pair.records[side] is None:
                there = other(side)
                if pair.link is not None:
                    reason = (
                        f"{side.upper()} record {key} of {self.ends[side].name}, paired with "
                        f"{there.upper()} record {pair.keys[there]}, is gone (deleted or out of "
                        "scope): it is not created again; delete or unlink the other one"
                    )
                else:
                    reason = (
                        f"{there.upper()} record {pair.keys[there]} holds {key!r} in "
                        f"{self.ends[there].link_field}, but {self.ends[side].name} has no such "
                        "record and no pair links them: the field is used by something else, "
                        f"or the record was deleted; nothing was written. Narrow {there}.filter "
                        "to the records this integration owns, or clear the field"
                    )
                self.dead_letter(
                    "gone",
                    pair.letter_key(),
                    reason,
                    {
                        there: jsonable(record.raw)
                        for there, record in pair.records.items()
                        if record is not None
                    },
                )
                return None
        for side in SIDES:
            if pair.keys[side] is None and not self.spec.creates_on(side):
                # New on the other side, which the spec does not copy this way.
                self.summary.not_created += 1
                return None
        synced = pair.link.synced_values if pair.link is not None else None
        try:
            decision = decide(self.rules, pair.records["a"], pair.records["b"], synced)
        except UnmappableValueError as error:
            self.dead_letter("map", pair.letter_key(), str(error), self._versions(pair))
            return None
        for side in pair.from_window:
            if not decision.changed[side] and self._echo(pair, side):
                self.summary.side(side).echoes += 1
        self.summary.conflicts += len(decision.conflicts) - len(decision.held)
        if decision.held:
            self.summary.held += len(decision.held)
            listed = "; ".join(
                f"{conflict.field}: A {conflict.a!r}, B {conflict.b!r} (agreed {conflict.synced!r})"
                for conflict in decision.held
            )
            self.dead_letter(
                "conflict",
                pair.letter_key(),
                f"changed on both sides, held for a person: {listed}; make the sides agree "
                "(edit either record) and the next run carries on",
                {
                    **self._versions(pair),
                    "synced": synced,
                    "fields": [conflict.field for conflict in decision.held],
                },
                blocks=False,
            )
        return decision

    def _echo(self, pair: Pair, side: Side) -> bool:
        """The record changed since Syncline last saw it, and holds, for the fields Syncline
        writes there, exactly what it wrote (a record the window's overlap reads again, seen
        before, is no echo)."""
        record, link = pair.records[side], pair.link
        if record is None or link is None:
            return False
        written, seen = (
            (link.a_written_hash, link.a_seen_version)
            if side == "a"
            else (link.b_written_hash, link.b_seen_version)
        )
        if _version(record) == seen:
            return False
        return written is not None and written == self.written_hash(side, record.native)

    def written_hash(self, side: Side, values: Values) -> str:
        into = {
            rule.name: values.get(rule.name) for rule in self.rules if rule.flows_from(other(side))
        }
        return hashlib.sha256(json.dumps(into, sort_keys=True).encode()).hexdigest()

    def _versions(self, pair: Pair) -> dict[str, Any]:
        return {
            side: jsonable(record.raw)
            for side, record in pair.records.items()
            if record is not None
        }

    # writing -------------------------------------------------------------------------------

    def columns(self, side: Side, key: str) -> list[Column]:
        end = self.ends[side]
        written = [
            Column(rule.native_name(side), COLUMN_TYPES[rule.spec.type])
            for rule in self.rules
            if rule.flows_from(other(side))
        ]
        extra = [Column(key)] if key != end.link_field else []
        return [*extra, Column(end.link_field), *written]

    def typed(self, side: Side, rule: FieldRule, value: str | None) -> Any:
        """A decided value (normalised text) as the side's column takes it."""
        if value is None:
            return None
        kind = rule.spec.type
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            return value == "true"
        if kind == "datetime":
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value

    def row_for(self, side: Side, pair: Pair, writes: Values) -> dict[str, Any]:
        """The record to write to ``side``: what it holds, overlaid with the decision."""
        end = self.ends[side]
        record = pair.records[side]
        row: dict[str, Any] = {}
        if record is not None:
            row[end.spec.key] = record.key
        row[end.link_field] = pair.keys[other(side)]
        for rule in self.rules:
            if not rule.flows_from(other(side)):
                continue
            name = rule.native_name(side)
            if rule.name in writes:
                row[name] = self.typed(side, rule, writes[rule.name])
            elif record is not None:
                row[name] = record.raw.get(name)
        return row

    async def write(self, decided: list[tuple[Pair, Decision]]) -> list[tuple[Pair, Decision]]:
        """Creates first (learning the new keys), then updates with back-links; returns the
        pairs that went through."""
        in_doubt = open_intent_keys(self.ledger, self.spec.name)  # read once for the four
        writers = {
            (side, how): AuditedWrites(
                target,
                self.ledger,
                self.spec.name,
                target_object=self.ends[side].name,
                flow_run_id=self.flow_run_id,
                in_doubt=in_doubt,
            )
            for side in SIDES
            for how, target in (("key", self.ends[side].by_key), ("link", self.ends[side].by_link))
        }
        for side in SIDES:
            creates = [
                (pair, decision)
                for pair, decision in decided
                if pair.records[side] is None and pair.keys[side] is None
            ]
            if creates:
                await self._create(side, creates, writers[(side, "link")])
        for side in SIDES:
            updates = [
                (pair, decision)
                for pair, decision in decided
                if pair.records[side] is not None
                and pair.letter_key() not in self.failed
                and (
                    decision.writes[side] or pair.records[side].back_link != pair.keys[other(side)]  # type: ignore[union-attr]
                )
            ]
            if updates:
                await self._update(side, updates, writers[(side, "key")])
        return [
            (pair, decision) for pair, decision in decided if pair.letter_key() not in self.failed
        ]

    async def _create(
        self, side: Side, creates: list[tuple[Pair, Decision]], writer: AuditedWrites
    ) -> None:
        end = self.ends[side]
        frame = pd.DataFrame.from_records(
            [self.row_for(side, pair, decision.writes[side]) for pair, decision in creates]
        )
        await end.by_link.prepare(self.columns(side, end.link_field), end.link_field)
        result = await writer.upsert(frame, end.link_field)
        self._count(side, result)
        by_link = {str(pair.keys[other(side)]): pair for pair, _ in creates}
        self._rejected(side, result, by_link)
        assigned = dict(result.assigned_keys)
        missing = [
            key
            for key in by_link
            if key not in assigned and by_link[key].letter_key() not in self.failed
        ]
        if missing:
            found = await end.source.fetch(missing, by=end.link_field)
            for row in found.to_dict(orient="records"):
                assigned[str(row[end.link_field])] = str(row[end.spec.key])
        for other_key, pair in by_link.items():
            if pair.letter_key() in self.failed:
                continue
            new_key = assigned.get(other_key)
            if new_key is None:
                self.dead_letter(
                    "write",
                    pair.letter_key(),
                    f"{end.name} confirmed the create but the record is not found by "
                    f"{end.link_field}={other_key}; the next run looks again",
                    self._versions(pair),
                )
                continue
            pair.keys[side] = new_key
            pair.written.add(side)

    async def _update(
        self, side: Side, updates: list[tuple[Pair, Decision]], writer: AuditedWrites
    ) -> None:
        end = self.ends[side]
        frame = pd.DataFrame.from_records(
            [self.row_for(side, pair, decision.writes[side]) for pair, decision in updates]
        )
        await end.by_key.prepare(self.columns(side, end.spec.key), end.spec.key)
        result = await writer.upsert(frame, end.spec.key)
        self._count(side, result)
        self._rejected(side, result, {str(pair.keys[side]): pair for pair, _ in updates})
        for pair, _ in updates:
            pair.written.add(side)

    def _count(self, side: Side, result: WriteResult) -> None:
        counts = self.summary.side(side)
        counts.created += len(result.created)
        counts.updated += len(result.updated)

    def _rejected(self, side: Side, result: WriteResult, pairs: dict[str, Pair]) -> None:
        for rejected in result.rejected:
            pair = pairs.get(rejected.key)
            if pair is None:
                continue
            self.dead_letter(
                "write",
                pair.letter_key(),
                f"{self.ends[side].name} refused it: {rejected.reason}",
                self._versions(pair),
            )

    # accounting ----------------------------------------------------------------------------

    def dead_letter(
        self, stage: str, key: str, reason: str, payload: dict[str, Any], *, blocks: bool = True
    ) -> None:
        """Park a record (or a pair) with the reason; ``blocks``: nothing of it is written
        (a held conflict blocks only its own fields, which the decision already left out)."""
        (self.failed if blocks else self.held_keys).add(key)
        self.letters.append((stage, RejectedRecord(key, reason, payload)))

    def save(self, done: list[tuple[Pair, Decision]]) -> None:
        links: list[PairLink] = []
        for pair, decision in done:
            a_key, b_key = pair.keys["a"], pair.keys["b"]
            a, b = pair.records["a"], pair.records["b"]
            if a_key is None or b_key is None:
                continue
            held: dict[Side, Values] = {
                side: {
                    **(record.native if record is not None else {}),
                    **decision.writes[side],
                }
                for side, record in zip(SIDES, (a, b), strict=True)
            }
            link = PairLink(
                a_key=a_key,
                b_key=b_key,
                a_written_hash=self.written_hash("a", held["a"]),
                b_written_hash=self.written_hash("b", held["b"]),
                # A side written to now holds a version not seen yet: its next read is new.
                a_seen_version=None if "a" in pair.written else _version(a),
                b_seen_version=None if "b" in pair.written else _version(b),
                synced_values=decision.synced,
            )
            if link != pair.link:
                links.append(link)
        self.ledger.save_pair_links(self.spec.name, links, flow_run_id=self.flow_run_id)
        by_stage: dict[str, list[RejectedRecord]] = {}
        for stage, letter in self.letters:
            by_stage.setdefault(stage, []).append(letter)
        for stage, letters in by_stage.items():
            self.ledger.dead_letter(
                self.spec.name, letters, stage=stage, flow_run_id=self.flow_run_id
            )
        self.summary.dead_lettered = len({letter.key for _, letter in self.letters})


def _version(record: SideRecord | None) -> str | None:
    if record is None or record.changed_at is None:
        return None
    return record.changed_at.isoformat()


async def run_two_way(
    spec: TwoWaySpec,
    a: Endpoint,
    b: Endpoint,
    ledger: Ledger,
    *,
    flow_run_id: str | None = None,
    full_refresh: bool = False,
    only: Mapping[Side, Sequence[str]] | None = None,
    resolves_as: Literal["resolved", "replayed"] = "resolved",
    seen: dict[Side, set[str]] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
) -> TwoWaySummary:
    """Carry each side's changes to the other; report what happened (see the module doc).

    The cursors are not moved here: ``finish_two_way_run`` does it once the caller has the
    summary, so a run that dies midway is run again over the same windows and, deciding from
    both sides' current values and the agreed ones, writes only what is still missing.

    ``only`` carries just the records named, by side (an event: a webhook said they changed):
    they are read as they are now, whatever the webhook held, and no cursor moves. A webhook
    that came late, twice or out of order changes nothing the current state does not warrant.

    ``seen``, when given, receives the keys each side's read brought (for what the caller does
    with the same records next, e.g. their journals), so it need not read them again.
    """
    run = TwoWayRun(
        spec,
        a,
        b,
        ledger,
        flow_run_id=flow_run_id,
        full_refresh=full_refresh,
        now=now,
        logger=logger,
    )
    summary = run.summary
    run_id = flow_run_id or "local"
    ledger.run_started(spec.name, run_id, started_at=summary.started_at)
    try:
        if only is None:
            changed = {side: run.records(side, await run.read_changes(side)) for side in SIDES}
        else:
            changed = {side: await run.read_keys(side, only.get(side, ())) for side in SIDES}
        if seen is not None:
            for side in SIDES:
                seen[side] = set(changed[side])
        retried = {
            key for key in ledger.pending_dead_letter_keys(spec.name) if key[:2] in ("a:", "b:")
        }
        if only is not None:  # an event retries the letters of its own records only
            named = {f"{side}:{key}" for side in SIDES for key in only.get(side, ())}
            retried &= named
        pairs = run.pair(changed, retried)
        await run.fetch_counterparts(pairs)
        summary.pairs = len(pairs)
        decided = [
            (pair, decision) for pair in pairs if (decision := run.decide_pair(pair)) is not None
        ]
        done = await run.write(decided)
        run.save(done)
        through = [pair.letter_key() for pair, _ in done]
        through += [f"b:{pair.keys['b']}" for pair, _ in done if pair.keys["b"] is not None]
        closing = (set(through) & retried) - run.failed - run.held_keys
        if closing:
            ledger.resolve_dead_letters(
                spec.name, sorted(closing), status=resolves_as, flow_run_id=flow_run_id
            )
    except BaseException as error:
        summary.finished_at = now()
        _add_calls(summary, a, b)
        ledger.run_failed(
            spec.name,
            run_id,
            error=f"{type(error).__name__}: {error}",
            summary=summary.model_dump(mode="json"),
        )
        raise
    summary.finished_at = now()
    _add_calls(summary, a, b)
    logger.info(
        "%s: A %d read, %d created, %d updated, %d echoes; B %d read, %d created, %d updated, "
        "%d echoes; %d conflicts decided, %d held, %d dead-lettered",
        spec.name,
        summary.a.read,
        summary.a.created,
        summary.a.updated,
        summary.a.echoes,
        summary.b.read,
        summary.b.created,
        summary.b.updated,
        summary.b.echoes,
        summary.conflicts,
        summary.held,
        summary.dead_lettered,
    )
    return summary


def _add_calls(summary: TwoWaySummary, *ends: Endpoint) -> None:
    seen: set[int] = set()
    for end in ends:
        for part in (end.source, end.by_key, end.by_link):
            stats: CallStats | None = part.call_stats()
            if stats is None or id(stats) in seen:
                continue
            seen.add(id(stats))
            summary.api_calls += stats.requests
            summary.api_retries += stats.retries
            summary.rate_limited += stats.rate_limited


def finish_two_way_run(ledger: Ledger, spec: TwoWaySpec, summary: TwoWaySummary) -> None:
    """After the writes are confirmed: move both sides' cursors, then record the run."""
    a_to_b, b_to_a = spec.views()
    for name, counts in ((a_to_b.name, summary.a), (b_to_a.name, summary.b)):
        if counts.cursor_after is not None:
            ledger.commit_cursor(name, counts.cursor_after, flow_run_id=summary.flow_run_id)
    ledger.run_finished(
        summary.integration, summary.flow_run_id or "local", summary.model_dump(mode="json")
    )
