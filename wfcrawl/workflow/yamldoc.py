"""YAML to plain data with positions, bounded while composing.

PyYAML's composer builds a graph in which an alias is the very node its anchor
names: nine aliases of nine aliases of ... are a few hundred bytes of text and
billions of values once expanded (an "alias bomb"), and ``&a [*a]`` is a cycle.
:class:`_Loader` measures, for every node as it is composed, how many values it
expands to and how deep it nests (aliases counted as what they expand to), and
refuses a document past :data:`~wfcrawl.workflow.limits.MAX_NODES` or
:data:`~wfcrawl.workflow.limits.MAX_DEPTH` before anything is expanded: memory
stays proportional to the text. Only then does :class:`Builder` turn the graph
into plain data (strings, numbers, booleans, null, lists, mappings), reporting
each non-plain tag, duplicate key and unsafe value at its place.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from wfcrawl.exceptions import Problem
from wfcrawl.workflow.limits import MAX_DEPTH, MAX_INTEGER_DIGITS, MAX_NODES, value_problem

PathKey = str | int
DocPath = tuple[PathKey, ...]


def json_path(path: DocPath) -> str:
    """``$.phases.detail.nodes[0].css`` for ``("phases", "detail", "nodes", 0, "css")``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part.isascii():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "value"))
_MERGE = _TAG + "merge"


class LimitExceededError(Exception):
    """A bound of :mod:`wfcrawl.workflow.limits` passed while composing."""

    def __init__(self, line: int, column: int, path: DocPath, message: str) -> None:
        super().__init__(message)
        self.line, self.column, self.path, self.message = line, column, path, message


