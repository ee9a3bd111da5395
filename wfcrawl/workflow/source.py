"""Read a workflow document and remember where every value came from.

YAML and JSON documents are turned into plain Python data plus a table of
source positions keyed by path tuples (``("phases", "detail", "nodes", 0)``),
so that validation errors can name ``file:line:col``. Keys have their own
positions (an unknown key is reported where the key is, not where its value
is). Duplicate mapping keys are an error: PyYAML would silently keep the last.

Loading is bounded whatever the input (:mod:`wfcrawl.workflow.limits`): size,
characters, nesting, values (aliases expanded), strings and numbers; a document
past a bound is a located problem, never a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wfcrawl.exceptions import Problem, WorkflowError
from wfcrawl.workflow.limits import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_INTEGER_DIGITS,
    MAX_NODES,
    describe_char,
    forbidden_chars,
    value_problem,
)
from wfcrawl.workflow.yamldoc import Builder, DocPath, LimitExceededError, PathKey, compose, json_path

__all__ = ["MAX_DOCUMENT_BYTES", "DocPath", "PathKey", "Source", "json_path", "load_source", "parse_text"]

#: Problems reported for one kind of bad character before the rest are summed up.
_MAX_CHAR_PROBLEMS = 10


@dataclass
class Source:
    """A parsed workflow document with the position of each value and key."""

    name: str
    data: Any
    positions: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[DocPath, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: DocPath, *, key: bool = False) -> tuple[int, int]:
        """The closest known position of ``path`` (walking up to its parents)."""
        table = self.key_positions if key else self.positions
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.positions:
                return self.positions[path]
        return (1, 1)

    def problem(
        self, path: DocPath, message: str, *, kind: str, key: bool = False
    ) -> Problem:
        line, column = self.position(path, key=key)
        return Problem(self.name, line, column, json_path(path), message, kind)


def _problem(name: str, line: int, column: int, message: str, path: str = "$") -> Problem:
    return Problem(name, line, column, path, message, "parse")


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _yaml_error(name: str, exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_col(text, exc.position)
        return _problem(name, line, column, f"YAML syntax error: unacceptable character #x{exc.character:04x}:"
                                            f" {exc.reason}")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = getattr(exc, "problem", None) or str(exc)
    if mark is not None and text[mark.index:mark.index + 1] == "\t":
        what = "found a tab character where YAML allows only spaces (indent with spaces)"
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and not context.startswith("while") and context_mark is not None:
        # "expected a single document in the stream" (line 1), "but found another document"
        return _problem(name, line, column, f"YAML syntax error: {context} (line {context_mark.line + 1}), {what}")
    return _problem(name, line, column, f"YAML syntax error: {what}" + (f" ({context})" if context else ""))


def _check_characters(name: str, text: str) -> list[Problem]:
    found = forbidden_chars(text)
    problems = []
    for offset in found[:_MAX_CHAR_PROBLEMS]:
        line, column = _line_col(text, offset)
        problems.append(_problem(name, line, column, f"character {describe_char(text[offset])} is not allowed"))
    if len(found) > _MAX_CHAR_PROBLEMS:
        line, column = _line_col(text, found[_MAX_CHAR_PROBLEMS])
        problems.append(_problem(name, line, column, f"{len(found) - _MAX_CHAR_PROBLEMS} more characters"
                                                     " that are not allowed"))
    return problems


def _compose_yaml(name: str, text: str, *, positions_only: bool = False) -> Source:
    try:
        loader, root = compose(text)
    except LimitExceededError as exc:
        raise WorkflowError([_problem(name, exc.line, exc.column, exc.message, json_path(exc.path))]) from None
    except yaml.YAMLError as exc:
        raise WorkflowError([_yaml_error(name, exc, text)]) from None
    if root is None:
        raise WorkflowError([_problem(name, 1, 1, "the document is empty")])
    builder = Builder(name, loader, positions_only=positions_only)
    data = builder.build(root, ())
    if builder.problems:
        raise WorkflowError(builder.problems)
    return Source(name, data, builder.positions, builder.key_positions)


class _JSONSyntaxError(WorkflowError):
    """Not JSON at all (the text may still be YAML in flow style)."""


class _LongInteger(str):
    """An integer literal too long to convert (reported at its place)."""


def _json_int(text: str) -> int | _LongInteger:
    # Converting is quadratic in the digits (and refused past 4300 of them).
    return _LongInteger(text) if len(text.lstrip("-")) > MAX_INTEGER_DIGITS else int(text)


def _json_depth(name: str, text: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH before json.loads recurses into it."""
    depth, in_string, escaped = 0, False, False
    for offset, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line, column = _line_col(text, offset)
                raise WorkflowError([_problem(name, line, column, f"nested deeper than {MAX_DEPTH} levels")])
        elif char in "]}":
            depth -= 1


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _load_json(name: str, text: str) -> Source:
    _json_depth(name, text)
    try:
        data = json.loads(text, parse_int=_json_int)  # NaN and Infinity: refused as not finite
    except json.JSONDecodeError as exc:
        raise _JSONSyntaxError([_problem(name, exc.lineno, exc.colno, f"JSON syntax error: {exc.msg}")]) from None
    try:
        # JSON is (nearly) YAML: the bounded YAML composer gives positions and
        # duplicate keys. Tabs are JSON whitespace but not YAML's (inside JSON
        # strings they are invalid anyway), and YAML refuses surrogate escapes
        # (json.loads made the values already): same-length stand-ins keep every column.
        yaml_text = _SURROGATE_ESCAPE.sub(r"\\u0020", text.replace("\t", " "))
        source = _compose_yaml(name, yaml_text, positions_only=True)
    except WorkflowError as exc:
        if any(not p.message.startswith("YAML") for p in exc.problems):
            raise  # a duplicate key, a bound: true of the JSON too
        source = Source(name, None)
        _count_json(name, data)
    source.data = data
    problems = _check_json_values(source)
    if problems:
        raise WorkflowError(problems)
    return source


