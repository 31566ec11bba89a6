"""Deletions: records deleted at the source, or gone out of the spec's scope, leave the target.

Two things find them, per the spec's ``deletes:`` policy (``delete``, ``soft`` or ``ignore``):

- **leaving scope**, every run: the keys changed in the run's window are read again, key-only,
  *without* the native filter. A key that changed but was not delivered by the filtered read
  has left the scope (e.g. a CI retired: ``install_status=7`` is filtered out, so the ordinary
  read never sees the change). Before deleting, the source is asked whether those keys are in
  scope *now*: a record that changed back between the two reads is kept (the next run reads
  it). Records the spec's ``where`` left out are out of scope too.
- **hard deletes**, every ``scan_every`` and on every full refresh: all keys of the scope are
  read, key-only, and target keys the source no longer has are deleted. The target's keys are
  taken *before* the run writes anything, so a record created after the scan began is never
  deleted by it; and a scan the source could not deliver in full (rows hidden by access rules)
  deletes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from connectors.base.records import DeleteRule, ReadWindow, RecordSource, RecordTarget
from syncline.mapping import MappedBatch, target_keys
from syncline.specs import IntegrationSpec
from syncline.state import Ledger


@dataclass(slots=True)
class DeletionSummary:
    deleted: int = 0
    left_scope: int = 0
    scanned: bool = False


class Deletions:
    """One run's deletions: watches what the read delivers, then deletes what is gone.

    ``before_writes`` runs after the target is prepared and before the run writes anything:
    when a key scan is due it takes the target's keys then, so a record this run (or anyone
    after it) creates is never deleted by the scan; into an empty target (a first load) there
    is nothing to delete, and the run does no deletion work at all.
    """

    def __init__(
        self,
        spec: IntegrationSpec,
        source: RecordSource,
        target: RecordTarget,
        ledger: Ledger,
        *,
        full_refresh: bool,
        flow_run_id: str | None,
        now: Callable[[], datetime],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.spec = spec
        self.source = source
        self.target = target
        self.ledger = ledger
        self.flow_run_id = flow_run_id
        self.now = now
        self.logger = logger
        self.enabled = spec.deletes.policy != "ignore"
        self.scan_due = self.enabled and _scan_due(spec, ledger, full_refresh, now())
        self.delivered: set[str] = set()
        self.filtered_out: set[str] = set()
        self.held: set[str] = set()
        self.target_object = f"{spec.target.connector}:{spec.target.object}"

    async def before_writes(self) -> None:
        if not self.enabled:
            return
        batches = self.target.read_keys(self.spec.target.key)
        try:
            async for keys in batches:
                self.held.update(keys)
                if not self.scan_due:
                    break  # only whether the target holds anything matters then
        finally:
            # Leaving early must release the reader's connection now, not when it is collected.
            close = getattr(batches, "aclose", None)
            if close is not None:
                await close()
        if not self.held:
            # Every row the target will hold after this run is one it delivered in scope: there
            # is nothing to delete (a first load skips the second read and the scan).
            self.enabled = False
            if self.scan_due:
                self.ledger.record_delete_scan(
                    self.spec.name, at=self.now(), flow_run_id=self.flow_run_id, deleted=0
                )

    def saw(self, batch: pd.DataFrame, mapped: MappedBatch) -> None:
        if self.enabled:
            self.delivered.update(batch[self.spec.source.key].astype(str).tolist())
            self.filtered_out.update(mapped.filtered_keys)

    async def apply(self, window: ReadWindow) -> DeletionSummary:
        """Delete (or mark) in the target what left the source's scope; scan when due."""
        summary = DeletionSummary()
        if not self.enabled:
            return summary
        spec, source = self.spec, self.source
        rule = DeleteRule(soft_column=spec.deletes.column, at=self.now())
        left = set(self.filtered_out)
        if spec.source.filter:
            changed: set[str] = set()
            async for keys in source.read_keys(window, scoped=False):
                changed.update(keys)
            candidates = changed - self.delivered
            if candidates:
                left |= candidates - await source.in_scope(sorted(candidates))
        summary.left_scope = len(left)
        if left:
            deleted = await self._delete(sorted(left), rule, "left the integration's scope")
            summary.deleted += len(deleted)
            if deleted:
                self.logger.info(
                    "%s: %d record(s) left the scope and were %s",
                    spec.name,
                    len(deleted),
                    "marked deleted" if rule.soft_column else "deleted",
                )
        if self.scan_due:
            summary.scanned = True
            summary.deleted += await self._scan(rule)
        return summary

    async def _delete(self, keys: list[str], rule: DeleteRule, why: str) -> list[str]:
        spec = self.spec
        deleted = await self.target.delete(target_keys(spec, keys), spec.target.key, rule)
        self.ledger.audit(
            spec.name,
            action="soft_deleted" if rule.soft_column else "deleted",
            target_object=self.target_object,
            keys=deleted,
            flow_run_id=self.flow_run_id,
            detail=why,
        )
        return deleted

    async def _scan(self, rule: DeleteRule) -> int:
        """Target keys (taken before this run wrote) that the source no longer has."""
        spec, source = self.spec, self.source
        started = self.now()
        deleted: list[str] = []
        if self.held:
            unread_before = source.unread()
            present: set[str] = set()
            everything = ReadWindow(cursor_field=None, batch_size=max(spec.batch_size, 10_000))
            async for keys in source.read_keys(everything, scoped=True):
                present.update(str(key) for key in target_keys(spec, keys))
            hidden = source.unread() - unread_before
            if hidden:
                self.logger.warning(
                    "%s: the key scan could not read %d record(s) of %s.%s (access rules?); "
                    "no hard deletes applied this time",
                    spec.name,
                    hidden,
                    spec.source.connector,
                    spec.source.object,
                )
                return 0
            gone = sorted(self.held - present)
            if gone:
                deleted = await self._delete(gone, rule, "deleted at the source (key scan)")
            self.logger.info(
                "%s: key scan: %d source keys, %d target keys, %d deleted at the source",
                spec.name,
                len(present),
                len(self.held),
                len(deleted),
            )
        self.ledger.record_delete_scan(
            spec.name, at=started, flow_run_id=self.flow_run_id, deleted=len(deleted)
        )
        return len(deleted)


def _scan_due(spec: IntegrationSpec, ledger: Ledger, full_refresh: bool, at: datetime) -> bool:
    if full_refresh:
        return True
    every = spec.deletes.scan_every
    if every is None:
        return False
    last = ledger.last_delete_scan(spec.name)
    return last is None or at - last >= every
