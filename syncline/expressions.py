"""Simple expressions in specs, evaluated on whole columns at once.

``expr: "upper(name) + '.' + lower(domain)"`` or ``where: "operational_status != '6'"``.
The text is parsed with Python's ``ast`` and only a small, safe subset is accepted: field
names, literals, arithmetic, comparisons, ``and``/``or``/``not``, ``x if cond else y`` and the
functions in ``FUNCTIONS``. Nothing is ever passed to ``eval``. Each expression is evaluated on a
whole batch (a pandas ``Series`` per field), never per record.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

Value = Any  # a pandas Series (one value per record) or a scalar broadcast to every record


class ExpressionError(ValueError):
    pass


def _text(value: Value) -> Value:
    return value.astype("string") if isinstance(value, pd.Series) else str(value)


def _str_method(name: str) -> Callable[..., Value]:
    def call(value: Value, *args: Value) -> Value:
        if isinstance(value, pd.Series):
            return getattr(_text(value).str, name)(*args)
        return getattr(str(value), name)(*args)

    return call


def _concat(*values: Value) -> Value:
    result: Value = ""
    for value in values:
        result = result + (_text(value).fillna("") if isinstance(value, pd.Series) else str(value))
    return result


def _coalesce(*values: Value) -> Value:
    result = values[0]
    for value in values[1:]:
        if isinstance(result, pd.Series):
            empty = result.isna() | (result.astype("string") == "")
            result = result.mask(empty, value)
        elif result is None or result == "":
            result = value
    return result


def _number(value: Value) -> Value:
    return pd.to_numeric(value, errors="coerce") if isinstance(value, pd.Series) else float(value)


def _split_part(value: Value, separator: str, index: int) -> Value:
    return _text(value).str.split(separator).str[int(index)]


FUNCTIONS: dict[str, Callable[..., Value]] = {
    "upper": _str_method("upper"),
    "lower": _str_method("lower"),
    "strip": _str_method("strip"),
    "title": _str_method("title"),
    "replace": _str_method("replace"),
    "startswith": _str_method("startswith"),
    "endswith": _str_method("endswith"),
    "concat": _concat,
    "coalesce": _coalesce,
    "number": _number,
    "split_part": _split_part,
}

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


class Expression:
    """A parsed, checked expression; ``names`` are the source fields it reads."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as error:
            raise ExpressionError(f"cannot parse expression {text!r}: {error.msg}") from None
        self._tree = tree.body
        self.names: frozenset[str] = frozenset(self._check(tree.body))

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
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, str | int | float | bool | None):
                raise ExpressionError(f"unsupported literal in {self.text!r}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                known = ", ".join(sorted(FUNCTIONS))
                raise ExpressionError(f"unknown function in {self.text!r}; available: {known}")
            if node.keywords:
                raise ExpressionError(f"keyword arguments are not supported in {self.text!r}")
            for arg in node.args:
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
        missing = self.names - set(frame.columns)
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
        if isinstance(node, ast.Name):
            return frame[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return FUNCTIONS[node.func.id](*(self._eval(arg, frame) for arg in node.args))
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, frame), self._eval(node.right, frame)
            if isinstance(node.op, ast.Add) and (isinstance(left, str) or isinstance(right, str)):
                return _concat(left, right)
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, frame)
            right = self._eval(node.comparators[0], frame)
            return _COMPARE[type(node.ops[0])](left, right)
        if isinstance(node, ast.BoolOp):
            values = [_truth(self._eval(value, frame)) for value in node.values]
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            result = values[0]
            for value in values[1:]:
                result = combine(result, value)
            return result
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, frame)
            return ~_truth(operand) if isinstance(node.op, ast.Not) else -operand
        if isinstance(node, ast.IfExp):
            test = _truth(self._eval(node.test, frame))
            body, orelse = self._eval(node.body, frame), self._eval(node.orelse, frame)
            if not isinstance(test, pd.Series):
                return body if test else orelse
            return pd.Series(
                np.where(test.to_numpy(), _broadcast(body, frame), _broadcast(orelse, frame)),
                index=frame.index,
            )
        raise ExpressionError(f"unsupported syntax in {self.text!r}")  # unreachable: _check

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


def _truth(value: Value) -> Value:
    if isinstance(value, pd.Series):
        return value.fillna(False).astype(bool)
    return bool(value)


def _broadcast(value: Value, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    if isinstance(value, pd.Series):
        return value.to_numpy(dtype=object)
    return np.full(len(frame), value, dtype=object)
