"""Pydantic models of what the ServiceNow Table API sends and receives."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ServiceNowErrorDetail(BaseModel):
    message: str = ""
    detail: str | None = None


class ServiceNowErrorBody(BaseModel):
    """``{"error": {"message": …, "detail": …}, "status": "failure"}``."""

    error: ServiceNowErrorDetail
    status: str = "failure"


class TableRecord(BaseModel):
    """Any Table API record: every value a string, references flattened to their sys_id."""

    model_config = ConfigDict(extra="allow", frozen=True)

    sys_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    sys_updated_on: str | None = None


def flatten_value(value: Any) -> Any:
    """A reference ``{"link": …, "value": sys_id}`` becomes its ``value``; others pass."""
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def flatten_record(record: dict[str, Any]) -> dict[str, Any]:
    return {name: flatten_value(value) for name, value in record.items()}


class ListResult(BaseModel):
    result: list[dict[str, Any]]


class SingleResult(BaseModel):
    result: dict[str, Any]
