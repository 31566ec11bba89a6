"""Background churn: records of one table changing while a client reads it.

A sync that reads a large table page by page meets records that change, appear, retire and
disappear during the read. ``Churn`` produces that from a thread: every second it makes
``changes_per_second`` realistic edits (the kind ``touch`` makes), and optionally creates
new CIs, retires CIs (``install_status`` 7, operational status 6) and hard-deletes records,
each at its own rate.

The sequence of operations is fixed by the seed: operation i of a kind with rate r is due at
i / r seconds, operations run in order of due time (ties in the order change, create,
retire, delete), and one random generator picks the records and the edits. Wall-clock timing
decides only when each operation happens, so two sandboxes seeded alike, with no other
writers, see the same operations on the same records. Each batch of due operations runs under
the sandbox lock, so a reader sees all of a batch or none of it.

Churn always ends: at ``duration_seconds`` (at most an hour), after ``max_changes``
operations if given, or when stopped; ``stop`` waits for the thread to finish.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import pydantic

from sandboxes.servicenow.encoded_query import format_timestamp

_logger = logging.getLogger(__name__)

_KINDS = ("change", "create", "retire", "delete")
_TICK_SECONDS = 0.05
_PICK_ATTEMPTS = 20
_TRAILING_NUMBER = re.compile(r"-?\d+$")


class ChurnConfig(pydantic.BaseModel):
    """What changes, how fast, and for how long. Rates are operations per second."""

    model_config = pydantic.ConfigDict(extra="forbid")

    table: str = "cmdb_ci_server"
    changes_per_second: float = pydantic.Field(default=10.0, ge=0, le=5_000)
    creates_per_second: float = pydantic.Field(default=0.0, ge=0, le=5_000)
    retires_per_second: float = pydantic.Field(default=0.0, ge=0, le=5_000)
    deletes_per_second: float = pydantic.Field(default=0.0, ge=0, le=5_000)
    seed: int = 0
    duration_seconds: float = pydantic.Field(default=60.0, gt=0, le=3_600)
    max_changes: int | None = pydantic.Field(default=None, ge=1)

    def rates(self) -> tuple[float, float, float, float]:
        return (
            self.changes_per_second,
            self.creates_per_second,
            self.retires_per_second,
            self.deletes_per_second,
        )


class ChurnReport(pydantic.BaseModel):
    """What a churn run has done so far; the sys_id lists are in the order of the writes
    (``changed_ids`` holds each record once, at its first change)."""

    running: bool = False
    table: str = ""
    changed: int = 0
    created: int = 0
    retired: int = 0
    deleted: int = 0
    changed_ids: list[str] = pydantic.Field(default_factory=list)
    created_ids: list[str] = pydantic.Field(default_factory=list)
    retired_ids: list[str] = pydantic.Field(default_factory=list)
    deleted_ids: list[str] = pydantic.Field(default_factory=list)
    error: str | None = None


class ChurnTarget(Protocol):
    """What churn needs from the sandbox."""

    def locked(self) -> AbstractContextManager[None]: ...
    def now(self) -> datetime: ...
    def sys_ids(self, table: str) -> list[str]: ...
    def get(self, table: str, sys_id: str) -> dict[str, Any] | None: ...
    def insert(
        self, table: str, fields: Mapping[str, str], *, user: str = ...
    ) -> dict[str, Any]: ...
    def update(
        self, table: str, sys_id: str, fields: Mapping[str, str], *, user: str = ...
    ) -> dict[str, Any]: ...
    def delete(self, table: str, sys_id: str) -> bool: ...
    def change_record(self, table: str, sys_id: str, rng: random.Random) -> bool: ...


class Churn:
    """One churn run on a background thread: ``start``, then ``stop`` (or let it end)."""

    def __init__(self, target: ChurnTarget, config: ChurnConfig) -> None:
        self.config = config
        self._target = target
        self._rng = random.Random(f"churn:{config.seed}:{config.table}")
        self._candidates: list[str] = []
        self._first_new_number = 0
        self._attempted = [0, 0, 0, 0]
        self._changed_once: dict[str, None] = {}
        self._report = ChurnReport(table=config.table)
        self._report_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sandbox-churn-{config.table}", daemon=True
        )

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        """Check the table and take the records to work on; raises ValueError when the
        configuration does not fit the table."""
        config = self.config
        with self._target.locked():
            self._candidates = self._target.sys_ids(config.table)
            self._first_new_number = len(self._candidates) + 1
            if config.creates_per_second or config.retires_per_second:
                sample = (
                    self._target.get(config.table, self._candidates[0])
                    if self._candidates
                    else None
                )
                if sample is None or "install_status" not in sample:
                    raise ValueError(
                        f"creating and retiring need CIs to copy and retire: {config.table} "
                        "is not a CMDB table with records"
                    )
        with self._report_lock:
            self._report.running = True
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> ChurnReport:
        """Stop making changes and wait for the thread; the final report."""
        self._stop.set()
        self.join(timeout)
        return self.report()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (by itself, or after ``stop``)."""
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def report(self) -> ChurnReport:
        with self._report_lock:
            snapshot = self._report.model_copy(deep=True)
        snapshot.running = self.running
        return snapshot

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        config = self.config
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                elapsed = min(time.monotonic() - started, config.duration_seconds)
                self._run_due(elapsed)
                if self._exhausted() or elapsed >= config.duration_seconds:
                    break
                self._stop.wait(_TICK_SECONDS)
        except Exception as error:  # a churn defect must show, not pass as a quiet read
            _logger.exception("sandbox churn on %s failed", config.table)
            with self._report_lock:
                self._report.error = f"{type(error).__name__}: {error}"
        finally:
            with self._report_lock:
                self._report.running = False

    def _exhausted(self) -> bool:
        limit = self.config.max_changes
        return limit is not None and sum(self._attempted) >= limit

    def _run_due(self, elapsed: float) -> None:
        """Every operation due by ``elapsed`` seconds, in one locked batch."""
        operations = (self._change, self._create, self._retire, self._delete)
        with self._target.locked():
            while not self._exhausted():
                due = self._next_due()
                if due is None or due[0] > elapsed:
                    return
                kind = due[1]
                self._attempted[kind] += 1
                operations[kind]()

    def _next_due(self) -> tuple[float, int] | None:
        best: tuple[float, int] | None = None
        for kind, rate in enumerate(self.config.rates()):
            if rate <= 0:
                continue
            due_at = (self._attempted[kind] + 1) / rate
            if best is None or due_at < best[0]:
                best = (due_at, kind)
        return best

    def _pick(self) -> tuple[int, str] | None:
        """A random record of the table that still exists, with its index among the
        candidates; others' deletions are noticed here and dropped from the candidates."""
        candidates = self._candidates
        for _ in range(_PICK_ATTEMPTS):
            if not candidates:
                return None
            index = self._rng.randrange(len(candidates))
            sys_id = candidates[index]
            if self._target.get(self.config.table, sys_id) is not None:
                return index, sys_id
            self._drop(index)
        return None

    def _drop(self, index: int) -> None:
        candidates = self._candidates
        candidates[index] = candidates[-1]
        candidates.pop()

    def _change(self) -> None:
        picked = self._pick()
        if picked is None:
            return
        sys_id = picked[1]
        if not self._target.change_record(self.config.table, sys_id, self._rng):
            return
        with self._report_lock:
            self._report.changed += 1
            if sys_id not in self._changed_once:
                self._changed_once[sys_id] = None
                self._report.changed_ids.append(sys_id)

    def _create(self) -> None:
        picked = self._pick()
        template = self._target.get(self.config.table, picked[1]) if picked is not None else None
        if template is None:
            return
        number = self._first_new_number + self._report.created
        fields = new_ci_fields(template, number, self._rng, format_timestamp(self._target.now()))
        # Created in the template's own class, which defines every field the template has.
        table = template.get("sys_class_name") or self.config.table
        record = self._target.insert(table, fields, user="discovery")
        self._candidates.append(record["sys_id"])
        with self._report_lock:
            self._report.created += 1
            self._report.created_ids.append(record["sys_id"])

    def _retire(self) -> None:
        for _ in range(_PICK_ATTEMPTS):
            picked = self._pick()
            if picked is None:
                return
            sys_id = picked[1]
            record = self._target.get(self.config.table, sys_id)
            if record is not None and record.get("install_status") != "7":
                break
        else:
            return
        self._target.update(
            self.config.table,
            sys_id,
            {"install_status": "7", "operational_status": "6"},
            user="cmdb.import",
        )
        with self._report_lock:
            self._report.retired += 1
            self._report.retired_ids.append(sys_id)

    def _delete(self) -> None:
        picked = self._pick()
        if picked is None:
            return
        index, sys_id = picked
        if not self._target.delete(self.config.table, sys_id):
            return
        self._drop(index)
        with self._report_lock:
            self._report.deleted += 1
            self._report.deleted_ids.append(sys_id)


