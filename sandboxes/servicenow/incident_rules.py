"""ServiceNow's out-of-box business rules for incidents, applied on every write as an
instance does: an ``INC`` number, defaults, the priority lookup from impact and urgency (a
client writing ``priority`` alone sees it replaced), and ``resolved_at``/``closed_at``/
``active`` following ``state``."""

from __future__ import annotations

from collections.abc import Callable

from sandboxes.servicenow.api import Record
from sandboxes.servicenow.seed import PRIORITY_BY_IMPACT_URGENCY


def apply_incident_rules(
    record: Record,
    written: set[str],
    *,
    inserting: bool,
    now_text: str,
    next_number: Callable[[], str],
    caller_sys_id: Callable[[], str],
) -> None:
    """ServiceNow's out-of-box incident behaviour: numbering, defaults, the priority
    lookup from impact and urgency, and state-driven timestamps."""
    if inserting:
        if not record.get("number"):
            record["number"] = next_number()
        record["state"] = record.get("state") or "1"
        record["impact"] = record.get("impact") or "3"
        record["urgency"] = record.get("urgency") or "3"
        record["opened_at"] = record.get("opened_at") or now_text
        # opened_by is whoever created the record: the API user when it is a user.
        record["opened_by"] = record.get("opened_by") or caller_sys_id()
    if inserting or {"impact", "urgency"} & written:
        derived = PRIORITY_BY_IMPACT_URGENCY.get(
            (record.get("impact", ""), record.get("urgency", ""))
        )
        if derived is not None:
            record["priority"] = derived
    state = record.get("state", "")
    if inserting or "state" in written:
        record["incident_state"] = state
        if state in ("6", "7") and not record.get("resolved_at"):
            record["resolved_at"] = now_text
        if state == "7" and not record.get("closed_at"):
            record["closed_at"] = now_text
        record["active"] = "false" if state in ("6", "7", "8") else "true"