def _count_json(name: str, data: Any) -> None:
    count, stack = 0, [data]
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise WorkflowError([_problem(name, 1, 1, f"more than {MAX_NODES} values")])
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _check_json_values(source: Source) -> list[Problem]:
    """Strings, keys and numbers json.loads let through (YAML's builder checks its own)."""
    problems = []
    stack: list[tuple[DocPath, Any]] = [((), source.data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                problem = value_problem(key, key=True)
                if problem is not None:
                    problems.append(source.problem((*path, key), problem, kind="parse", key=True))
                stack.append(((*path, key), child))
        elif isinstance(value, list):
            stack.extend(((*path, i), child) for i, child in enumerate(value))
        else:
            problem = (f"integer literal longer than {MAX_INTEGER_DIGITS} digits"
                       if isinstance(value, _LongInteger) else value_problem(value))
            if problem is not None:
                problems.append(source.problem(path, problem, kind="parse"))
    return problems


def _looks_like_json(text: str) -> bool:
    """A ``{`` followed by a quoted key or ``}``: JSON (else YAML flow style)."""
    rest = text.lstrip()[1:].lstrip()
    return rest[:1] in ('"', "}")


def parse_text(text: str, name: str = "<workflow>") -> Source:
    """Parse a YAML or JSON document (JSON: a ``.json`` name, or ``{"``), bounded.

    Raises :class:`WorkflowError` with located problems, and nothing else.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise WorkflowError([_problem(name, 1, 1, f"document of {size} bytes; the limit is {MAX_DOCUMENT_BYTES}")])
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte order mark: allowed at the start (editors do not show it)
    problems = _check_characters(name, text)
    if problems:
        raise WorkflowError(problems)
    if name.endswith(".json"):
        return _load_json(name, text)
    if text.lstrip().startswith("{"):
        try:
            return _load_json(name, text)
        except _JSONSyntaxError as exc:
            json_error = exc
        try:
            # Valid YAML in flow style ({name: shop, ...}) is a YAML document.
            return _compose_yaml(name, text)
        except WorkflowError:
            if _looks_like_json(text):
                raise WorkflowError(json_error.problems) from None
            raise
    return _compose_yaml(name, text)


def load_source(path: str | Path) -> Source:
    """Read and parse a workflow file; errors name the file."""
    return parse_text(read_document(path), str(path))


def read_document(path: str | Path) -> str:
    """The text of a workflow file, at most MAX_DOCUMENT_BYTES; errors (unreadable,
    too large, not UTF-8: located at the byte) name the file."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise WorkflowError([_problem(name, 1, 1, f"cannot read the file: {exc.strerror}")]) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise WorkflowError([_problem(name, 1, 1, f"document larger than {MAX_DOCUMENT_BYTES} bytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        raise WorkflowError([_problem(
            name, line, column, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}: {exc.reason}"
        )]) from None
