"""Why a webhook delivery was not accepted, in one line that is safe to log and to return.

Every message names the source and the JSON path of the problem::

    pagerduty: event.data.id: missing
    datadog: alert_transition: unknown value 'Trigerred' (expected one of Triggered, ...)

A delivery may carry credentials or personal data, so messages never quote a whole payload
and quote a value only where it is one of a closed set of words (a status, a transition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

# Long paths and messages are cut: the line goes into HTTP responses and logs.
_MAX_MESSAGE = 300


class InboundError(ValueError):
    """A delivery that cannot be accepted: one line saying what and where (JSON path), e.g.
    "pagerduty: event.data.id: missing" — no secret or whole payload in it."""


class IgnoredDelivery(InboundError):
    """A well-formed delivery that carries nothing Syncline acts on.

    For example a PagerDuty ``service.updated`` event or a Jira ``worklog_created`` event.
    Vendors disable or back off subscriptions that keep getting 4xx answers (PagerDuty
    after three consecutive drops), so a receiver may answer these with a 2xx and emit
    nothing; a receiver that does not know this subclass treats it as any rejection.
    """


def json_path(location: Sequence[int | str]) -> str:
    """``("event", "data", "id")`` -> ``event.data.id``; list indexes as ``tags[2]``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def problem(source: str, path: str, what: str) -> InboundError:
    """The error for one problem found by hand (not by a pydantic model)."""
    return InboundError(_one_line(f"{source}: {path}: {what}"))


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a JSON object"
    if kind in ("list_type", "tuple_type"):
        return "expected a JSON array"
    if kind == "string_type":
        return "expected a string"
    # pydantic's own messages ("Input should be ...") never contain the input value, and ours
    # (PydanticCustomError in values.py) quote at most a short word from a closed set.
    message = error["msg"]
    return message[0].lower() + message[1:] if message else kind


def from_validation_error(
    source: str, error: ValidationError, at: Sequence[int | str] = ()
) -> InboundError:
    """The first problem pydantic found, with its JSON path (below ``at``); how many more."""
    details = error.errors(include_url=False, include_input=False, include_context=False)
    first = details[0]
    more = len(details) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return problem(source, json_path([*at, *first["loc"]]), _describe(first) + suffix)


Model = TypeVar("Model", bound=BaseModel)


def validated(
    source: str, model: type[Model], payload: object, at: Sequence[int | str] = ()
) -> Model:
    """``payload`` (found at ``at`` in the delivery) checked by ``model``, or an
    ``InboundError`` naming the first problem."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise from_validation_error(source, error, at) from None
