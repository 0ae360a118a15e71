"""Circuit breaker trip expressions: a small, safe subset of CEL.

Dapr writes a breaker's trip condition in CEL over five counters, for example
``consecutiveFailures >= 5``. The agent evaluates it on its hot path (on every
failure while the breaker is closed), so this module is pure Python with no
dependency: it parses the expression into a typed AST and compiles that AST
into a closure.

Accepted grammar (CEL's precedence, lowest first)::

    expr     = and ("||" and)*
    and      = relation ("&&" relation)*
    relation = addition (("==" | "!=" | "<" | "<=" | ">" | ">=") addition)*
    addition = multiply (("+" | "-") multiply)*
    multiply = unary (("*" | "/" | "%") unary)*
    unary    = "!"+ primary | "-"+ primary | primary
    primary  = INT | "true" | "false" | IDENTIFIER | "(" expr ")"

Identifiers are the counters in ``TRIP_IDENTIFIERS``. Values are CEL ``int``
(64-bit) and ``bool``; the whole expression must be ``bool``. Integer division
and modulo truncate toward zero, as in CEL and Go. ``&&`` and ``||`` evaluate
left to right and short-circuit. An evaluation error in an operand that is
evaluated — a division or modulo by zero, or a result outside the 64-bit
range — makes the whole trip evaluate to ``False`` (Dapr treats any CEL
evaluation error the same way: the breaker does not trip). This differs from
CEL only in corner cases such as ``requests / 0 > 1 || true``, which CEL
evaluates to true and Fusebox to false.

Example::

    >>> trip = compile_trip("consecutiveFailures >= 5 || totalFailures * 2 > requests")
    >>> trip(10, 0, 0, 0, 5)
    True
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

TRIP_IDENTIFIERS = (
    "requests",
    "totalSuccesses",
    "totalFailures",
    "consecutiveSuccesses",
    "consecutiveFailures",
)

MAX_TRIP_LENGTH = 4096  # characters of source
MAX_TRIP_DEPTH = 64  # nesting of the AST and of parentheses
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

TripType = Literal["int", "bool"]
TripFunction = Callable[[int, int, int, int, int], bool]

_ACCEPTED = (
    "integer literals, true, false, the identifiers "
    + ", ".join(TRIP_IDENTIFIERS)
    + ", the operators + - * / % == != < <= > >= && || ! and parentheses"
)


class TripError(ValueError):
    """A trip expression that does not parse or does not type-check.

    ``position`` is the 0-based offset in the source where the problem is.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return f"{self.message} (at position {self.position})"


# ---- AST -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntLiteral:
    value: int
    position: int = 0

    @property
    def type(self) -> TripType:
        return "int"


@dataclass(frozen=True, slots=True)
class BoolLiteral:
    value: bool
    position: int = 0

    @property
    def type(self) -> TripType:
        return "bool"


@dataclass(frozen=True, slots=True)
class Identifier:
    name: str  # one of TRIP_IDENTIFIERS
    position: int = 0

    @property
    def type(self) -> TripType:
        return "int"


@dataclass(frozen=True, slots=True)
class Unary:
    op: Literal["!", "-"]
    operand: TripNode
    position: int = 0

    @property
    def type(self) -> TripType:
        return "bool" if self.op == "!" else "int"


ArithmeticOp = Literal["+", "-", "*", "/", "%"]
ComparisonOp = Literal["==", "!=", "<", "<=", ">", ">="]
LogicalOp = Literal["&&", "||"]
BinaryOp = ArithmeticOp | ComparisonOp | LogicalOp

ARITHMETIC_OPS: tuple[str, ...] = ("+", "-", "*", "/", "%")
COMPARISON_OPS: tuple[str, ...] = ("==", "!=", "<", "<=", ">", ">=")
LOGICAL_OPS: tuple[str, ...] = ("&&", "||")


