"""Field and value mapping: a source batch in, a typed target batch and its rejects out.

Pure functions over pandas frames, vectorised per column. A record that does not map (a value
that cannot be cast, a value missing from a strict value map, an empty required field) is not
written: it comes back as a ``RejectedRecord`` with the reason, for the dead-letter table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from connectors.base.records import ColumnType, RejectedRecord
from syncline.specs import FieldMapping, IntegrationSpec

_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off"}


@dataclass(slots=True)
class MappedBatch:
    frame: pd.DataFrame  # target columns, indexed by the source key
    rejected: list[RejectedRecord] = field(default_factory=list)
    # Source keys of the records ``where`` left out: out of the integration's scope.
    filtered_keys: list[str] = field(default_factory=list)

    @property
    def filtered(self) -> int:
        return len(self.filtered_keys)


class RecordMapper:
    """Maps batches of source records to target records, as one integration spec says."""

    def __init__(self, spec: IntegrationSpec) -> None:
        self.spec = spec
        self.source_key = spec.source.key
        self.target_key = spec.target.key

    def apply(self, source: pd.DataFrame) -> MappedBatch:
        kept = source
        filtered_keys: list[str] = []
        if self.spec.where is not None:
            keep = self.spec.where.evaluate(source).fillna(False).astype(bool).to_numpy()
            kept = source.loc[keep]
            filtered_keys = source.loc[~keep, self.source_key].astype(str).tolist()
        reasons = pd.Series("", index=kept.index, dtype=object)
        columns: dict[str, pd.Series] = {}
        for name, mapping in self.spec.mapping.items():
            values, problems = map_field(kept, name, mapping)
            columns[name] = values
            if problems is not None:
                fresh = (reasons == "") & problems.notna()
                reasons[fresh] = problems[fresh]
        frame = pd.DataFrame(columns, index=kept.index)
        bad = (reasons != "").to_numpy()
        rejected = [
            RejectedRecord(
                key=str(row.get(self.source_key, "")),
                reason=str(reasons[index]),
                payload=jsonable(row),
            )
            for index, row in zip(
                kept.index[bad], kept.loc[bad].to_dict(orient="records"), strict=True
            )
        ]
        frame = frame.loc[~bad]
        # The index carries each row's source key: dead letters and links are by source key.
        frame.index = pd.Index(kept.loc[~bad, self.source_key].astype(str), name="source_key")
        # Within one batch the later version of a record wins (sources read oldest first).
        frame = frame.loc[~frame[self.target_key].duplicated(keep="last").to_numpy()]
        return MappedBatch(frame=frame, rejected=rejected, filtered_keys=filtered_keys)


def target_keys(spec: IntegrationSpec, source_keys: list[str]) -> list[Any]:
    """The target keys of records known only by source key (deletions).

    Specs with a ``deletes`` policy map the target key straight from the source key (the spec
    check enforces it), so this is the key field's cast alone.
    """
    if not source_keys:
        return []
    mapping = spec.mapping[spec.target.key]
    typed, failed = cast_column(pd.Series(source_keys, dtype=object), mapping.type, mapping.format)
    return [
        value.item() if isinstance(value, np.generic) else value
        for value in typed[~failed.to_numpy()].tolist()
    ]


def map_field(
    source: pd.DataFrame, name: str, mapping: FieldMapping
) -> tuple[pd.Series, pd.Series | None]:
    """The target column ``name`` and, per row, why it failed (``None``/NA where it did not)."""
    origin = mapping.from_ or name
    if mapping.expr is not None:
        raw = mapping.expr.evaluate(source)
        described = f"{name} (expr {mapping.expr.text!r})"
    elif origin in source.columns:
        raw = source[origin]
        described = name if origin == name else f"{name} (from {origin!r})"
    else:
        raw = pd.Series([None] * len(source), index=source.index, dtype=object)
        described = f"{name} (source field {origin!r} absent)"
    problems = pd.Series(pd.NA, index=source.index, dtype=object)

    values = _blank_to_null(raw, mapping.type)
    if mapping.map is not None:
        values, unmatched = _value_map(values, mapping.map, mapping.unmapped)
        if unmatched is not None:
            problems[unmatched] = [
                f"{described}: value {value!r} is not in the value map" for value in raw[unmatched]
            ]
    if mapping.default is not None:
        values = values.where(values.notna(), mapping.default)
    typed, failed = cast_column(values, mapping.type, mapping.format)
    if failed.any():
        fresh = failed & problems.isna()
        problems[fresh] = [
            f"{described}: cannot read {value!r} as {mapping.type.value}" for value in values[fresh]
        ]
    if mapping.required:
        empty = typed.isna() & problems.isna()
        if mapping.type is ColumnType.STRING:
            empty |= (typed == "").fillna(False).astype(bool) & problems.isna()
        problems[empty] = f"{described}: required but empty"
    has_problem = problems.notna()
    return typed, (problems if has_problem.any() else None)


def _blank_to_null(values: pd.Series, kind: ColumnType) -> pd.Series:
    """Vendors send "" for empty (ServiceNow sends nothing else); typed columns want null."""
    if kind is ColumnType.STRING or values.dtype.kind not in "OUST":
        return values
    return values.mask(values.astype("string") == "", None)


def _value_map(
    values: pd.Series, table: dict[str, Any], unmapped: str
) -> tuple[pd.Series, pd.Series | None]:
    keys = values.astype("string")
    mapped = keys.map(table)
    matched = keys.isin(list(table)).fillna(False).astype(bool)
    missing = values.notna() & ~matched
    if unmapped == "keep":
        return mapped.where(matched, values), None
    if unmapped == "null":
        return mapped.where(matched, None), None
    return mapped.where(matched, None), (missing if missing.any() else None)


def cast_column(
    values: pd.Series, kind: ColumnType, fmt: str | None = None
) -> tuple[pd.Series, pd.Series]:
    """``values`` as ``kind``; the mask marks non-null values that could not be cast."""
    present = values.notna()
    if kind is ColumnType.STRING:
        if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
            return values, _none(values)
        if values.dtype.kind == "M":
            return values.dt.strftime("%Y-%m-%d %H:%M:%S").astype("string"), _none(values)
        return values.astype("string"), _none(values)
    if kind in (ColumnType.INTEGER, ColumnType.FLOAT):
        numbers = pd.to_numeric(values, errors="coerce")
        failed = present & numbers.isna()
        if kind is ColumnType.FLOAT:
            return numbers.astype("Float64"), failed
        fractional = numbers.notna() & (numbers != np.floor(numbers.fillna(0)))
        failed |= fractional.fillna(False).astype(bool)
        return numbers.where(~failed).round().astype("Int64"), failed
    if kind is ColumnType.DECIMAL:
        decimals = [_decimal(value) for value in values]
        typed = pd.Series(decimals, index=values.index, dtype=object)
        return typed, present & typed.isna()
    if kind is ColumnType.BOOLEAN:
        if values.dtype == bool or str(values.dtype) == "boolean":
            return values.astype("boolean"), _none(values)
        text = values.astype("string").str.strip().str.lower()
        typed = pd.Series(pd.NA, index=values.index, dtype="boolean")
        typed[text.isin(_TRUE).fillna(False).astype(bool)] = True
        typed[text.isin(_FALSE).fillna(False).astype(bool)] = False
        return typed, present & typed.isna()
    if kind in (ColumnType.DATETIME, ColumnType.DATE):
        if values.dtype.kind == "M":
            stamps = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
            stamps = stamps.dt.tz_convert("UTC")
        else:
            stamps = pd.to_datetime(values, utc=True, errors="coerce", format=fmt or "ISO8601")
        failed = present & stamps.isna()
        if kind is ColumnType.DATE:
            return stamps.dt.tz_localize(None).dt.normalize(), failed
        return stamps, failed
    # JSON: any value is fine as it is.
    return values.astype(object), _none(values)


def _none(values: pd.Series) -> pd.Series:
    return pd.Series(False, index=values.index)


def _decimal(value: Any) -> Decimal | None:
    if value is None or (not isinstance(value, Decimal) and pd.isna(value)):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def jsonable(row: dict[Any, Any]) -> dict[str, Any]:
    """A source record as plain JSON values, for the dead-letter payload."""
    clean: dict[str, Any] = {}
    for name, value in row.items():
        if (
            value is None
            or value is pd.NA
            or value is pd.NaT
            or (isinstance(value, float) and np.isnan(value))
        ):
            clean[str(name)] = None
        elif isinstance(value, pd.Timestamp):
            clean[str(name)] = value.isoformat()
        elif isinstance(value, np.generic):
            clean[str(name)] = value.item()
        else:
            clean[str(name)] = value if isinstance(value, str | int | float | bool) else str(value)
    return clean
