"""Pydantic models of what the ServiceNow Table API sends and receives."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ServiceNowErrorDetail(BaseModel):
    message: str = ""
    detail: str | None = None


class ServiceNowErrorBody(BaseModel):
    """``{"error": {"message": …, "detail": …}, "status": "failure"}``."""

    error: ServiceNowErrorDetail
    status: str = "failure"


def flatten_record(record: dict[str, Any]) -> dict[str, Any]:
    """Plain fields from the Table API's shapes.

    A reference ``{"link": …, "value": sys_id}`` becomes its ``value``; with
    ``sysparm_display_value=true`` a reference ``{"display_value": …, "link": …}`` becomes its
    display value; with ``all``, ``{"display_value": d, "value": v}`` becomes ``name: v`` plus
    ``name.display: d``, so a mapping can take either.
    """
    flat: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, dict):
            if "value" in value:
                flat[name] = value["value"]
                if "display_value" in value:
                    flat[f"{name}.display"] = value["display_value"]
            else:
                flat[name] = value.get("display_value", "")
        else:
            flat[name] = value
    return flat


class ListResult(BaseModel):
    result: list[dict[str, Any]]


class SingleResult(BaseModel):
    result: dict[str, Any]