@dataclass(frozen=True, slots=True)
class Binary:
    op: BinaryOp
    left: TripNode
    right: TripNode
    position: int = 0

    @property
    def type(self) -> TripType:
        return "int" if self.op in ARITHMETIC_OPS else "bool"


TripNode = IntLiteral | BoolLiteral | Identifier | Unary | Binary


# ---- tokens ----------------------------------------------------------------

_TWO_CHAR_OPS = ("&&", "||", "==", "!=", "<=", ">=")
_ONE_CHAR_OPS = "<>!+-*/%()"
_LONE_CHAR_HINTS = {"&": "&&", "|": "||", "=": "=="}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["int", "ident", "op", "end"]
    text: str
    position: int


def _describe(token: _Token) -> str:
    return "the end of the expression" if token.kind == "end" else f"{token.text!r}"


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in " \t\r\n":
            i += 1
        elif ch.isascii() and ch.isdigit():
            start = i
            while i < n and source[i].isascii() and source[i].isdigit():
                i += 1
            if i < n and (source[i].isalpha() or source[i] in "._"):
                raise TripError(
                    f"invalid number {source[start : i + 1]!r}: only decimal integer literals "
                    "are accepted (no floats, hex or unsigned suffixes)",
                    start,
                )
            tokens.append(_Token("int", source[start:i], start))
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            start = i
            while i < n and source[i].isascii() and (source[i].isalnum() or source[i] == "_"):
                i += 1
            tokens.append(_Token("ident", source[start:i], start))
        elif source[i : i + 2] in _TWO_CHAR_OPS:
            tokens.append(_Token("op", source[i : i + 2], i))
            i += 2
        elif ch in _ONE_CHAR_OPS:
            tokens.append(_Token("op", ch, i))
            i += 1
        elif ch in _LONE_CHAR_HINTS:
            raise TripError(f"found {ch!r}; did you mean {_LONE_CHAR_HINTS[ch]!r}?", i)
        else:
            raise TripError(f"unexpected character {ch!r}; accepted: {_ACCEPTED}", i)
    tokens.append(_Token("end", "", n))
    return tokens


