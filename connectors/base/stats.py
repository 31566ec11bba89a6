"""Per-run call counts, shared by every connector and read by the engine's run summary.

Kept apart from the HTTP layer: the record protocol (``records.py``) reports these counts for
any connector, an SQL one included, and must not pull in HTTP to do so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class CallStats:
    """What a client did during one run: shown in the run summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    wait_seconds: float = 0.0
    # Pages asked for a second time because they came back with fewer rows than counted.
    rereads: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
