"""Every problem in one report: the semantic checks run on what passed the schema.

The compiler (the semantic checks) may rely on the schema: a node has a
``type``, a transition a ``to``. So a document with schema problems is not
compiled as it is: :func:`prune` makes a copy without the smallest parts that
have one (an unknown key; a field; else the node, transition, start URL,
webhook, item type, or an item type's or a phase's expectations; else the
top-level entry), and the compiler checks the rest. A part of the copy keeps
its place in the report: list indices after a removed element are mapped back
to the document's own (:class:`PrunedSource`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from wfcrawl.exceptions import Problem
from wfcrawl.workflow.source import DocPath, Source
from wfcrawl.workflow.validate import schema

#: Top-level lists whose elements are removed one by one.
_LISTS = ("start_urls", "webhooks", "allowed_domains")
#: Replacements for required top-level entries (removing them would stop the compiler).
_NEUTRAL = {"name": "workflow"}


def _required(data: Any, path: DocPath) -> frozenset[str]:
    """The keys the schema requires of the node, transition or webhook at ``path``."""
    defs = schema()["$defs"]
    try:
        spec = data
        for part in path:
            spec = spec[part]
    except (KeyError, IndexError, TypeError):
        return frozenset()
    if path[0] == "webhooks":
        return frozenset(schema()["properties"]["webhooks"]["items"]["required"])
    name = "transition" if path[2] == "transitions" else spec.get("type") if isinstance(spec, dict) else None
    found = defs.get(name) if isinstance(name, str) else None
    return frozenset(["type", *(found or {}).get("required", ())])


def _element_or_key(data: Any, path: DocPath, size: int) -> DocPath:
    """An optional key of a list element (``path[:size + 1]``), else the element."""
    if len(path) > size and isinstance(path[size], str) and path[size] not in _required(data, path[:size]):
        return path[: size + 1]
    return path[:size]


def unit(path: DocPath, data: Any) -> DocPath | None:
    """The smallest part to remove for a schema problem at ``path`` (None: do not compile)."""
    if not path:
        return None
    top = path[0]
    if top == "phases":
        if len(path) < 3:
            return None if len(path) < 2 else path[:2]  # the phase itself is not a mapping
        if path[2] in ("nodes", "transitions"):
            if len(path) == 3:
                return path
            inner = [k for k in range(4, len(path) - 1) if path[k] == "fields"] if path[2] == "nodes" else []
            if inner:
                return path[: inner[-1] + 3]  # a key of the (nested) field, or the field
            return _element_or_key(data, path, 4)  # a key of the node or transition, or all of it
        return path[:3]  # description, when_marker, render of the phase
    if top == "webhooks" and len(path) > 1:
        return _element_or_key(data, path, 2)
    if top in _LISTS:
        return path[:2] if len(path) > 1 else None
    if top == "items":
        return path[:2] if len(path) > 1 else path[:1]
    if top == "expect" and len(path) > 1:
        # An item type's or a phase's expectations, else the entry (max_error_rate, ...).
        return path[:3] if len(path) > 2 and path[1] in ("items", "phases") else path[:2]
    return path[:1]


@dataclass
class PrunedSource(Source):
    """A copy of a document without some parts; problems name the document's paths."""

    #: For each list that lost elements (by its path in the document): the
    #: document's index of each element the copy kept, in order.
    kept: dict[DocPath, list[int]] = field(default_factory=dict)
    #: Phases that lost a node: what the node routed, led to or produced is unknown.
    lost_nodes: set[str] = field(default_factory=set)
    #: Phases that lost a transition: where it routed what is unknown.
    lost_transitions: set[str] = field(default_factory=set)
    #: What was removed (paths in the document).
    removed: set[DocPath] = field(default_factory=set)
    #: Problems that only follow from a removed node (not reported).
    consequences: set[Problem] = field(default_factory=set)

    def original(self, path: DocPath) -> DocPath:
        out: list[Any] = []
        for part in path:
            kept = self.kept.get(tuple(out))
            out.append(kept[part] if isinstance(part, int) and kept is not None and part < len(kept) else part)
        return tuple(out)

    def problem(self, path: DocPath, message: str, *, kind: str, key: bool = False) -> Problem:
        found = super().problem(self.original(path), message, kind=kind, key=key)
        if self._consequence(path):
            self.consequences.add(found)
        return found

    def _consequence(self, path: DocPath) -> bool:
        """A transition's marker no node produces, an unreachable phase, an item type
        no node produces: maybe the removed node did."""
        path = self.original(path)
        if path[:1] == ("start_urls",) and ("base_url",) in self.removed:
            return True  # relative start URLs without the (refused) base_url
        if any(removed[:-1] == path for removed in self.removed):
            return True  # "paginate needs max_pages" when its max_pages was refused
        if path[:1] == ("phases",) and len(path) == 5 and path[4] == "marker":
            if path[2] == "transitions":  # "no node produces marker M": maybe the removed node did
                return path[1] in self.lost_nodes
            if path[2] == "nodes":  # "no transition routes marker M": maybe the removed one did
                return path[1] in self.lost_transitions
        if path[:1] == ("phases",) and len(path) == 2:  # "unreachable": maybe through what was removed
            return bool(self.lost_nodes or self.lost_transitions
                        or any(r[:1] == ("phases",) and len(r) == 2 for r in self.removed))
        if (path[:2] == ("expect", "items") and len(path) > 2) or (path[:2] == ("expect", "phases") and len(path) > 3):
            # "no node produces type T", "not a field of T" (any phase), "phase P has no node N"
            # (phase P): maybe a removed node did, or was that node (its item, fields, name, type).
            phase = path[2] if path[1] == "phases" else None
            return any(r[:1] == ("phases",) and (phase is None or r[1] == phase) and (len(r) == 2 or (
                r[2] == "nodes" and (len(r) <= 4 or r[4] in ("item", "fields", "name", "type")))) for r in self.removed)
        return path[:1] == ("items",) and len(path) == 2 and bool(self.lost_nodes)


