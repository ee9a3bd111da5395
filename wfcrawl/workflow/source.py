"""Read a workflow document and remember where every value came from.

YAML and JSON documents are turned into plain Python data plus a table of
source positions keyed by path tuples (``("phases", "detail", "nodes", 0)``),
so that validation errors can name ``file:line:col``. Keys have their own
positions (an unknown key is reported where the key is, not where its value
is). Duplicate mapping keys are an error: PyYAML would silently keep the last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from wfcrawl.exceptions import Problem, WorkflowError

PathKey = str | int
DocPath = tuple[PathKey, ...]

#: Documents larger than this are refused before parsing (untrusted input).
MAX_DOCUMENT_BYTES = 1_000_000


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


def json_path(path: DocPath) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader: no Python tags, so a document can never build objects."""


class _Builder:
    def __init__(self, name: str, loader: _Loader) -> None:
        self.loader = loader
        self.source = Source(name, None)
        self.problems: list[Problem] = []

    @staticmethod
    def _pos(node: Node) -> tuple[int, int]:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: Node, path: DocPath) -> Any:
        self.source.positions[path] = self._pos(node)
        if isinstance(node, MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    # JSON Schema only knows string keys; report instead of guessing.
                    line, col = self._pos(key_node)
                    self.problems.append(
                        Problem(
                            self.source.name, line, col, json_path(path),
                            f"mapping key {key!r} must be a string", "parse",
                        )
                    )
                    key = str(key)
                if key in result:
                    line, col = self._pos(key_node)
                    self.problems.append(
                        Problem(
                            self.source.name, line, col, json_path((*path, key)),
                            f"duplicate key {key!r}", "parse",
                        )
                    )
                self.source.key_positions[(*path, key)] = self._pos(key_node)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return self.loader.construct_object(node, deep=True)


def _parse_error(name: str, exc: Exception, text: str = "") -> WorkflowError:
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        message = f"YAML syntax error: unacceptable character #x{exc.character:04x}: {exc.reason}"
        return WorkflowError([Problem(name, line, column, "$", message, "parse")])
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {what}" + (f" ({context})" if context else "")
    return WorkflowError([Problem(name, line, column, "$", message, "parse")])


def _compose(name: str, text: str) -> Source:
    try:
        # The reader checks characters when it is created: inside the try.
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise _parse_error(name, exc, text) from None
    try:
        root = loader.get_single_node()
        builder = _Builder(name, loader)
        if root is None:
            raise WorkflowError(
                [Problem(name, 1, 1, "$", "the document is empty", "parse")]
            )
        builder.source.data = builder.build(root, ())
    except yaml.YAMLError as exc:
        raise _parse_error(name, exc, text) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise WorkflowError(builder.problems)
    return builder.source


def parse_text(text: str, name: str = "<workflow>") -> Source:
    """Parse a YAML or JSON document (JSON is detected by its file name or a ``{``)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise WorkflowError(
            [Problem(name, 1, 1, "$", f"document larger than {MAX_DOCUMENT_BYTES} bytes", "parse")]
        )
    if name.endswith(".json") or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowError(
                [Problem(name, exc.lineno, exc.colno, "$", f"JSON syntax error: {exc.msg}", "parse")]
            ) from None
        try:
            # JSON is (nearly) YAML: reuse the YAML composer for positions.
            source = _compose(name, text)
        except WorkflowError as exc:
            if any(p.message.startswith("duplicate key") for p in exc.problems):
                raise
            return Source(name, data)
        source.data = data
        return source
    return _compose(name, text)


def load_source(path: str | Path) -> Source:
    """Read and parse a workflow file; errors name the file."""
    return parse_text(read_document(path), str(path))


def read_document(path: str | Path) -> str:
    """The text of a workflow file; errors (unreadable, not UTF-8) name the file."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WorkflowError(
            [Problem(name, 1, 1, "$", f"cannot read the file: {exc.strerror}", "parse")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowError(
            [Problem(name, 1, 1, "$", f"not UTF-8 text: {exc.reason}", "parse")]
        ) from None
    return text