class _BoundedComposer(Composer, Resolver):
    """PyYAML's composer, counting what every node (aliases included) expands to."""

    peek_event: Any  # the parser's (a mixin of the loader)

    # Dates stay strings (JSON has none); every other implicit type is JSON's.
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _TAG + "timestamp"]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once composed
        self._path: list[PathKey] = []

    def _refuse(self, mark: Any, message: str) -> LimitExceededError:
        path = tuple(self._path)
        if path and path[-1] == "":  # a key being composed: name its mapping
            path = path[:-1]
        return LimitExceededError(mark.line + 1, mark.column + 1, path, message)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self.descend_resolver(parent, index)  # the alias's own path, for messages
            target = self.anchors.get(event.anchor) if event.anchor is not None else None
            if target is not None and id(target) not in self.sizes:
                raise self._refuse(event.start_mark, f"recursive alias *{event.anchor}: it is inside its own anchor")
            return super().compose_node(parent, index)
        if len(self._path) >= MAX_DEPTH:
            raise self._refuse(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        node: Any = super().compose_node(parent, index)
        size, depth = 1, 1
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        for child in children:
            child_size, child_depth = self.sizes[id(child)]
            size += child_size
            depth = max(depth, child_depth + 1)
        if size > MAX_NODES:
            raise self._refuse(node.start_mark, f"expands to more than {MAX_NODES} values (aliases counted"
                                                " as what they repeat)")
        if depth + len(self._path) > MAX_DEPTH:
            raise self._refuse(node.start_mark, f"nested deeper than {MAX_DEPTH} levels (aliases expanded)")
        self.sizes[id(node)] = (size, depth)
        return node

    def compose_sequence_node(self, anchor: Any) -> Any:
        # Track the path of what is being composed, for located limit errors.
        self._path.append(0)
        try:
            node = super().compose_sequence_node(anchor)
        finally:
            self._path.pop()
        return node

    def compose_mapping_node(self, anchor: Any) -> Any:
        self._path.append("")
        try:
            node = super().compose_mapping_node(anchor)
        finally:
            self._path.pop()
        return node

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        # Called for every child: keeps the last path element current.
        if self._path:
            if isinstance(current_index, int):
                self._path[-1] = current_index
            elif isinstance(current_index, ScalarNode):
                self._path[-1] = current_index.value[:64]
        super().descend_resolver(current_node, current_index)


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: its (10 times slower) Python parser

    class _Loader(_BoundedComposer, Reader, Scanner, Parser, SafeConstructor):
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            _BoundedComposer.__init__(self)

        def fetch_flow_collection_start(self, token_class: Any) -> None:
            # In flow style every "[" or "{" may start a key, so the scanner reads
            # ahead over all of them before handing out one token (quadratic):
            # refuse the depth here, before the composer could.
            if self.flow_level >= MAX_DEPTH:
                raise self._refuse(self.get_mark(), f"nested deeper than {MAX_DEPTH} levels")
            super().fetch_flow_collection_start(token_class)

else:

    class _Loader(_BoundedComposer, CParser, SafeConstructor):  # type: ignore[no-redef]
        """libyaml's scanner and parser (it refuses nesting past 1000 levels itself)."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            _BoundedComposer.__init__(self)


class Builder:
    """Plain data and positions from a composed (and bounded) node graph."""

    def __init__(self, name: str, loader: _Loader, *, positions_only: bool = False) -> None:
        self.name = name
        self.loader = loader
        #: For JSON text: its values come from json.loads; only positions and keys here.
        self.positions_only = positions_only
        self.positions: dict[DocPath, tuple[int, int]] = {}
        self.key_positions: dict[DocPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []

    @staticmethod
    def _pos(node: Node) -> tuple[int, int]:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def _problem(self, node: Node, path: DocPath, message: str) -> None:
        line, column = self._pos(node)
        self.problems.append(Problem(self.name, line, column, json_path(path), message, "parse"))

    def build(self, node: Node, path: DocPath) -> Any:
        self.positions[path] = self._pos(node)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            self._check_tag(node, _TAG + "seq", path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return self._scalar(node, path)

    def _check_tag(self, node: Node, expected: str, path: DocPath) -> bool:
        if node.tag == expected:
            return True
        tag = node.tag.replace(_TAG, "!!") if node.tag.startswith(_TAG) else node.tag
        self._problem(node, path, f"YAML tag {tag!r} is not allowed: documents are plain data"
                                  " (strings, numbers, booleans, null, lists and mappings)")
        return False

    def _scalar(self, node: ScalarNode, path: DocPath, *, key: bool = False) -> Any:
        if self.positions_only:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self._check_tag(node, _TAG + "str", path)
            return node.value
        if node.tag == _TAG + "int" and len(node.value.lstrip("+-0").replace("_", "")) > MAX_INTEGER_DIGITS:
            # Converting is quadratic in the digits (and refused past 4300 of them).
            self._problem(node, path, f"integer literal longer than {MAX_INTEGER_DIGITS} digits")
            return 0
        if node.tag == _TAG + "value":
            return node.value
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            self._problem(node, path, f"invalid {node.tag.replace(_TAG, '')}: {exc}")
            return node.value
        problem = value_problem(value, key=key)
        if problem is not None:
            self._problem(node, path, problem)
        return value

    def _merged(self, node: MappingNode, path: DocPath) -> list[tuple[Node, Node]]:
        """The pairs ``<<`` merges in (earlier sources win), not yet overridden."""
        pairs: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self._problem(source, path, "'<<' merges a mapping or a list of mappings")
                    continue
                # The source's own keys win over what it merges itself (depth bounded by the composer).
                pairs += [(k, v) for k, v in source.value if k.tag != _MERGE]
                pairs += self._merged(source, path)
        return pairs

    def _mapping(self, node: MappingNode, path: DocPath) -> dict[str, Any]:
        self._check_tag(node, _TAG + "map", path)
        result: dict[str, Any] = {}
        own = [(k, v) for k, v in node.value if k.tag != _MERGE]
        for key_node, value_node in own:
            key = self._key(key_node, path)
            if key in result:
                line, column = self._pos(key_node)
                self.problems.append(Problem(self.name, line, column, json_path((*path, key)),
                                             f"duplicate key {key!r}", "parse"))
            self.key_positions[(*path, key)] = self._pos(key_node)
            result[key] = self.build(value_node, (*path, key))
        # Merged keys come first in the mapping (YAML's order) unless the mapping sets them.
        merged: dict[str, Any] = {}
        for key_node, value_node in self._merged(node, path):
            key = self._key(key_node, path)
            if key not in result and key not in merged:
                self.key_positions[(*path, key)] = self._pos(key_node)
                merged[key] = self.build(value_node, (*path, key))
        return {**merged, **result} if merged else result

    def _key(self, node: Node, path: DocPath) -> str:
        if not isinstance(node, ScalarNode):
            self._problem(node, path, "mapping keys must be strings, not a list or mapping")
            return f"<{type(node).__name__} at line {node.start_mark.line + 1}>"
        key = self._scalar(node, path, key=True)
        if not isinstance(key, str):
            # JSON Schema only knows string keys; report instead of guessing.
            self._problem(node, path, f"mapping key {key!r} must be a string")
            return str(key)
        return key


def compose(text: str) -> tuple[_Loader, Node | None]:
    """Compose ``text`` (bounded); raises yaml.YAMLError or LimitExceededError."""
    loader = _Loader(text)
    try:
        return loader, loader.get_single_node()
    finally:
        loader.dispose()