# ---- parser ----------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self._tokens = _tokenize(source)
        self._index = 0
        self._parens = 0
        self._depths: dict[int, int] = {}  # id(node) -> AST depth, to bound nesting

    def _nest(self, node: TripNode, children: tuple[TripNode, ...]) -> TripNode:
        depth = 1 + max((self._depths.get(id(c), 1) for c in children), default=0)
        if depth > MAX_TRIP_DEPTH:
            raise TripError(f"expression nests deeper than {MAX_TRIP_DEPTH} levels", node.position)
        self._depths[id(node)] = depth
        return node

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def parse(self) -> TripNode:
        node = self._or()
        token = self._peek()
        if token.kind != "end":
            raise TripError(
                f"unexpected {_describe(token)} after a complete expression; "
                "expected an operator (&& || == != < <= > >= + - * / %)",
                token.position,
            )
        return node

    def _binary(self, op: str, left: TripNode, right: TripNode, position: int) -> TripNode:
        if op in ARITHMETIC_OPS:
            _require(left, "int", f"the left operand of {op!r}")
            _require(right, "int", f"the right operand of {op!r}")
        elif op in LOGICAL_OPS:
            _require(left, "bool", f"the left operand of {op!r}")
            _require(right, "bool", f"the right operand of {op!r}")
        elif op in ("==", "!="):
            if left.type != right.type:
                raise TripError(
                    f"cannot compare {left.type} with {right.type} using {op!r}", position
                )
        else:
            _require(left, "int", f"the left operand of {op!r}")
            _require(right, "int", f"the right operand of {op!r}")
        return self._nest(Binary(op, left, right, position), (left, right))  # type: ignore[arg-type]

    def _left_assoc(self, ops: tuple[str, ...], operand: Callable[[], TripNode]) -> TripNode:
        node = operand()
        while self._peek().kind == "op" and self._peek().text in ops:
            token = self._next()
            node = self._binary(token.text, node, operand(), token.position)
        return node

    def _or(self) -> TripNode:
        return self._left_assoc(("||",), self._and)

    def _and(self) -> TripNode:
        return self._left_assoc(("&&",), self._relation)

    def _relation(self) -> TripNode:
        return self._left_assoc(COMPARISON_OPS, self._addition)

    def _addition(self) -> TripNode:
        return self._left_assoc(("+", "-"), self._multiply)

    def _multiply(self) -> TripNode:
        return self._left_assoc(("*", "/", "%"), self._unary)

    def _unary(self) -> TripNode:
        token = self._peek()
        if token.kind == "op" and token.text in ("!", "-"):
            ops: list[_Token] = []
            while self._peek().kind == "op" and self._peek().text == token.text:
                ops.append(self._next())
            node = self._primary()
            for op_token in reversed(ops):
                if op_token.text == "!":
                    _require(node, "bool", "the operand of '!'")
                    node = self._nest(Unary("!", node, op_token.position), (node,))
                else:
                    _require(node, "int", "the operand of unary '-'")
                    node = self._nest(Unary("-", node, op_token.position), (node,))
            return node
        return self._primary()

    def _primary(self) -> TripNode:
        token = self._next()
        if token.kind == "int":
            value = int(token.text)
            if value > INT64_MAX:
                raise TripError(
                    f"integer {token.text} is out of range (at most {INT64_MAX})", token.position
                )
            return IntLiteral(value, token.position)
        if token.kind == "ident":
            return self._identifier(token)
        if token.kind == "op" and token.text == "(":
            self._parens += 1
            if self._parens > MAX_TRIP_DEPTH:
                raise TripError(
                    f"parentheses nest deeper than {MAX_TRIP_DEPTH} levels", token.position
                )
            node = self._or()
            closing = self._next()
            if closing.kind != "op" or closing.text != ")":
                raise TripError(
                    f"expected ')' to close the '(' at position {token.position}, "
                    f"found {_describe(closing)}",
                    closing.position,
                )
            self._parens -= 1
            return node
        raise TripError(
            f"expected a number, true, false, an identifier or '(', found {_describe(token)}",
            token.position,
        )

    def _identifier(self, token: _Token) -> TripNode:
        if token.text in ("true", "false"):
            return BoolLiteral(token.text == "true", token.position)
        if token.text in TRIP_IDENTIFIERS:
            following = self._peek()
            if following.kind == "op" and following.text == "(":
                raise TripError(f"{token.text!r} is a counter, not a function", token.position)
            return Identifier(token.text, token.position)
        following = self._peek()
        if following.kind == "op" and following.text == "(":
            raise TripError(
                f"function calls are not supported (found {token.text!r}(...)); "
                f"accepted: {_ACCEPTED}",
                token.position,
            )
        raise TripError(
            f"unknown identifier {token.text!r}{did_you_mean(token.text, TRIP_IDENTIFIERS)}; "
            f"accepted identifiers: {', '.join(TRIP_IDENTIFIERS)}",
            token.position,
        )


def did_you_mean(word: str, candidates: tuple[str, ...] | list[str]) -> str:
    """``'; did you mean "x"?'``-style suffix, or "" when nothing is close."""
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _require(node: TripNode, expected: TripType, what: str) -> None:
    if node.type != expected:
        raise TripError(f"{what} must be {expected}, found {node.type}", node.position)


def parse_trip(source: str) -> TripNode:
    """Parse and type-check a trip expression; raise ``TripError`` if it is invalid.

    The returned AST is boolean-typed and only uses ``TRIP_IDENTIFIERS``.
    """
    if not isinstance(source, str):
        raise TripError(f"a trip expression must be a string, found {type(source).__name__}", 0)
    if len(source) > MAX_TRIP_LENGTH:
        raise TripError(f"expression is longer than {MAX_TRIP_LENGTH} characters", 0)
    if not source.strip():
        raise TripError(f"the expression is empty; accepted: {_ACCEPTED}", 0)
    node = _Parser(source).parse()
    if node.type != "bool":
        raise TripError(
            f"a trip expression must be boolean (true or false), found {node.type}; "
            "compare it, e.g. 'consecutiveFailures > 5'",
            node.position,
        )
    return node