def new_ci_fields(
    template: Mapping[str, str], number: int, rng: random.Random, now_text: str
) -> dict[str, str]:
    """A newly discovered CI built like ``template`` (same class, OS, model, location and
    owners, as servers built from one template are), with its own name, addresses and
    serial number. Names continue the template's pattern with ``number``."""
    fields = {
        name: value
        for name, value in template.items()
        if not name.startswith("sys_") or name == "sys_class_name"
    }
    old_name = template.get("name", "")
    name = f"{_TRAILING_NUMBER.sub('', old_name) or 'ci'}-{number:05d}"
    fields["name"] = name
    for field_name in ("host_name", "fqdn"):
        value = template.get(field_name)
        if value is not None:
            fields[field_name] = (
                name + value[len(old_name) :] if value.startswith(old_name) else name
            )
    if "ip_address" in fields:
        # Seeded servers use 10.10-10.249; new ones take 10.250-10.255, so addresses stay unique.
        fields["ip_address"] = (
            f"10.{250 + number // 62_500 % 6}.{number // 250 % 250}.{number % 250 + 2}"
        )
    if "mac_address" in fields:
        fields["mac_address"] = _mac_address(rng, virtual=template.get("virtual") == "true")
    if template.get("serial_number"):
        fields["serial_number"] = f"{rng.getrandbits(48):012X}"
    if template.get("asset_tag"):
        fields["asset_tag"] = f"P{3_000_000 + number}"
    fields.update(install_status="1", operational_status="1", correlation_id="")
    for field_name in ("first_discovered", "last_discovered"):
        if template.get(field_name):
            fields[field_name] = now_text
    if "install_date" in fields:
        fields["install_date"] = now_text
    return fields


def _mac_address(rng: random.Random, *, virtual: bool) -> str:
    prefix: Sequence[int] = (0x00, 0x50, 0x56) if virtual else (0x3C, 0xEC, 0xEF)
    octets = [*prefix, rng.randrange(256), rng.randrange(256), rng.randrange(256)]
    return ":".join(f"{octet:02x}" for octet in octets)
