"""Trip expressions: parsing, type checking, CEL integer semantics, and
properties against a reference interpreter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusebox.agent.trip import (
    INT64_MAX,
    INT64_MIN,
    TRIP_IDENTIFIERS,
    Binary,
    BoolLiteral,
    Identifier,
    IntLiteral,
    TripError,
    TripNode,
    Unary,
    compile_node,
    compile_trip,
    parse_trip,
)

Counts = tuple[int, int, int, int, int]


def counts(
    requests: int = 0,
    total_successes: int = 0,
    total_failures: int = 0,
    consecutive_successes: int = 0,
    consecutive_failures: int = 0,
) -> Counts:
    return (requests, total_successes, total_failures, consecutive_successes, consecutive_failures)


def test_dapr_default_trip_fires_after_the_sixth_consecutive_failure() -> None:
    trip = compile_trip("consecutiveFailures > 5")
    assert not trip(*counts(consecutive_failures=5))
    assert trip(*counts(consecutive_failures=6))


def test_quickstart_trip_uses_greater_or_equal() -> None:
    trip = compile_trip("consecutiveFailures >= 5")
    assert [trip(*counts(consecutive_failures=n)) for n in (4, 5)] == [False, True]


def test_failure_ratio_expression() -> None:
    trip = compile_trip("requests >= 10 && totalFailures * 100 / requests >= 50")
    assert trip(*counts(requests=10, total_failures=5))
    assert not trip(*counts(requests=10, total_failures=4))
    assert not trip(*counts(requests=9, total_failures=9))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3 == 7", True),
        ("(1 + 2) * 3 == 9", True),
        ("-7 / 2 == -3", True),  # truncates toward zero, not floor
        ("7 / -2 == -3", True),
        ("-7 % 2 == -1", True),  # sign of the dividend
        ("7 % -2 == 1", True),
        ("10 - 2 - 3 == 5", True),  # left associative
        ("!false", True),
        ("!!true", True),
        ("--5 == 5", True),
        ("true == (1 < 2)", True),
        ("false || true && false", False),  # && binds tighter
        ("1 != 1 || 2 > 1", True),
        ("requests / 0 > 1", False),  # division by zero: the trip is false
        ("requests % 0 == 0", False),
        ("requests / 0 > 1 || true", False),  # the whole trip, not just the operand
        ("true || requests / 0 > 1", True),  # short-circuit: the division never runs
        ("false && requests / 0 > 1", False),
        (f"{INT64_MAX} + 1 > 0", False),  # 64-bit overflow
        (f"-{INT64_MAX} - 1 < 0", True),  # exactly INT64_MIN is fine
        (f"-{INT64_MAX} - 2 < 0", False),
    ],
)
def test_evaluation_follows_cel_integer_semantics(source: str, expected: bool) -> None:
    assert compile_trip(source)(*counts(requests=3)) is expected


def test_arguments_are_positional_in_identifier_order() -> None:
    for index, name in enumerate(TRIP_IDENTIFIERS):
        values = [0] * 5
        values[index] = 7
        assert compile_trip(f"{name} == 7")(*values)


@pytest.mark.parametrize(
    ("source", "position", "fragment"),
    [
        ("consecutiveFailure > 5", 0, "did you mean 'consecutiveFailures'"),
        ("consecutivefailures > 5", 0, "did you mean 'consecutiveFailures'"),
        ("failures > 5", 0, "unknown identifier 'failures'"),
        ("consecutiveFailures + 1", 20, "must be boolean"),
        ("requests", 0, "must be boolean"),
        ("1 == true", 2, "cannot compare int with bool"),
        ("true < 1", 0, "the left operand of '<' must be int"),
        ("!requests", 1, "the operand of '!' must be bool"),
        ("-true", 1, "the operand of unary '-' must be int"),
        ("requests > 1 && 5", 16, "the right operand of '&&' must be bool"),
        ("requests > ", 11, "found the end of the expression"),
        ("(requests > 1", 13, "expected ')'"),
        ("requests > 1)", 12, "after a complete expression"),
        ("requests = 1", 9, "did you mean '=='"),
        ("requests > 1 & true", 13, "did you mean '&&'"),
        ("requests > 1.5", 11, "only decimal integer literals"),
        ("requests > 5u", 11, "only decimal integer literals"),
        ("size(requests) > 1", 0, "function calls are not supported"),
        ("requests > 1 ? true : false", 13, "unexpected character '?'"),
        ("", 0, "empty"),
        ("requests > 99999999999999999999", 11, "out of range"),
        ("(" * 70 + "true" + ")" * 70, 64, "parentheses nest deeper"),
        ("1" + " + 1" * 70 + " > 0", None, "nests deeper"),
    ],
)
def test_invalid_expression_is_explained_with_its_position(
    source: str, position: int | None, fragment: str
) -> None:
    with pytest.raises(TripError) as caught:
        parse_trip(source)
    assert fragment in caught.value.message
    if position is not None:
        assert caught.value.position == position
    assert isinstance(caught.value, ValueError)


def test_parse_returns_a_typed_ast() -> None:
    assert parse_trip("!(requests >= -2)") == Unary(
        "!", Binary(">=", Identifier("requests", 2), Unary("-", IntLiteral(2, 15), 14), 11), 0
    )


# ---- properties --------------------------------------------------------------


class _Error(Exception):
    pass


def reference(node: TripNode, env: dict[str, int]) -> int | bool:
    """A direct, slow CEL interpreter over the AST."""
    if isinstance(node, IntLiteral | BoolLiteral):
        return node.value
    if isinstance(node, Identifier):
        return env[node.name]
    if isinstance(node, Unary):
        value = reference(node.operand, env)
        return (not value) if node.op == "!" else _range(-int(value))
    left = reference(node.left, env)
    if node.op == "&&":  # short-circuit, left to right
        return bool(left) and bool(reference(node.right, env))
    if node.op == "||":
        return bool(left) or bool(reference(node.right, env))
    right = reference(node.right, env)
    a, b = int(left), int(right)
    if node.op in ("+", "-", "*"):
        return _range({"+": a + b, "-": a - b, "*": a * b}[node.op])
    if node.op in ("/", "%"):
        if b == 0:
            raise _Error
        quotient = int(a / b) if abs(a) < 2**52 and abs(b) < 2**52 else _slow_div(a, b)
        return _range(quotient) if node.op == "/" else a - b * quotient
    return {
        "==": left == right,
        "!=": left != right,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[node.op]


def _slow_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _range(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Error
    return value


def evaluate_reference(node: TripNode, values: Counts) -> bool:
    try:
        return bool(reference(node, dict(zip(TRIP_IDENTIFIERS, values, strict=True))))
    except _Error:
        return False


small_ints = st.integers(min_value=0, max_value=2**40)
int_leaves: st.SearchStrategy[TripNode] = st.one_of(
    st.builds(IntLiteral, st.one_of(st.integers(0, 20), st.integers(0, INT64_MAX))),
    st.builds(Identifier, st.sampled_from(TRIP_IDENTIFIERS)),
)


def _int_expressions(children: st.SearchStrategy[TripNode]) -> st.SearchStrategy[TripNode]:
    return st.one_of(
        st.builds(Unary, st.just("-"), children),
        st.builds(Binary, st.sampled_from(["+", "-", "*", "/", "%"]), children, children),
    )


int_expressions = st.recursive(int_leaves, _int_expressions, max_leaves=8)


def _bool_expressions(children: st.SearchStrategy[TripNode]) -> st.SearchStrategy[TripNode]:
    return st.one_of(
        st.builds(Unary, st.just("!"), children),
        st.builds(Binary, st.sampled_from(["&&", "||", "==", "!="]), children, children),
    )


bool_leaves = st.one_of(
    st.builds(BoolLiteral, st.booleans()),
    st.builds(
        Binary,
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        int_expressions,
        int_expressions,
    ),
)
bool_expressions = st.recursive(bool_leaves, _bool_expressions, max_leaves=6)


def render(node: TripNode) -> str:
    """Source text for an AST, fully parenthesised."""
    if isinstance(node, IntLiteral):
        return str(node.value)
    if isinstance(node, BoolLiteral):
        return "true" if node.value else "false"
    if isinstance(node, Identifier):
        return node.name
    if isinstance(node, Unary):
        return f"{node.op}({render(node.operand)})"
    return f"({render(node.left)} {node.op} {render(node.right)})"


@settings(max_examples=200, deadline=None)
@given(bool_expressions, st.tuples(small_ints, small_ints, small_ints, small_ints, small_ints))
def test_compiled_trip_agrees_with_the_reference_interpreter(
    node: TripNode, values: Counts
) -> None:
    source = render(node)
    parsed = parse_trip(source)
    assert compile_trip(source)(*values) is evaluate_reference(parsed, values)
    assert compile_node(node)(*values) is evaluate_reference(node, values)


trip_alphabet = st.sampled_from(
    [*TRIP_IDENTIFIERS, "true", "false", "0", "7", "99999999999999999999", "(", ")", " ",
     "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "!", "&", "=",
     "x", "1.5", "?", "é"]
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(trip_alphabet, max_size=30).map("".join)))
def test_random_input_raises_nothing_but_trip_error(source: str) -> None:
    try:
        function = compile_trip(source)
    except TripError as error:
        assert 0 <= error.position <= len(source)
        return
    assert function(1, 2, 3, 4, 5) in (True, False)
