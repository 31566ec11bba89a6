"""Simple expressions in specs, evaluated on whole columns at once.

``expr: "upper(name) + '.' + lower(domain)"`` or ``where: "operational_status != '6'"``.
The text is parsed with Python's ``ast`` and only a small, safe subset is accepted: field
names, literals, arithmetic, comparisons, ``and``/``or``/``not``, ``x if cond else y`` and the
functions in ``FUNCTIONS``. Nothing is ever passed to ``eval``. Each expression is evaluated on a
whole batch (a pandas ``Series`` per field), never per record.

Null (a missing value: ``None``, NaN, ``pd.NA``) follows one rule, as in SQL, whichever side it
is on and whether it comes from a field or a literal:

- ``+ - * / %`` and unary ``-`` with a null operand give null; so does ``x / 0`` and ``x % 0``.
  ``+`` joins text when either side is text (a number is written as Python's ``str`` writes it);
  the other operators need numbers, and text there is an error (``number(x)`` reads text).
- Comparisons with a null operand give null; comparing text with a number is an error.
- ``and``/``or``/``not`` use three-valued logic: ``null and false`` is false, ``null or true``
  is true, otherwise null stays null. Other values count as Python counts them (``""`` and ``0``
  are false). ``a if cond else b`` takes ``b`` where ``cond`` is null, and ``where:`` leaves out
  records whose condition is null.
- Functions of a null argument give null (``upper(null)`` is null), except the two whose job is
  missing values: ``coalesce(a, b, ...)``, the first value that is neither null nor ``""`` (else
  the last), and ``concat(a, b, ...)``, which joins the values and leaves nulls out.
- ``""`` is text, not null: ``"" + x`` is ``x`` written as text.

A dotted name such as ``assignment_group.display`` or ``fields.status.name`` is the column of
exactly that name if the source has one (flattened records); otherwise the longest leading part
that is a column holds nested records (dicts, from JSON) and the rest are keys into them, a
missing level giving null.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

Value = Any  # a pandas Series (one value per record) or a scalar broadcast to every record
Kind = Literal["text", "number", "other"]


class ExpressionError(ValueError):
    pass


# --- single values ------------------------------------------------------------------------


def is_null(value: Any) -> bool:
    """Whether one value is missing, as pandas counts it."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _kind_of(value: Any) -> Kind:
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool | int | float):
        return "number"
    return "other"


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _binary_value(op: type[ast.operator], left: Any, right: Any) -> Any:
    if is_null(left) or is_null(right):
        return None
    if op is ast.Add and (isinstance(left, str) or isinstance(right, str)):
        return _text_of(left) + _text_of(right)
    if isinstance(left, str) or isinstance(right, str):
        raise _text_in_arithmetic(op)
    if op in (ast.Div, ast.Mod) and right == 0:
        return None
    try:
        return _BINARY[op](left, right)
    except (TypeError, ArithmeticError) as error:
        raise ExpressionError(f"cannot apply {_SYMBOLS[op]} to {left!r} and {right!r}") from error


def _compare_value(op: type[ast.cmpop], left: Any, right: Any) -> bool | None:
    if is_null(left) or is_null(right):
        return None
    if isinstance(left, str) != isinstance(right, str):
        raise _text_compared(left, right)
    try:
        return bool(_COMPARE[op](left, right))
    except TypeError as error:
        raise ExpressionError(f"cannot compare {left!r} with {right!r}") from error


def _negate_value(value: Any) -> Any:
    if is_null(value):
        return None
    if isinstance(value, str):
        raise _text_in_arithmetic(ast.USub)
    try:
        return -int(value) if isinstance(value, bool) else -value
    except TypeError as error:
        raise ExpressionError(f"cannot negate {value!r}") from error


def _truth_value(value: Any) -> bool | None:
    return None if is_null(value) else bool(value)


def _text_in_arithmetic(op: type[ast.AST]) -> ExpressionError:
    return ExpressionError(
        f"{_SYMBOLS[op]} needs numbers, not text; read text as a number with number(...)"
    )


def _text_compared(left: Any, right: Any) -> ExpressionError:
    return ExpressionError(
        f"cannot compare text with a number ({left!r}, {right!r}); "
        "read text as a number with number(...)"
    )


