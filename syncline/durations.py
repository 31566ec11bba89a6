"""Durations as people write them in specs: ``90``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_SHORT = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> Any:
    """Short forms become timedeltas; anything else is left for pydantic (ISO 8601, seconds)."""
    if isinstance(value, str):
        match = _SHORT.match(value)
        if match:
            return timedelta(seconds=float(match["number"]) * _UNITS[match["unit"]])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
