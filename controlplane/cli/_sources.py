"""Turning ``-f FILE|DIR|-`` arguments into the texts to validate or apply.

A directory contributes every ``*.yaml`` / ``*.yml`` file in it (not
recursive), sorted by name. Dapr keeps resiliency specs next to component
files in one resources directory, so files from a directory that hold no
``kind: Resiliency`` document are skipped with a note. Files named explicitly
are always used as they are: if they are wrong, the parser says why.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from fusebox.controlplane.cli._errors import CommandFailed

STDIN_NAME = "<stdin>"
_YAML_SUFFIXES = (".yaml", ".yml")
_RESILIENCY_KIND = "Resiliency"


@dataclass(frozen=True, slots=True)
class Source:
    """One input: ``name`` is what error locations and ``source_name`` show."""

    name: str
    text: str


def read_sources(
    arguments: Sequence[str],
    note: Callable[[str], None],
    read_stdin: Callable[[], str] = lambda: sys.stdin.read(),
) -> list[Source]:
    """Expand the ``-f`` arguments in order; raises ``CommandFailed`` for unreadable paths."""
    sources: list[Source] = []
    for argument in arguments:
        if argument == "-":
            sources.append(Source(STDIN_NAME, read_stdin()))
            continue
        path = Path(argument)
        if path.is_dir():
            sources.extend(_read_directory(path, note))
        else:
            sources.append(Source(argument, _read_file(path)))
    return sources


def _read_directory(directory: Path, note: Callable[[str], None]) -> list[Source]:
    files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _YAML_SUFFIXES
    )
    found: list[Source] = []
    for file in files:
        text = _read_file(file)
        kinds = _document_kinds(text)
        if kinds is not None and _RESILIENCY_KIND not in kinds:
            shown = ", ".join(sorted({k or "no kind" for k in kinds})) or "empty file"
            note(f"skipping {file}: not a Resiliency document ({shown})")
            continue
        found.append(Source(str(file), text))
    if not found:
        raise CommandFailed(f"no Resiliency documents (*.yaml, *.yml) found in {directory}")
    return found


def _document_kinds(text: str) -> list[str] | None:
    """The ``kind`` of every document, or None if the text is not YAML we can read.

    Unreadable files are kept, so the spec parser reports the syntax error with
    its location instead of the file silently disappearing.
    """
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return None
    return [str(d.get("kind", "")) if isinstance(d, dict) else "" for d in documents]


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandFailed(f"{path}: no such file or directory") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CommandFailed(f"{path}: cannot read: {err}") from None