# --- functions, on one record's (non-null) values -----------------------------------------


def _split_part(value: Any, separator: Any, index: Any) -> str | None:
    separator = _text_of(separator)
    if separator == "":
        raise ExpressionError("split_part needs a separator that is not empty")
    if isinstance(index, bool) or not isinstance(index, int | float) or index != int(index):
        raise ExpressionError(f"split_part needs a whole number as its index, got {index!r}")
    parts = _text_of(value).split(separator)
    position = int(index)
    return parts[position] if -len(parts) <= position < len(parts) else None


def _number(value: Any) -> float | None:
    """Python's ``float`` reading; text that is not a number gives null."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(number) else number


def _coalesce(*values: Any) -> Any:
    for value in values:
        if not is_null(value) and value != "":
            return value
    return None if is_null(values[-1]) else values[-1]


def _concat(*values: Any) -> str:
    return "".join(_text_of(value) for value in values if not is_null(value))


# name: (function, fewest arguments, most arguments or None, whether null in gives null out)
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None, bool]] = {
    "upper": (lambda value: _text_of(value).upper(), 1, 1, True),
    "lower": (lambda value: _text_of(value).lower(), 1, 1, True),
    "strip": (lambda value, *chars: _text_of(value).strip(*map(_text_of, chars)), 1, 2, True),
    "title": (lambda value: _text_of(value).title(), 1, 1, True),
    "replace": (
        lambda value, old, new: _text_of(value).replace(_text_of(old), _text_of(new)),
        3,
        3,
        True,
    ),
    "startswith": (lambda value, part: _text_of(value).startswith(_text_of(part)), 2, 2, True),
    "endswith": (lambda value, part: _text_of(value).endswith(_text_of(part)), 2, 2, True),
    "number": (_number, 1, 1, True),
    "split_part": (_split_part, 3, 3, True),
    "concat": (_concat, 1, None, False),
    "coalesce": (_coalesce, 1, None, False),
}
FUNCTIONS: dict[str, Callable[..., Any]] = {name: entry[0] for name, entry in _FUNCTIONS.items()}


def call_function(name: str, args: Sequence[Any]) -> Any:
    """One record's result of the function ``name`` (the null rule included)."""
    function, _, _, strict = _FUNCTIONS[name]
    if strict and any(is_null(arg) for arg in args):
        return None
    return function(*args)


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_SYMBOLS: dict[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Mod: "%",
    ast.USub: "unary -",
}


def dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of plain names, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


