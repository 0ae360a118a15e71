"""Trip expressions compiled to Lua, for the Redis breaker scripts.

``compile_trip_to_lua(source)`` turns a trip expression (validated by
``fusebox.agent.trip.parse_trip``) into a Lua chunk that, loaded with ``loadstring``
and called, returns ``function(requests, totalSuccesses, totalFailures,
consecutiveSuccesses, consecutiveFailures) -> boolean`` with the semantics of
``fusebox.agent.trip.compile_trip``: CEL integers, ``/`` truncating toward zero,
``%`` with the dividend's sign, short-circuit ``&&``/``||``, and an evaluation
error (division or modulo by zero, out of range) making the whole trip false.

Lua 5.1 numbers are doubles, exact only up to 2**53 - 1. Every literal,
intermediate and result is checked against that bound and treated as an
out-of-range error beyond it, where Python's bound is 2**63 - 1. So the two
agree on every evaluation whose values stay within +/-(2**53 - 1) and the
Lua trip is false where they would not (no real counter gets near).

Safety: the Lua text is built only from the validated AST: fixed operator
tables, ``int`` values and parameter names, never from the user's text.
"""

from __future__ import annotations

import functools

from fusebox.agent.trip import (
    TRIP_IDENTIFIERS,
    Binary,
    BoolLiteral,
    Identifier,
    IntLiteral,
    TripNode,
    Unary,
    parse_trip,
)

__all__ = ["LUA_SAFE_INTEGER", "compile_node_to_lua", "compile_trip_to_lua"]

#: The largest integer a Lua 5.1 number holds exactly with all its neighbours.
LUA_SAFE_INTEGER = 2**53 - 1

_PARAMETERS = tuple(f"v{i}" for i in range(1, len(TRIP_IDENTIFIERS) + 1))
_PARAMETER_OF = dict(zip(TRIP_IDENTIFIERS, _PARAMETERS, strict=True))
_LUA_COMPARISON = {"==": "==", "!=": "~=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

_PRELUDE = f"""\
local LIMIT = {LUA_SAFE_INTEGER}
local fmod = math.fmod
local function range_error() error('trip: out of range', 0) end
local function chk(x)
  if x > LIMIT or x < -LIMIT then range_error() end
  return x
end
local function div(a, b)
  if b == 0 then error('trip: division by zero', 0) end
  local r = fmod(a, b)
  return chk((a - r) / b)
end
local function mod(a, b)
  if b == 0 then error('trip: modulo by zero', 0) end
  return fmod(a, b)
end
"""


def _lua(node: TripNode) -> str:
    if isinstance(node, IntLiteral):
        value = int(node.value)
        return str(value) if value <= LUA_SAFE_INTEGER else "range_error()"
    if isinstance(node, BoolLiteral):
        return "true" if node.value else "false"
    if isinstance(node, Identifier):
        return _PARAMETER_OF[node.name]
    if isinstance(node, Unary):
        operand = _lua(node.operand)
        # "-(" never "--": two minus signs would start a Lua comment.
        return f"(not {operand})" if node.op == "!" else f"chk(-({operand}))"
    if not isinstance(node, Binary):  # pragma: no cover - the AST has no other node
        raise TypeError(f"not a trip AST node: {node!r}")
    left, right = _lua(node.left), _lua(node.right)
    if node.op == "/":
        return f"div({left}, {right})"
    if node.op == "%":
        return f"mod({left}, {right})"
    if node.op in ("+", "-", "*"):
        return f"chk({left} {node.op} {right})"
    if node.op == "&&":
        return f"({left} and {right})"
    if node.op == "||":
        return f"({left} or {right})"
    return f"({left} {_LUA_COMPARISON[node.op]} {right})"


def compile_node_to_lua(node: TripNode) -> str:
    """The Lua chunk for a validated, boolean AST (from ``parse_trip``)."""
    return (
        _PRELUDE
        + f"return function({', '.join(_PARAMETERS)})\n"
        + f"  local ok, tripped = pcall(function() return {_lua(node)} end)\n"
        + "  return ok and tripped == true\n"
        + "end\n"
    )


@functools.lru_cache(maxsize=256)
def compile_trip_to_lua(source: str) -> str:
    """Compile a trip expression to a Lua chunk returning the trip function.

    Raises ``fusebox.agent.trip.TripError`` for an invalid expression.

    >>> chunk = compile_trip_to_lua("consecutiveFailures >= 5")
    >>> # in a Redis script: local trip = loadstring(chunk)(); trip(r, ts, tf, cs, cf)
    """
    return compile_node_to_lua(parse_trip(source))
