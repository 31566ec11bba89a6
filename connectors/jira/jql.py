"""JQL as the connector writes it: quoted values, dates at Jira's precision, correlation labels.

JQL dates are minutes in the integration user's time zone (``updated >= "2024-05-01 10:05"``
from a user in Europe/Paris means 08:05 UTC, and matches an issue updated at 10:05:40 local
time). A window kept to the second is therefore widened to whole minutes in that zone, plus
one minute each way, and the rows outside the exact window are dropped after reading.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

# Jira labels: no whitespace, at most 255 characters. The label is only an index into the
# issues (its value is checked against the property), so a lossy spelling is harmless.
LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-]")
LABEL_ROOM = 200
MINUTE = timedelta(minutes=1)


def quote(value: str) -> str:
    """A JQL string literal: double quotes, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def value_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote(value) for value in values) + ")"


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (the engine's cursors are UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def floor_minute(moment: datetime, zone: ZoneInfo) -> datetime:
    """``moment`` in ``zone``, seconds dropped (zones with odd offsets keep whole minutes)."""
    return as_utc(moment).astimezone(zone).replace(second=0, microsecond=0)


def jql_time(moment: datetime, zone: ZoneInfo) -> str:
    """``"yyyy-MM-dd HH:mm"`` in the user's zone, quoted."""
    return quote(moment.astimezone(zone).strftime("%Y-%m-%d %H:%M"))


def lower_bound(since: datetime, zone: ZoneInfo) -> datetime:
    """The first minute to ask for so that nothing at or after ``since`` is missed: its
    minute in the user's zone, less one more (a clock or rounding step never costs a row)."""
    return floor_minute(since, zone) - MINUTE


def upper_bound(until: datetime, zone: ZoneInfo) -> datetime:
    """The last minute to ask for (``<=`` compares with whole minutes): ``until`` rounded up
    to its minute, plus one."""
    floored = floor_minute(until, zone)
    if floored < as_utc(until):
        floored += MINUTE
    return floored + MINUTE


def parse_jira_time(text: str | None) -> datetime | None:
    """``2024-05-01T10:05:40.000+0200`` (Jira's spelling) or ISO 8601, as UTC."""
    if not text:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, pattern).astimezone(UTC)
        except ValueError:
            continue
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def correlation_label(prefix: str, value: str) -> str:
    """The label that indexes ``value``: ``syncline-<value>`` with anything a label cannot
    hold replaced; a long value is cut and given a hash so distinct values stay distinct."""
    safe = LABEL_UNSAFE.sub("_", value)
    if len(safe) > LABEL_ROOM:
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        safe = f"{safe[: LABEL_ROOM - 17]}-{digest}"
    return f"{prefix}{safe}"