class Expression:
    """A parsed, checked expression.

    ``paths`` are the field names as written (``fields.status.name``); ``names`` are the source
    fields those read: a dotted name's first part (the field holding the nested record, or the
    field whose ``<field>.display`` column ServiceNow adds).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as error:
            raise ExpressionError(f"cannot parse expression {text!r}: {error.msg}") from None
        self._tree = tree.body
        self.paths: frozenset[str] = frozenset(self._check(tree.body))
        self.names: frozenset[str] = frozenset(path.split(".", 1)[0] for path in self.paths)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def _check(self, node: ast.AST) -> set[str]:
        """Reject anything outside the subset; collect the field names."""
        names: set[str] = set()
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            path = dotted_name(node)
            if path is None:
                raise ExpressionError(
                    f"only field names can be dotted (a.b.c) in expression {self.text!r}"
                )
            names.add(path)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, str | int | float | bool | None):
                raise ExpressionError(f"unsupported literal in {self.text!r}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                known = ", ".join(sorted(FUNCTIONS))
                raise ExpressionError(f"unknown function in {self.text!r}; available: {known}")
            if node.keywords:
                raise ExpressionError(f"keyword arguments are not supported in {self.text!r}")
            _, fewest, most, _ = _FUNCTIONS[node.func.id]
            if len(node.args) < fewest or (most is not None and len(node.args) > most):
                wanted = str(fewest) if fewest == most else f"{fewest} to {most or 'any'}"
                raise ExpressionError(
                    f"{node.func.id} takes {wanted} arguments, got {len(node.args)} "
                    f"in {self.text!r}"
                )
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    raise ExpressionError(f"unsupported syntax Starred in {self.text!r}")
                names |= self._check(arg)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            names |= self._check(node.left) | self._check(node.right)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            names |= self._check(node.left) | self._check(node.comparators[0])
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                names |= self._check(value)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
            names |= self._check(node.operand)
        elif isinstance(node, ast.IfExp):
            names |= self._check(node.test) | self._check(node.body) | self._check(node.orelse)
        else:
            raise ExpressionError(
                f"unsupported syntax {type(node).__name__} in expression {self.text!r}"
            )
        return names

    def evaluate(self, frame: pd.DataFrame) -> pd.Series:
        """One value per row of ``frame``."""
        missing = [path for path in self.paths if _column_for(path, frame.columns) is None]
        if missing:
            raise ExpressionError(
                f"expression {self.text!r} uses {', '.join(sorted(missing))}, "
                "which the source records do not have"
            )
        value = self._eval(self._tree, frame)
        if isinstance(value, pd.Series):
            return value
        return pd.Series([value] * len(frame), index=frame.index, dtype=object)

    def _eval(self, node: ast.AST, frame: pd.DataFrame) -> Value:
        index = frame.index
        if isinstance(node, ast.Name | ast.Attribute):
            path = dotted_name(node)
            assert path is not None  # _check
            return _resolve(path, frame)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            args = [self._eval(arg, frame) for arg in node.args]
            return _call(node.func.id, args, index)
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, frame), self._eval(node.right, frame)
            return _binary(type(node.op), left, right, index)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, frame)
            right = self._eval(node.comparators[0], frame)
            return _compare(type(node.ops[0]), left, right, index)
        if isinstance(node, ast.BoolOp):
            values = [_truth(self._eval(value, frame), index) for value in node.values]
            return _logic(isinstance(node.op, ast.And), values, index)
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, frame)
            if isinstance(node.op, ast.Not):
                truth = _truth(operand, index)
                if isinstance(truth, pd.Series):
                    return ~truth
                return None if truth is None else not truth
            return _negate(operand, index)
        if isinstance(node, ast.IfExp):
            return self._choose(node, frame)
        raise ExpressionError(f"unsupported syntax in {self.text!r}")  # unreachable: _check

    def _choose(self, node: ast.IfExp, frame: pd.DataFrame) -> Value:
        """Each branch is evaluated on its own records only, so the other's cannot fail."""
        test = _truth(self._eval(node.test, frame), frame.index)
        if not isinstance(test, pd.Series):
            return self._eval(node.body if test else node.orelse, frame)
        chosen = test.fillna(False).to_numpy(dtype=bool)
        out = np.full(len(frame), None, dtype=object)
        for branch, rows in ((node.body, chosen), (node.orelse, ~chosen)):
            if rows.any():
                part = frame.loc[rows]
                out[rows] = _objects(self._eval(branch, part), len(part))
        return pd.Series(out, index=frame.index, dtype=object)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.to_string_ser_schema()
        )

    @classmethod
    def _validate(cls, value: Any) -> Expression:
        if isinstance(value, Expression):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected an expression as text, got {value!r}")
        return cls(value)


# --- fields -------------------------------------------------------------------------------


def _column_for(path: str, columns: Iterable[Any]) -> str | None:
    """The column ``path`` reads: itself, else its longest leading part (nested records)."""
    present = set(columns)
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in present:
            return head
    return None


def _resolve(path: str, frame: pd.DataFrame) -> pd.Series:
    column = _column_for(path, frame.columns)
    assert column is not None  # evaluate checked
    values = frame[column]
    if column == path:
        return values
    keys = path[len(column) + 1 :].split(".")
    return pd.Series([_dig(value, keys) for value in values], index=frame.index, dtype=object)


