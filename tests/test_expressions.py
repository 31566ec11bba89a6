"""Expressions: one null rule, dotted fields, and whole columns against a per-row reference.

The reference below evaluates the same ``ast`` on one record at a time with plain Python values
(``None`` for null), written from the rule in ``syncline.expressions``' docstring and sharing no
code with it. The properties check that evaluating whole columns gives what it gives, record by
record, for random records and random expressions of the supported grammar.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncline.expressions import Expression, ExpressionError

# --- the per-row reference ------------------------------------------------------------------


class Failed(Exception):
    """The reference's counterpart of ExpressionError: the record cannot be evaluated."""


def null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def resolve(path: str, row: dict[str, Any]) -> Any:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in row:
            value = row[head]
            for key in parts[cut:]:
                value = value.get(key) if isinstance(value, dict) else None
            return value
    raise KeyError(path)


def truth(value: Any) -> bool | None:
    return None if null(value) else bool(value)


def split_part(value: str, separator: str, index: Any) -> str | None:
    if separator == "":
        raise Failed
    if isinstance(index, bool) or not isinstance(index, int | float) or index != int(index):
        raise Failed
    parts = value.split(separator)
    return parts[int(index)] if -len(parts) <= int(index) < len(parts) else None


def number(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(result) else result


STRICT: dict[str, Callable[..., Any]] = {
    "upper": lambda v: text(v).upper(),
    "lower": lambda v: text(v).lower(),
    "title": lambda v: text(v).title(),
    "strip": lambda v, *chars: text(v).strip(*(text(c) for c in chars)),
    "replace": lambda v, old, new: text(v).replace(text(old), text(new)),
    "startswith": lambda v, p: text(v).startswith(text(p)),
    "endswith": lambda v, p: text(v).endswith(text(p)),
    "number": number,
    "split_part": lambda v, sep, i: split_part(text(v), text(sep), i),
}
ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def reference(node: ast.AST, row: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name | ast.Attribute):
        return resolve(ast.unparse(node), row)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        left, right = reference(node.left, row), reference(node.right, row)
        if null(left) or null(right):
            return None
        if isinstance(node.op, ast.Add) and (isinstance(left, str) or isinstance(right, str)):
            return text(left) + text(right)
        if isinstance(left, str) or isinstance(right, str):
            raise Failed
        if isinstance(node.op, ast.Div | ast.Mod) and right == 0:
            return None
        try:
            return ARITHMETIC[type(node.op)](left, right)
        except (TypeError, ArithmeticError):  # a nested record is no number
            raise Failed from None
    if isinstance(node, ast.Compare):
        left, right = reference(node.left, row), reference(node.comparators[0], row)
        if null(left) or null(right):
            return None
        if isinstance(left, str) != isinstance(right, str):
            raise Failed
        try:
            return bool(COMPARISONS[type(node.ops[0])](left, right))
        except TypeError:
            raise Failed from None
    if isinstance(node, ast.BoolOp):
        values = [truth(reference(value, row)) for value in node.values]
        decisive = isinstance(node.op, ast.Or)  # the value that settles it: True for or
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    if isinstance(node, ast.UnaryOp):
        value = reference(node.operand, row)
        if isinstance(node.op, ast.Not):
            return None if null(value) else not value
        if null(value):
            return None
        if isinstance(value, str):
            raise Failed
        try:
            return -int(value) if isinstance(value, bool) else -value
        except TypeError:
            raise Failed from None
    if isinstance(node, ast.IfExp):
        chosen = node.body if truth(reference(node.test, row)) else node.orelse
        return reference(chosen, row)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        args = [reference(arg, row) for arg in node.args]
        name = node.func.id
        if name == "coalesce":
            present = [arg for arg in args if not null(arg) and arg != ""]
            return present[0] if present else (None if null(args[-1]) else args[-1])
        if name == "concat":
            return "".join(text(arg) for arg in args if not null(arg))
        if any(null(arg) for arg in args):
            return None
        return STRICT[name](*args)
    raise AssertionError(f"not in the grammar: {ast.dump(node)}")


def evaluate_rows(source: str, frame: pd.DataFrame) -> list[Any] | type[Failed]:
    """The reference's values for every record, or Failed if any record cannot be evaluated."""
    tree = ast.parse(source, mode="eval").body
    try:
        return [normal(reference(tree, row)) for row in python_rows(frame)]
    except Failed:
        return Failed


def evaluate_columns(source: str, frame: pd.DataFrame) -> list[Any] | type[Failed]:
    try:
        result = Expression(source).evaluate(frame)
    except ExpressionError:
        return Failed
    assert len(result) == len(frame) and result.index.equals(frame.index)
    return [normal(value) for value in result.to_numpy(dtype=object)]


def python_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The records as the frame holds them, in Python values (None for null)."""
    return [
        {name: normal(value) for name, value in row.items()}
        for row in frame.astype(object).to_dict(orient="records")
    ]


def normal(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, str | dict):
        return value.item()
    return value


def same(expected: list[Any] | type[Failed], actual: list[Any] | type[Failed]) -> bool:
    if expected is Failed or actual is Failed:
        return expected is actual
    assert isinstance(expected, list) and isinstance(actual, list)
    return all(
        type(want) is type(got) and want == got for want, got in zip(expected, actual, strict=True)
    )


# --- random records and expressions ---------------------------------------------------------

TEXTS = st.one_of(
    st.text(alphabet="aB c.9-ß", max_size=5),
    st.sampled_from(["", " ", "4", " 7 ", "2.5", "1e3", "abc", "Linux", "9"]),
)
INTS = st.integers(min_value=-1000, max_value=1000)
FLOATS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)
NUMBERS = st.one_of(INTS, FLOATS)
ANY = st.one_of(st.none(), TEXTS, NUMBERS)
NESTED = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"k": st.one_of(st.none(), TEXTS, st.fixed_dictionaries(
        {}, optional={"v": st.one_of(st.none(), TEXTS, INTS)}))}),
)  # fmt: skip

COLUMNS: dict[str, st.SearchStrategy[Any]] = {
    "s1": st.one_of(st.none(), TEXTS),
    "s2": st.one_of(st.none(), TEXTS),
    "n1": st.one_of(st.none(), NUMBERS),
    "n2": st.one_of(st.none(), INTS),
    "m": ANY,
    "rec": NESTED,
    "g.display": st.one_of(st.none(), TEXTS),
}
FIELDS = ["s1", "s2", "n1", "n2", "m", "rec.k", "rec.k.v", "g.display"]


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    size = draw(st.integers(min_value=1, max_value=6))
    columns = {
        name: pd.Series([draw(values) for _ in range(size)], dtype=object)
        for name, values in COLUMNS.items()
    }
    return pd.DataFrame(columns)


LITERALS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.sampled_from([0.5, 2.0, -1.5]),
    st.sampled_from(["", " ", "a", "9", "Linux", "."]),
).map(repr)
LEAVES = st.one_of(st.sampled_from(FIELDS), LITERALS)


def branches(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def call(name: str, count: int) -> st.SearchStrategy[str]:
        return st.lists(inner, min_size=count, max_size=count).map(
            lambda args: f"{name}({', '.join(args)})"
        )

    return st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(inner, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda x: f"(not {x})"),
        inner.map(lambda x: f"(-{x})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        *(call(name, 1) for name in ("upper", "lower", "strip", "title", "number")),
        call("strip", 2),
        call("replace", 3),
        call("startswith", 2),
        call("endswith", 2),
        st.tuples(inner, st.sampled_from(["'.'", "' '", "'a'"]), st.integers(-3, 3)).map(
            lambda t: f"split_part({t[0]}, {t[1]}, {t[2]})"
        ),
        st.integers(min_value=1, max_value=3).flatmap(lambda n: call("concat", n)),
        st.integers(min_value=1, max_value=3).flatmap(lambda n: call("coalesce", n)),
    )


EXPRESSIONS = st.recursive(LEAVES, branches, max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), source=EXPRESSIONS)
def test_columns_agree_with_the_per_row_reference(frame: pd.DataFrame, source: str) -> None:
    expected, actual = evaluate_rows(source, frame), evaluate_columns(source, frame)
    assert same(expected, actual), f"{source}: reference {expected}, columns {actual}"


@st.composite
def typed_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Columns as sources hand them over typed: pandas strings and floats with NaN for null."""
    size = draw(st.integers(min_value=1, max_value=6))
    return pd.DataFrame(
        {
            "s1": pd.Series([draw(COLUMNS["s1"]) for _ in range(size)], dtype="string"),
            "s2": pd.Series([draw(COLUMNS["s2"]) for _ in range(size)], dtype="str"),
            "n1": pd.Series([draw(st.one_of(st.none(), FLOATS)) for _ in range(size)], dtype=float),
            "n2": pd.Series([draw(st.one_of(st.none(), INTS)) for _ in range(size)], dtype="Int64"),
            "m": pd.Series([draw(ANY) for _ in range(size)], dtype=object),
            "rec": pd.Series([draw(NESTED) for _ in range(size)], dtype=object),
            "g.display": pd.Series(
                [draw(COLUMNS["g.display"]) for _ in range(size)], dtype="string"
            ),
        }
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=typed_frames(), source=EXPRESSIONS)
def test_typed_columns_agree_with_the_per_row_reference(frame: pd.DataFrame, source: str) -> None:
    expected, actual = evaluate_rows(source, frame), evaluate_columns(source, frame)
    assert same(expected, actual), f"{source}: reference {expected}, columns {actual}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), left=EXPRESSIONS, right=EXPRESSIONS)
def test_plus_is_null_exactly_where_either_side_is(
    frame: pd.DataFrame, left: str, right: str
) -> None:
    values = evaluate_columns(f"({left}) + ({right})", frame)
    lefts, rights = evaluate_columns(left, frame), evaluate_columns(right, frame)
    if values is Failed:
        return
    assert isinstance(values, list) and isinstance(lefts, list) and isinstance(rights, list)
    for value, one_side, other_side in zip(values, lefts, rights, strict=True):
        assert (value is None) == (one_side is None or other_side is None)


# --- the rule, example by example -----------------------------------------------------------


def one(source: str, **fields: Any) -> Any:
    frame = pd.DataFrame({name: pd.Series([value], dtype=object) for name, value in fields.items()})
    return normal(Expression(source).evaluate(frame).iloc[0])


@pytest.mark.parametrize(
    ("os", "version"), [("Linux", None), (None, "9"), (None, None), ("Linux", "9")]
)
def test_concatenation_with_null_is_null_on_either_side(os: Any, version: Any) -> None:
    expected = None if os is None or version is None else "Linux 9"
    assert one("strip(os + ' ' + os_version)", os=os, os_version=version) == expected
    assert one("os + ' ' + os_version", os=os, os_version=version) == (
        None if expected is None else "Linux 9"
    )


def test_scalars_follow_the_same_rule_as_columns() -> None:
    frame = pd.DataFrame({"x": pd.Series(["a"], dtype=object)})
    for source in ("None + 'a'", "'a' + None", "1 + None", "None * 2", "upper(None)", "None < 1"):
        assert normal(Expression(source).evaluate(frame).iloc[0]) is None, source


def test_empty_text_is_not_null() -> None:
    assert one("a + '!'", a="") == "!"
    assert one("a == ''", a="") is True
    assert one("upper(a)", a="") == ""
    assert one("a + '!'", a=None) is None


def test_comparisons_with_null_are_null_and_where_treats_null_as_false() -> None:
    frame = pd.DataFrame({"x": pd.Series(["a", None, "b"], dtype=object)})
    result = Expression("x != 'a'").evaluate(frame)
    assert [normal(value) for value in result] == [False, None, True]
    assert result.fillna(False).astype(bool).tolist() == [False, False, True]


def test_three_valued_logic() -> None:
    assert one("a == 'x' and False", a=None) is False
    assert one("a == 'x' or True", a=None) is True
    assert one("a == 'x' and True", a=None) is None
    assert one("not a == 'x'", a=None) is None
    assert one("'yes' if a == 'x' else 'no'", a=None) == "no"


def test_coalesce_is_the_way_to_defaults() -> None:
    assert one("coalesce(a, 'none')", a=None) == "none"
    assert one("coalesce(a, 'none')", a="") == "none"  # ServiceNow's "" for empty
    assert one("coalesce(a, b)", a=None, b=None) is None
    assert one("concat(a, '-', b)", a="x", b=None) == "x-"


def test_arithmetic() -> None:
    assert one("a / 0", a=4) is None
    assert one("a % 0", a=4) is None
    assert one("a + 1", a=None) is None
    assert one("number(a) * 2", a="21") == 42.0
    assert one("number(a)", a="n/a") is None
    assert one("a + 1", a="v") == "v1"
    with pytest.raises(ExpressionError, match="number"):
        one("a - 1", a="3")
    with pytest.raises(ExpressionError, match="compare text with a number"):
        one("a > 1", a="3")


def test_if_else_evaluates_each_branch_on_its_own_records() -> None:
    frame = pd.DataFrame({"a": pd.Series(["x", 4], dtype=object), "b": [False, True]})
    result = Expression("a - 1 if b else a").evaluate(frame)
    assert [normal(value) for value in result] == ["x", 3]


# --- dotted names ---------------------------------------------------------------------------


def test_a_flattened_column_of_exactly_that_name_wins() -> None:
    frame = pd.DataFrame(
        {
            "assignment_group": ["4f1c"],
            "assignment_group.display": ["Service Desk"],
        }
    )
    expression = Expression("upper(assignment_group.display)")
    assert expression.evaluate(frame).tolist() == ["SERVICE DESK"]
    assert expression.names == {"assignment_group"}
    assert expression.paths == {"assignment_group.display"}


def test_nested_records_are_walked_by_key_and_missing_levels_are_null() -> None:
    issues = [
        {"fields": {"status": {"name": "Done"}, "summary": "a"}},
        {"fields": {"status": None}},
        {"fields": {}},
        {"fields": None},
    ]
    frame = pd.DataFrame.from_records(issues)
    expression = Expression("lower(fields.status.name)")
    assert [normal(value) for value in expression.evaluate(frame)] == ["done", None, None, None]
    assert expression.names == {"fields"}


def test_dotted_names_the_source_lacks_are_reported() -> None:
    with pytest.raises(ExpressionError, match=r"uses fields\.status\.name"):
        Expression("fields.status.name").evaluate(pd.DataFrame({"other": [1]}))


@pytest.mark.parametrize(
    "source", ["a.b()", "upper(a).b", "'x'.upper", "a[0]", "a.b[0]", "(a + b).c", "f(a)"]
)
def test_only_plain_names_can_be_dotted_and_called(source: str) -> None:
    with pytest.raises(ExpressionError):
        Expression(source)


def test_wrong_argument_counts_are_refused_when_parsed() -> None:
    with pytest.raises(ExpressionError, match="upper takes 1 arguments"):
        Expression("upper(a, b)")
    with pytest.raises(ExpressionError, match="coalesce takes 1 to any"):
        Expression("coalesce()")
