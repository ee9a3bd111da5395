"""The node contract and the registry of node types.

A node type is a runtime :class:`Node` (immutable, run on every page of its
phase) and the function that compiles its document form. Each lives in one
module of this package and registers itself with :func:`register`; the
compiler looks node types up by their ``type:`` (:data:`NODE_TYPES`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from wfcrawl.workflow.compiler import Compiler
    from wfcrawl.workflow.page import Page
    from wfcrawl.workflow.source import DocPath


@dataclass(frozen=True)
class Node:
    """Common part of every node: its label (``name`` or ``<type>#<index>``) and ``when_marker``."""

    #: Whether a parse worker (another process) can run the node: it needs nothing but the page.
    offloadable: ClassVar[bool] = False

    label: str
    when_marker: frozenset[str] | None

    def applies(self, page: Page) -> bool:
        return self.when_marker is None or page.marker in self.when_marker

    def run(self, page: Page) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError


def node_label(spec: dict[str, Any], index: int) -> str:
    """A node's label: its ``name``, else ``<type>#<index in its phase>`` (logs, stats, expectations)."""
    return str(spec.get("name") or f"{spec['type']}#{index}")


#: compile(compiler, spec, path, label, when_marker) -> Node, or None after reporting problems.
NodeCompiler = Callable[["Compiler", dict[str, Any], "DocPath", str, "frozenset[str] | None"], "Node | None"]


@dataclass(frozen=True)
class NodeType:
    name: str
    compile: NodeCompiler
    #: The key of the document form naming the marker(s) of the links the node yields
    #: (``marker``; a script's ``markers``); they go through the phase's transitions.
    routes: str | None = None
    #: The key of the document form naming the phase its requests go to (``form``: ``phase``).
    leads_to: str | None = None


NODE_TYPES: dict[str, NodeType] = {}


def register(node_type: NodeType) -> NodeType:
    NODE_TYPES[node_type.name] = node_type
    return node_type