def _dig(value: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return None if is_null(value) else value


# --- whole columns ------------------------------------------------------------------------


def _nulls(value: Value, size: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    if isinstance(value, pd.Series):
        return value.isna().to_numpy(dtype=bool)
    return np.full(size, is_null(value), dtype=bool)


def _objects(value: Value, size: int) -> np.ndarray[Any, Any]:
    """Python values, None for null."""
    if isinstance(value, pd.Series):
        out = np.array(value.to_numpy(dtype=object), dtype=object, copy=True)
        out[value.isna().to_numpy(dtype=bool)] = None  # NaN, NA and NaT alike
        return out
    items = value if isinstance(value, list) else [None if is_null(value) else value] * size
    out = np.empty(size, dtype=object)
    out[:] = items
    return out


def _kind(value: Value) -> Kind:
    """What a null-free operand holds: all text, all numbers, or anything else."""
    if not isinstance(value, pd.Series):
        return _kind_of(value)
    dtype = value.dtype
    if isinstance(dtype, pd.StringDtype):
        return "text"
    if dtype.kind in "biuf":  # numpy's and the nullable Int64, Float64, boolean
        return "number"
    inferred = pd.api.types.infer_dtype(value, skipna=True)
    if inferred in ("string", "empty"):
        return "text"
    if inferred in ("integer", "floating", "mixed-integer-float"):
        return "number"
    return "other"


def _numbers(value: Value) -> Value:
    if isinstance(value, pd.Series) and pd.api.types.is_bool_dtype(value.dtype):
        return value.astype("int64")
    return value


def _texts(value: Value) -> Value:
    if not isinstance(value, pd.Series):
        return _text_of(value)
    if _kind(value) == "text":
        return value.astype(object)
    return pd.Series([_text_of(item) for item in value.tolist()], index=value.index, dtype=object)


def _present(value: Value, rows: np.ndarray[Any, np.dtype[np.bool_]]) -> Value:
    return value.loc[rows] if isinstance(value, pd.Series) else value


def _rowwise(function: Callable[..., Any], args: Sequence[Value], size: int) -> list[Any]:
    columns = [_objects(arg, size) for arg in args]
    return [function(*row) for row in zip(*columns, strict=True)]


def _coalesce_columns(args: list[Value], index: pd.Index) -> pd.Series:
    """``coalesce`` on whole columns: per record, the first value neither null nor ``""``."""
    size = len(index)
    columns = [_objects(arg, size) for arg in args]
    out = columns[-1].copy()  # none usable: the last value ("" stays "", null stays None)
    decided = np.zeros(size, dtype=bool)
    for column in columns:
        values = pd.Series(column, dtype=object)
        usable = (values.notna() & (values != "")).to_numpy(dtype=bool) & ~decided
        out[usable] = column[usable]
        decided |= usable
    return pd.Series(out, index=index, dtype=object)


def _all_null(index: pd.Index) -> pd.Series:
    return pd.Series(np.full(len(index), None, dtype=object), index=index, dtype=object)


def _result(index: pd.Index, rows: np.ndarray[Any, np.dtype[np.bool_]], values: Value) -> pd.Series:
    out = np.full(len(index), None, dtype=object)
    if rows.any():
        out[rows] = _objects(values, int(rows.sum()))
    return pd.Series(out, index=index, dtype=object)


def _binary(op: type[ast.operator], left: Value, right: Value, index: pd.Index) -> Value:
    if not isinstance(left, pd.Series) and not isinstance(right, pd.Series):
        return _binary_value(op, left, right)
    rows = ~(_nulls(left, len(index)) | _nulls(right, len(index)))
    if not rows.any():
        return _all_null(index)
    left, right = _present(left, rows), _present(right, rows)
    kinds = {_kind(left), _kind(right)}
    if "other" in kinds:
        values: Value = _rowwise(
            lambda a, b: _binary_value(op, a, b), [left, right], int(rows.sum())
        )
    elif "text" in kinds:
        if op is not ast.Add:
            raise _text_in_arithmetic(op)
        values = _texts(left) + _texts(right)
    else:
        left, right = _numbers(left), _numbers(right)
        if op in (ast.Div, ast.Mod):
            if not isinstance(right, pd.Series):
                if right == 0:
                    return _all_null(index)
            else:
                zero = np.asarray(right == 0, dtype=bool)
                if zero.any():
                    rows[np.flatnonzero(rows)[zero]] = False
                    left, right = _present(left, ~zero), right.loc[~zero]
        values = _BINARY[op](left, right)
    return _result(index, rows, values)


def _compare(op: type[ast.cmpop], left: Value, right: Value, index: pd.Index) -> Value:
    if not isinstance(left, pd.Series) and not isinstance(right, pd.Series):
        return _compare_value(op, left, right)
    rows = ~(_nulls(left, len(index)) | _nulls(right, len(index)))
    out = pd.Series(pd.NA, index=index, dtype="boolean")
    if not rows.any():
        return out
    left, right = _present(left, rows), _present(right, rows)
    kinds = {_kind(left), _kind(right)}
    if "other" in kinds:
        values: Any = _rowwise(
            lambda a, b: _compare_value(op, a, b), [left, right], int(rows.sum())
        )
    elif len(kinds) > 1:
        raise _text_compared(_first(left), _first(right))
    elif kinds == {"text"}:
        values = _COMPARE[op](_texts(left), _texts(right)).to_numpy(dtype=bool)
    else:
        values = _COMPARE[op](_numbers(left), _numbers(right))
        values = np.asarray(values, dtype=bool)
    out[rows] = values
    return out


def _first(value: Value) -> Any:
    return value.iloc[0] if isinstance(value, pd.Series) else value


def _negate(value: Value, index: pd.Index) -> Value:
    if not isinstance(value, pd.Series):
        return _negate_value(value)
    rows = ~_nulls(value, len(index))
    if not rows.any():
        return _all_null(index)
    value = value.loc[rows]
    kind = _kind(value)
    if kind == "text":
        raise _text_in_arithmetic(ast.USub)
    if kind == "number":
        return _result(index, rows, -_numbers(value))
    return _result(index, rows, _rowwise(_negate_value, [value], int(rows.sum())))


def _truth(value: Value, index: pd.Index) -> Value:
    """``True``/``False``/null per record (a ``boolean`` Series) or one scalar."""
    if not isinstance(value, pd.Series):
        return _truth_value(value)
    if isinstance(value.dtype, pd.BooleanDtype):
        return value
    rows = ~_nulls(value, len(index))
    present = value.loc[rows]
    kind = _kind(present)
    out = pd.Series(pd.NA, index=index, dtype="boolean")
    if kind == "text":
        out[rows] = (present.astype(object) != "").to_numpy(dtype=bool)
    elif kind == "number":
        out[rows] = (_numbers(present) != 0).to_numpy(dtype=bool)
    elif rows.any():  # "other", or no values at all
        out[rows] = [bool(item) for item in present.tolist()]
    return out


def _logic(conjunction: bool, values: list[Value], index: pd.Index) -> Value:
    """Three-valued ``and``/``or``: pandas' ``boolean`` dtype is Kleene logic."""
    if not any(isinstance(value, pd.Series) for value in values):
        if conjunction:
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    columns = [
        value
        if isinstance(value, pd.Series)
        else pd.Series(pd.NA if value is None else value, index=index, dtype="boolean")
        for value in values
    ]
    result = columns[0]
    for column in columns[1:]:
        result = (result & column) if conjunction else (result | column)
    return result


# One-argument text functions that pandas' string methods compute as Python's str does, in a
# loop of its own: the per-record path below is several times slower on large batches.
_TEXT_METHODS = frozenset({"upper", "lower", "title", "strip"})


def _call(name: str, args: list[Value], index: pd.Index) -> Value:
    _, _, _, strict = _FUNCTIONS[name]
    if not any(isinstance(arg, pd.Series) for arg in args):
        return call_function(name, args)
    if name in _TEXT_METHODS and len(args) == 1 and _kind(args[0]) == "text":
        column = args[0].astype(object)
        present = column.notna().to_numpy(dtype=bool)
        out = np.full(len(index), None, dtype=object)
        if present.any():
            out[present] = getattr(column[present].str, name)().to_numpy(dtype=object)
        return pd.Series(out, index=index, dtype=object)
    if name == "coalesce":
        return _coalesce_columns(args, index)
    if not strict:
        values = _rowwise(lambda *row: call_function(name, row), args, len(index))
        return _result(index, np.ones(len(index), dtype=bool), values)
    rows = np.ones(len(index), dtype=bool)
    for arg in args:
        rows &= ~_nulls(arg, len(index))
    present = [_present(arg, rows) for arg in args]
    values = _rowwise(FUNCTIONS[name], present, int(rows.sum()))
    return _result(index, rows, values)
