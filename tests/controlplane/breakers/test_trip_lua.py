"""The trip compiled to Lua (run by the real redis-server) agrees with the agent's
Python trip wherever every evaluated value stays within Lua's exact integer range."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusebox.agent.trip import (
    INT64_MAX,
    BoolLiteral,
    Identifier,
    IntLiteral,
    TripNode,
    Unary,
    compile_trip,
    parse_trip,
    trip_divide,
    trip_modulo,
)
from fusebox.controlplane.breakers.trip_lua import LUA_SAFE_INTEGER, compile_trip_to_lua
from tests.controlplane.breakers.breaker_cases import trip_expressions
from tests.support.redis_server import RedisServer

# Runs the compiled chunk once per row of counters; answers a JSON list of 0/1.
_EVALUATE = """
local trip = assert(loadstring(ARGV[1], 'trip'))()
local rows = cjson.decode(ARGV[2])
local answers = {}
for i, r in ipairs(rows) do
  answers[i] = trip(r[1], r[2], r[3], r[4], r[5]) and 1 or 0
end
return cjson.encode(answers)
"""


def lua_trips(server: RedisServer, source: str, rows: list[tuple[int, ...]]) -> list[bool]:
    reply = server.command("EVAL", _EVALUATE, "0", compile_trip_to_lua(source), json.dumps(rows))
    return [answer == 1 for answer in json.loads(reply)]


class _OutOfRange(Exception):
    pass


def _exact(node: TripNode, counters: dict[str, int]) -> int | bool | None:
    """Evaluates as the agent does; ``None`` on an evaluation error; raises
    ``_OutOfRange`` when an evaluated value leaves Lua's exact range."""
    def value(n: TripNode) -> int | bool:
        if isinstance(n, IntLiteral | BoolLiteral):
            result: int | bool = n.value
        elif isinstance(n, Identifier):
            result = counters[n.name]
        elif isinstance(n, Unary):
            result = (not value(n.operand)) if n.op == "!" else -int(value(n.operand))
        elif n.op == "&&":
            result = bool(value(n.left)) and bool(value(n.right))
        elif n.op == "||":
            result = bool(value(n.left)) or bool(value(n.right))
        else:
            left, right = value(n.left), value(n.right)
            operations = {
                "+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                "/": lambda: trip_divide(int(left), int(right)),
                "%": lambda: trip_modulo(int(left), int(right)),
                "==": lambda: left == right, "!=": lambda: left != right,
                "<": lambda: left < right, "<=": lambda: left <= right,
                ">": lambda: left > right, ">=": lambda: left >= right,
            }
            result = operations[n.op]()
        if not isinstance(result, bool) and abs(result) > LUA_SAFE_INTEGER:
            raise _OutOfRange
        return result

    try:
        return value(node)
    except _OutOfRange:
        raise
    except Exception:  # the agent's evaluation errors: division by zero
        return None


_COUNTER_ROWS = st.lists(st.tuples(*[st.integers(0, 50)] * 5), min_size=1, max_size=20)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(source=trip_expressions(max_leaves=8, max_literal=1000), rows=_COUNTER_ROWS)
def test_lua_trip_agrees_with_the_agent_trip(
    redis_server_for_properties: RedisServer, source: str, rows: list[tuple[int, ...]]
) -> None:
    node = parse_trip(source)
    names = ("requests", "totalSuccesses", "totalFailures", "consecutiveSuccesses",
             "consecutiveFailures")
    in_range = []
    for row in rows:
        try:
            _exact(node, dict(zip(names, row, strict=True)))
        except _OutOfRange:
            continue
        in_range.append(row)
    if not in_range:
        return
    python = compile_trip(source)
    assert lua_trips(redis_server_for_properties, source, in_range) == [
        python(*row) for row in in_range
    ], source


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("-7 / 2 == -3 && 7 / -2 == -3 && -7 % 2 == -1 && 7 % -2 == 1", True),
        ("requests / 0 > 1 || true", False),  # an error anywhere evaluated: false
        ("false && requests / 0 > 1", False),
        ("true || requests % 0 > 1", True),  # short-circuit: never evaluated
        ("requests * 0 == 0 && !(requests < 0) && -(-5) == 5", True),
        ("consecutiveFailures >= 5", True),
        (f"requests < {LUA_SAFE_INTEGER}", True),
        (f"requests < {LUA_SAFE_INTEGER + 1}", False),  # documented: beyond Lua's exact range
        (f"{INT64_MAX} > 0", False),
        ("9007199254740991 + 1 > 0", False),
    ],
)
def test_lua_trip_corner_cases(redis_server_for_properties: RedisServer, source: str,
                               expected: bool) -> None:
    assert lua_trips(redis_server_for_properties, source, [(3, 1, 5, 0, 5)]) == [expected]


def test_deepest_accepted_expression_compiles_in_lua(redis_server_for_properties: RedisServer
                                                     ) -> None:
    source = "(" * 62 + "requests" + " + 1)" * 62 + " > 0"
    assert lua_trips(redis_server_for_properties, source, [(0, 0, 0, 0, 0)]) == [True]
    negated = "!" * 60 + "true"
    assert lua_trips(redis_server_for_properties, negated, [(0, 0, 0, 0, 0)]) == [True]


def test_the_lua_text_never_contains_the_users_text() -> None:
    chunk = compile_trip_to_lua("consecutiveFailures >= 5 || requests == 1")
    assert "consecutiveFailures" not in chunk and "requests" not in chunk
