"""The simulated instance's clock (every vendor simulator keeps one).

A real instance's clock is not the caller's: it can run seconds or minutes behind or ahead,
and every ``sys_updated_on`` it writes follows its own clock. The sandbox clock therefore
runs at real UTC time plus an offset (zero unless configured), or stands frozen at a chosen
moment so tests can predict the timestamps it writes. Times are whole seconds, as stored.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class InstanceClock:
    """Real UTC time plus ``offset_seconds`` while running; ``set`` freezes it, ``advance``
    moves a frozen clock (and freezes a running one at the advanced time), ``run`` lets it
    run again at a given offset from real time."""

    def __init__(self, frozen_at: datetime | None = None, *, offset_seconds: float = 0.0) -> None:
        self._guard = threading.Lock()
        self._frozen_at = as_utc(frozen_at) if frozen_at is not None else None
        self._offset = timedelta(seconds=offset_seconds)

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    @property
    def offset_seconds(self) -> float:
        """How far a running clock is ahead of real time (negative: behind)."""
        return self._offset.total_seconds()

    def now(self) -> datetime:
        with self._guard:
            return self._exact().replace(microsecond=0)

    def set(self, moment: datetime) -> None:
        with self._guard:
            self._frozen_at = as_utc(moment)

    def advance(self, seconds: float) -> None:
        with self._guard:
            self._frozen_at = self._exact() + timedelta(seconds=seconds)

    def run(self, offset_seconds: float) -> None:
        with self._guard:
            self._frozen_at = None
            self._offset = timedelta(seconds=offset_seconds)

    def _exact(self) -> datetime:
        if self._frozen_at is not None:
            return self._frozen_at
        return datetime.now(UTC) + self._offset