def fine_unit(path: DocPath, data: Any) -> DocPath | None:
    """Inside a node or transition: exactly the part the problem is at (``values._s``);
    elsewhere :func:`unit`."""
    if len(path) > 4 and path[0] == "phases" and path[2] in ("nodes", "transitions"):
        return path
    return unit(path, data)


def prune(source: Source, paths: list[DocPath], *, fine: bool = False) -> PrunedSource | None:
    """``source`` without the parts at ``paths`` (and what holds them, see :func:`unit`;
    ``fine``: :func:`fine_unit`, which the compiler may not survive)."""
    if not isinstance(source.data, dict):
        return None
    drop: set[DocPath] = set()
    for path in paths:
        part = (fine_unit if fine else unit)(path, source.data)
        if part is None:
            return None
        drop.add(part)
    data = copy.deepcopy(source.data)
    pruned = PrunedSource(source.name, data, source.positions, source.key_positions)
    # Deepest first: removing a list element never moves a part still to remove.
    order = sorted(drop, key=lambda p: (len(p), tuple((0, x) if isinstance(x, int) else (1, x) for x in p)))
    for path in reversed(order):
        if any(path[:n] in drop for n in range(len(path))):
            continue  # inside a part removed as a whole
        _remove(pruned, data, path)
    return pruned


def _remove(pruned: PrunedSource, data: Any, path: DocPath) -> None:
    pruned.removed.add(path)
    parent = data
    for part in path[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if len(path) == 3 and path[0] == "phases" and last in ("nodes", "transitions") and isinstance(parent, dict):
        parent[last] = []  # the phase stays (transitions to it are not unknown)
    elif len(path) == 2 and path[0] == "phases" and isinstance(parent, dict):
        parent[last] = {"nodes": []}
    elif path in (("name",),):
        parent[last] = _NEUTRAL["name"]
    elif isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
        if len(path) == 4 and path[2] == "nodes":
            pruned.lost_nodes.add(str(path[1]))
        if len(path) == 4 and path[2] == "transitions":
            pruned.lost_transitions.add(str(path[1]))
        kept = pruned.kept.setdefault(path[:-1], list(range(len(parent))))
        del parent[last]
        del kept[last]
