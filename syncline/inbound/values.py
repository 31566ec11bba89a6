"""Value types shared by the vendor parsers: texts, identifiers, timestamps, tags, severities.

Monitoring tools fill user-written templates, so a value may be an empty string, a number
where a string was meant (``"alert_id": $ALERT_ID`` written without quotes), or a
placeholder the tool left as it was (Dynatrace keeps ``{Tags[team]}`` when the entity has
no such tag). These types turn all of that into ``None`` or a clean string once, here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints
from pydantic_core import PydanticCustomError

from syncline.inbound.models import Severity

T = TypeVar("T")

# A Datadog variable ($ALERT_PRIORITY) or a Dynatrace placeholder ({Tags[team]}) that the
# tool did not substitute.
_PLACEHOLDER = re.compile(r"\$[A-Z][A-Z0-9_]*|\{[A-Za-z][A-Za-z0-9_.\[\] -]*\}")
# Unix times after this many units are milliseconds (1e11 s is the year 5138).
_MILLISECONDS_FROM = 100_000_000_000
# Values quoted in an error are cut to this length: they are short words (statuses).
_QUOTED_MAX = 40


class VendorPayload(BaseModel):
    """A vendor's delivery body: fields Syncline does not read are ignored, not rejected
    (vendors add fields over time); inputs never appear in error messages."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, hide_input_in_errors=True)


def quoted(value: object) -> str:
    """A short ``repr`` of a closed-set word for an error message."""
    text = str(value)
    if len(text) > _QUOTED_MAX:
        text = text[: _QUOTED_MAX - 1] + "…"
    return repr(text)


def unknown_value(value: object, expected: Iterable[str]) -> PydanticCustomError:
    return PydanticCustomError(
        "unknown_value",
        "unknown value {value} (expected one of {expected})",
        {"value": quoted(value), "expected": ", ".join(expected)},
    )


def lookup(value: str, table: Mapping[str, T], *, display: Iterable[str] | None = None) -> T:
    """``table[value]`` ignoring case and surrounding blanks, else an ``unknown_value`` error
    listing ``display`` (default: the table's keys)."""
    found = table.get(value.strip().casefold())
    if found is None:
        raise unknown_value(value, display if display is not None else table)
    return found


def is_placeholder(text: str) -> bool:
    return _PLACEHOLDER.fullmatch(text) is not None


def _scalar_text(value: Any) -> Any:
    # bool is an int: True must not become "True"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return value


def _optional_text(value: Any) -> Any:
    value = _scalar_text(value)
    if value is None or (isinstance(value, str) and (not value or is_placeholder(value))):
        return None
    return value


def _required_text(value: Any) -> Any:
    value = _scalar_text(value)
    if isinstance(value, str):
        if not value:
            raise PydanticCustomError("empty", "empty")
        if is_placeholder(value):
            raise PydanticCustomError(
                "placeholder",
                "template placeholder {placeholder} was not substituted",
                {"placeholder": quoted(value)},
            )
    return value


# In templated payloads (Datadog, Dynatrace, generic): a non-empty string; a number
# becomes its decimal text.
Text = Annotated[str, BeforeValidator(_required_text)]
# A string or None: empty strings and unsubstituted placeholders are None.
OptionalText = Annotated[str | None, BeforeValidator(_optional_text)]


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _optional_stripped(value: Any) -> Any:
    value = _stripped(value)
    return None if value == "" else value


# In payloads a vendor defines (PagerDuty, Jira, ServiceNow): a JSON string, as their
# descriptions say; a number there is a malformed delivery, not a template's shorthand.
VendorText = Annotated[str, BeforeValidator(_stripped), StringConstraints(min_length=1)]
OptionalVendorText = Annotated[str | None, BeforeValidator(_optional_stripped)]


def parse_timestamp(value: Any) -> datetime:
    """Epoch seconds or milliseconds (number or digits) or ISO 8601, as a UTC-aware time.

    A time without an offset is taken as UTC, which is what every source here sends.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = _from_epoch(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        moment = _from_epoch(float(value))
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _bad_timestamp() from None
    else:
        raise _bad_timestamp()
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _from_epoch(number: float) -> datetime:
    seconds = number / 1000 if abs(number) >= _MILLISECONDS_FROM else number
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise _bad_timestamp() from None


def _bad_timestamp() -> PydanticCustomError:
    return PydanticCustomError(
        "timestamp", "expected an ISO 8601 time or epoch seconds or milliseconds"
    )


def _optional_timestamp(value: Any) -> Any:
    value = _optional_text(value) if isinstance(value, str) else value
    return None if value is None else parse_timestamp(value)


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
OptionalTimestamp = Annotated[datetime | None, BeforeValidator(_optional_timestamp)]


def split_tags(text: str | None) -> list[str]:
    """``"env:prod, service:checkout"`` -> ``["env:prod", "service:checkout"]``."""
    if not text:
        return []
    return [tag for tag in (part.strip() for part in text.split(",")) if tag]


def tag_value(tags: Iterable[str], key: str) -> str | None:
    """The value of the first ``key:value`` tag (Datadog and Dynatrace tag syntax).

    Dynatrace prefixes imported tags with their origin in brackets (``[Kubernetes]app:x``);
    the prefix is ignored.
    """
    for tag in tags:
        name, sep, value = re.sub(r"^\[[^\]]*\]", "", tag).partition(":")
        if sep and name.strip().casefold() == key and value.strip():
            return value.strip()
    return None


# Words that sources and people use for severities, to Syncline's five levels.
_SEVERITY_WORDS: dict[str, Severity] = {
    "p1": "critical",
    "sev1": "critical",
    "sev-1": "critical",
    "critical": "critical",
    "crit": "critical",
    "fatal": "critical",
    "emergency": "critical",
    "disaster": "critical",
    "p2": "high",
    "sev2": "high",
    "sev-2": "high",
    "high": "high",
    "error": "high",
    "major": "high",
    "p3": "warning",
    "sev3": "warning",
    "sev-3": "warning",
    "warning": "warning",
    "warn": "warning",
    "medium": "warning",
    "minor": "warning",
    "average": "warning",
    "p4": "info",
    "p5": "info",
    "sev4": "info",
    "sev5": "info",
    "low": "info",
    "info": "info",
    "informational": "info",
    "notice": "info",
    "ok": "info",
    "success": "info",
}


def normalise_severity(raw: str | None) -> Severity:
    """A source's severity word to ``critical|high|warning|info``; ``unknown`` if unheard of.

    Severities are open-ended (users define priorities and custom levels), so an unknown
    word is kept as ``unknown`` and never rejects a delivery.
    """
    if raw is None:
        return "unknown"
    return _SEVERITY_WORDS.get(raw.strip().casefold(), "unknown")
