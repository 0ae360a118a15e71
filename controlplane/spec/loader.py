"""Safe, bounded YAML loading that remembers where every field came from.

The text is composed with PyYAML's ``SafeLoader`` (never a full loader) into a
node graph, then converted into plain JSON-compatible data while recording the
line and column of every key and value by field path. The conversion is where
the limits live: the input size is checked before parsing, nesting depth is
checked while composing and converting, and the number of converted nodes is
bounded, so that an alias bomb ("billion laughs") is refused after at most
``MAX_NODES`` steps instead of expanding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fusebox.controlplane.spec.errors import Severity, Violation

MAX_SPEC_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000

Path = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_PLAIN_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null")}


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based; 0 = unknown
    column: int


UNKNOWN = Position(0, 0)


def render_path(path: Path) -> str:
    """``("spec", "targets", "apps", "x")`` -> ``spec.targets.apps.x``; indexes as ``[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(slots=True)
class LoadedDocument:
    """One document's plain data plus the position of every field."""

    text: str
    data: Any
    start: Position = UNKNOWN
    value_marks: dict[Path, Position] = field(default_factory=dict)
    key_marks: dict[Path, Position] = field(default_factory=dict)
    problems: list[tuple[Path, Position, str]] = field(default_factory=list)  # soft errors
    broken: bool = False  # a hard error: the data is not worth validating

    def position_of(self, path: Path, *, key: bool = False) -> Position:
        """The key's or value's position, else the nearest enclosing field's."""
        marks = self.key_marks if key else self.value_marks
        if path in marks:
            return marks[path]
        while path:
            path = path[:-1]
            if path in self.value_marks:
                return self.value_marks[path]
        return self.start


def located(
    source: str,
    document: LoadedDocument | None,
    path: Path,
    message: str,
    severity: Severity = Severity.ERROR,
    *,
    at_key: bool = False,
) -> Violation:
    """A violation at ``path`` of ``document`` (line 0 when there is no document)."""
    line = column = 0
    if document is not None:
        position = document.position_of(path, key=at_key)
        line, column = position.line, position.column
    return Violation(source, line, column, render_path(path), message, severity)


class _LimitExceeded(Exception):
    def __init__(self, message: str, position: Position) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def _position(mark: yaml.Mark | None) -> Position:
    return Position(mark.line + 1, mark.column + 1) if mark is not None else UNKNOWN


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting while composing (before recursion
    could exhaust the stack) and records each document's span in the text."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self.span = (0, 0)

    def compose_document(self) -> Node | None:
        start = self.get_event()  # type: ignore[no-untyped-call]
        node = self.compose_node(None, None)  # type: ignore[arg-type]
        end = self.get_event()  # type: ignore[no-untyped-call]
        self.anchors = {}
        self.span = (start.start_mark.index, end.end_mark.index)
        return node

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _LimitExceeded(f"nesting is deeper than {MAX_DEPTH} levels", _position(mark))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Converter:
    """Composed nodes -> plain data, with marks, duplicate-key checks and limits."""

    def __init__(self, loader: _BoundedLoader, document: LoadedDocument, budget: list[int]) -> None:
        self._loader = loader
        self._doc = document
        self._budget = budget  # [nodes left], shared by every document of one input

    def convert(self, node: Node, path: Path, depth: int) -> Any:
        self._budget[0] -= 1
        if self._budget[0] < 0:
            raise _LimitExceeded(
                f"the document expands to more than {MAX_NODES} values "
                "(aliases are expanded; an alias bomb is refused)",
                _position(node.start_mark),
            )
        if depth > MAX_DEPTH:
            raise _LimitExceeded(
                f"nesting is deeper than {MAX_DEPTH} levels (a recursive alias?)",
                _position(node.start_mark),
            )
        self._doc.value_marks[path] = _position(node.start_mark)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != f"{_TAG}seq":
                raise self._unsupported(node)
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != f"{_TAG}map":
                raise self._unsupported(node)
            return self._mapping(node, path, depth)
        raise self._unsupported(node)

    def _unsupported(self, node: Node) -> _LimitExceeded:
        tag = node.tag.replace(_TAG, "!!")
        return _LimitExceeded(
            f"YAML type {tag} is not supported; use strings, numbers, booleans, lists and mappings",
            _position(node.start_mark),
        )

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag == f"{_TAG}timestamp":
            return node.value  # JSON has no timestamps: keep the text as written
        if node.tag not in _PLAIN_SCALAR_TAGS:
            raise self._unsupported(node)
        try:
            value = self._loader.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            raise _LimitExceeded(
                f"cannot read scalar {node.value!r}: {exc}", _position(node.start_mark)
            ) from exc
        if isinstance(value, float) and not math.isfinite(value):
            raise _LimitExceeded(
                f"{node.value!r} is not a finite number", _position(node.start_mark)
            )
        return value

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merges: list[Node] = []
        explicit: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                merges.extend(
                    value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                )
            else:
                explicit.append((key_node, value_node))
        # YAML merge keys: earlier merged mappings win over later ones, and
        # the mapping's own keys win over all of them.
        for source in reversed(merges):
            if not isinstance(source, MappingNode):
                raise _LimitExceeded(
                    "a merge key (<<) must refer to a mapping or a list of mappings",
                    _position(source.start_mark),
                )
            merged = self.convert(source, path, depth)
            result.update(merged)
        seen: dict[str, Position] = {}
        for key_node, value_node in explicit:
            if not isinstance(key_node, ScalarNode):
                raise _LimitExceeded(
                    "mapping keys must be plain scalars", _position(key_node.start_mark)
                )
            key = str(key_node.value)
            key_position = _position(key_node.start_mark)
            if key in seen:
                first = seen[key]
                self._doc.problems.append(
                    (
                        (*path, key),
                        key_position,
                        f"duplicate key {key!r} (first defined on line {first.line}); "
                        "each key may appear once in a mapping",
                    )
                )
            seen[key] = key_position
            self._doc.key_marks[(*path, key)] = key_position
            result[key] = self.convert(value_node, (*path, key), depth + 1)
        self._doc.value_marks[path] = _position(node.start_mark)
        return result


def _error(source: str, position: Position, path: Path, message: str) -> Violation:
    return Violation(source, position.line, position.column, render_path(path), message)


def load_yaml_documents(text: str, source: str) -> tuple[list[LoadedDocument], list[Violation]]:
    """Every non-empty document of ``text``, and the violations met while loading.

    Loading stops at a YAML syntax error (later documents cannot be located),
    but documents before it are returned so they can be validated too.
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return [], [_error(source, UNKNOWN, (), "the input is not valid UTF-8 text")]
    if size > MAX_SPEC_BYTES:
        message = f"the input is {size} bytes; the limit is {MAX_SPEC_BYTES} bytes (1 MiB)"
        return [], [_error(source, UNKNOWN, (), message)]
    documents: list[LoadedDocument] = []
    violations: list[Violation] = []
    budget = [MAX_NODES]
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        for node in _compose_all(loader):
            start, end = loader.span
            document = LoadedDocument(text=text[start:end].strip() + "\n", data=None)
            document.start = _position(node.start_mark)
            if isinstance(node, ScalarNode) and node.tag == f"{_TAG}null" and node.value == "":
                continue  # an empty document (a stray "---"): nothing to validate
            try:
                document.data = _Converter(loader, document, budget).convert(node, (), 0)
            except _LimitExceeded as exc:
                document.broken = True
                violations.append(_error(source, exc.position, (), exc.message))
                if budget[0] < 0:
                    break  # the whole input is over budget
            documents.append(document)
    except _LimitExceeded as exc:
        violations.append(_error(source, exc.position, (), exc.message))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context = ""
        if exc.context and exc.problem:
            started = exc.context_mark
            at = f", which started on line {started.line + 1}" if started is not None else ""
            context = f" ({exc.context}{at})"
        message = f"YAML syntax error: {problem}{context}"
        violations.append(_error(source, _position(mark), (), message))
    except yaml.reader.ReaderError as exc:  # control characters in the text
        before = text[: exc.position]
        where = Position(before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        message = f"character U+{exc.character:04X} is not allowed in YAML ({exc.reason})"
        violations.append(_error(source, where, (), message))
    except yaml.YAMLError as exc:
        violations.append(_error(source, UNKNOWN, (), f"YAML error: {exc}"))
    finally:
        if loader is not None:
            loader.dispose()
    return documents, violations


def _compose_all(loader: _BoundedLoader) -> Iterator[Node]:
    while loader.check_node():
        node = loader.get_node()
        if node is not None:
            yield node


def load_mapping_document(document: Mapping[str, Any]) -> LoadedDocument:
    """Plain data from an API-supplied mapping (e.g. a protobuf ``Struct``), checked
    for the same limits and JSON types as YAML. Integral floats become ints,
    since a ``Struct`` carries every number as a double."""
    loaded = LoadedDocument(text="", data=None)
    budget = [MAX_NODES]
    try:
        loaded.data = _plain(document, (), 0, budget, loaded)
    except _LimitExceeded as exc:
        loaded.broken = True
        loaded.problems.append(((), UNKNOWN, exc.message))
    return loaded


def _plain(value: Any, path: Path, depth: int, budget: list[int], doc: LoadedDocument) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _LimitExceeded(f"the document holds more than {MAX_NODES} values", UNKNOWN)
    if depth > MAX_DEPTH:
        raise _LimitExceeded(f"nesting is deeper than {MAX_DEPTH} levels", UNKNOWN)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            doc.problems.append((path, UNKNOWN, f"{value!r} is not a finite number"))
            return None
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                doc.problems.append((path, UNKNOWN, f"mapping key {key!r} is not a string"))
                continue
            result[key] = _plain(item, (*path, key), depth + 1, budget, doc)
        return result
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_plain(item, (*path, i), depth + 1, budget, doc) for i, item in enumerate(value)]
    doc.problems.append(
        (path, UNKNOWN, f"a {type(value).__name__} is not JSON data (strings, numbers, "
         "booleans, null, lists and mappings)")
    )
    return None