# ---- compilation -----------------------------------------------------------


class _EvaluationError(Exception):
    """Division by zero or a 64-bit overflow: the trip evaluates to False."""


def _checked(value: int) -> int:
    if value < INT64_MIN or value > INT64_MAX:
        raise _EvaluationError
    return value


def trip_divide(left: int, right: int) -> int:
    """CEL integer division: truncates toward zero; by zero is an error."""
    if right == 0:
        raise _EvaluationError
    quotient = abs(left) // abs(right)
    return _checked(-quotient if (left < 0) != (right < 0) else quotient)


def trip_modulo(left: int, right: int) -> int:
    """CEL remainder: has the sign of the dividend; by zero is an error."""
    if right == 0:
        raise _EvaluationError
    remainder = abs(left) % abs(right)
    return -remainder if left < 0 else remainder


_PARAMS = tuple(f"_v{i}" for i in range(len(TRIP_IDENTIFIERS)))
_PARAM_OF = dict(zip(TRIP_IDENTIFIERS, _PARAMS, strict=True))
_PYTHON_COMPARISON = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _python(node: TripNode) -> str:
    """Python source for a validated node. Every piece comes from a fixed table
    or from ``int``/``bool`` values, never from the user's text."""
    if isinstance(node, IntLiteral):
        return str(int(node.value))
    if isinstance(node, BoolLiteral):
        return "True" if node.value else "False"
    if isinstance(node, Identifier):
        return _PARAM_OF[node.name]
    if isinstance(node, Unary):
        operand = _python(node.operand)
        return f"(not {operand})" if node.op == "!" else f"_checked(-{operand})"
    left, right = _python(node.left), _python(node.right)
    if node.op == "/":
        return f"_divide({left}, {right})"
    if node.op == "%":
        return f"_modulo({left}, {right})"
    if node.op in ("+", "-", "*"):
        return f"_checked({left} {node.op} {right})"
    if node.op == "&&":
        return f"({left} and {right})"
    if node.op == "||":
        return f"({left} or {right})"
    return f"({left} {_PYTHON_COMPARISON[node.op]} {right})"


def compile_node(node: TripNode) -> TripFunction:
    """Compile a validated AST (from ``parse_trip``) into a fast closure."""
    body = _python(node)
    source = (
        f"def trip({', '.join(_PARAMS)}):\n"
        f"    try:\n"
        f"        return {body}\n"
        f"    except _EvaluationError:\n"
        f"        return False\n"
    )
    namespace: dict[str, object] = {
        "__builtins__": {},
        "_checked": _checked,
        "_divide": trip_divide,
        "_modulo": trip_modulo,
        "_EvaluationError": _EvaluationError,
    }
    exec(compile(source, "<trip>", "exec"), namespace)
    function: TripFunction = namespace["trip"]  # type: ignore[assignment]
    return function


@functools.lru_cache(maxsize=256)
def compile_trip(source: str) -> TripFunction:
    """Compile a trip expression into ``f(requests, totalSuccesses, totalFailures,
    consecutiveSuccesses, consecutiveFailures) -> bool``.

    Raises ``TripError`` for an invalid expression. Results are cached: every
    breaker using the same expression shares one function.
    """
    return compile_node(parse_trip(source))


__all__ = [
    "MAX_TRIP_DEPTH",
    "MAX_TRIP_LENGTH",
    "TRIP_IDENTIFIERS",
    "Binary",
    "BoolLiteral",
    "Identifier",
    "IntLiteral",
    "TripError",
    "TripFunction",
    "TripNode",
    "TripType",
    "Unary",
    "compile_node",
    "compile_trip",
    "did_you_mean",
    "parse_trip",
    "trip_divide",
    "trip_modulo",
]
