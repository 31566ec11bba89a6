"""The building blocks the ServiceNow seed generators share: timestamps, the spread of
``sys_updated_on``, sys_ids, system fields and the shapes of serial numbers and MAC
addresses. Every draw goes through the one ``random.Random`` a ``SeedWriter`` holds, so the
order of calls is part of what makes a seed reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime

Record = dict[str, str]

SECONDS_PER_DAY = 86_400
SECONDS_PER_YEAR = 365 * SECONDS_PER_DAY


class TimestampText:
    """Formats epoch seconds as ``YYYY-MM-DD HH:MM:SS``. The date is cached per day and the
    time of day comes from a table, because ``strftime`` for each of the hundreds of
    thousands of seeded timestamps would dominate seeding time."""

    _TIMES_OF_DAY: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._days: dict[int, str] = {}
        if not TimestampText._TIMES_OF_DAY:
            TimestampText._TIMES_OF_DAY = tuple(
                f" {hour:02d}:{minute:02d}:{second:02d}"
                for hour in range(24)
                for minute in range(60)
                for second in range(60)
            )

    def __call__(self, epoch_seconds: int) -> str:
        day, second_of_day = divmod(epoch_seconds, SECONDS_PER_DAY)
        date_text = self._days.get(day)
        if date_text is None:
            date_text = datetime.fromtimestamp(day * SECONDS_PER_DAY, UTC).strftime("%Y-%m-%d")
            self._days[day] = date_text
        return date_text + self._TIMES_OF_DAY[second_of_day]


class UpdateTimes:
    """Draws ``sys_updated_on`` values (epoch seconds) within the year before ``now``.

    With a small probability per record a run of 20-200 records starts that all share one
    second, as a discovery run or a bulk import writes them; about a third of records end up
    in such runs.
    """

    def __init__(self, rng: random.Random, now_epoch: int, run_start_probability: float) -> None:
        self._rng = rng
        self._latest = now_epoch - 60
        self._earliest = now_epoch - SECONDS_PER_YEAR
        self._run_start_probability = run_start_probability
        self._run_left = 0
        self._run_time = 0

    def next(self) -> tuple[int, bool]:
        """The next timestamp and whether it belongs to a bulk run."""
        if self._run_left > 0:
            self._run_left -= 1
            return self._run_time, True
        if self._rng.random() < self._run_start_probability:
            self._run_left = self._rng.randint(20, 200) - 1
            self._run_time = self._random_moment()
            return self._run_time, True
        return self._random_moment(), False

    def _random_moment(self) -> int:
        # random() scaled rather than randint(): several times faster, and the seconds
        # granularity hides the difference.
        return self._earliest + int(self._rng.random() * (self._latest - self._earliest))


def new_sys_id(rng: random.Random) -> str:
    """32 lower-case hex characters, the shape of a ServiceNow sys_id."""
    return f"{rng.getrandbits(128):032x}"


def weighted(rng: random.Random, options: Sequence[tuple[str, int]], count: int) -> list[str]:
    """``count`` values drawn with the given integer weights. Each value is repeated by its
    weight and drawn uniformly, which is faster than ``choices(weights=...)``'s bisection."""
    expanded = [value for value, weight in options for _ in range(weight)]
    return rng.choices(expanded, k=count)


def system_fields(
    sys_id: str,
    created_on: str,
    created_by: str,
    updated_on: str,
    updated_by: str,
    mod_count: int,
) -> Record:
    return {
        "sys_id": sys_id,
        "sys_created_on": created_on,
        "sys_created_by": created_by,
        "sys_updated_on": updated_on,
        "sys_updated_by": updated_by,
        "sys_mod_count": str(mod_count),
    }


class SeedWriter:
    """One seed's random stream and clock. Every generator draws from the same ``rng`` in a
    fixed order, which is what makes the whole seed reproducible."""

    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(f"servicenow-seed:{seed}")
        self.now_epoch = int(now.timestamp())
        self.text = TimestampText()

    def old_timestamps(self) -> tuple[str, str]:
        """Created 2-4 years ago and last updated 1-2 years ago: reference data."""
        created = self.now_epoch - self.rng.randint(2 * SECONDS_PER_YEAR, 4 * SECONDS_PER_YEAR)
        updated = self.now_epoch - self.rng.randint(SECONDS_PER_YEAR, 2 * SECONDS_PER_YEAR)
        return self.text(created), self.text(updated)

    def reference_records(self, rows: Sequence[Record]) -> list[Record]:
        records = []
        for row in rows:
            created, updated = self.old_timestamps()
            records.append(
                system_fields(new_sys_id(self.rng), created, "admin", updated, "admin", 1) | row
            )
        return records


def virtual_serial(rng: random.Random) -> str:
    """VMware's BIOS serial: ``VMware-42 1a ... 9f-7e 4b ... 8b`` (16 hex bytes)."""
    spaced = rng.getrandbits(128).to_bytes(16, "big").hex(" ")
    return f"VMware-{spaced[:23]}-{spaced[24:]}"


def hardware_serial(rng: random.Random) -> str:
    """Ten upper-case hex characters, the shape of many vendors' serial numbers."""
    return f"{rng.getrandbits(40):010X}"


def mac_address(rng: random.Random, *, virtual: bool) -> str:
    """VMware's 00:50:56 prefix for virtual NICs, a random vendor-style one otherwise."""
    if virtual:
        return "00:50:56:" + rng.getrandbits(24).to_bytes(3, "big").hex(":")
    return rng.getrandbits(40).to_bytes(5, "big").hex(":") + ":01"
