"""``script``: an installed Python callable (never code from the document) run on the page.

``callable:`` is ``package.module:function``, or the name of an entry point in
the group ``wfcrawl.scripts`` (a package registers its callables there). The
contract (what the callable receives, what it may yield) is in docs/scripts.md.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from wfcrawl.workflow.compiler import Compiler
from wfcrawl.workflow.nodes.base import Node, NodeType, register
from wfcrawl.workflow.page import Item, Link, Page, Value
from wfcrawl.workflow.source import DocPath

#: Entry-point group where packages register script callables by name.
ENTRY_POINT_GROUP = "wfcrawl.scripts"


@dataclass(frozen=True)
class ScriptContext:
    """What a script node's callable receives besides the response (docs/scripts.md)."""

    #: The workflow's ``name``, the phase handling the response.
    workflow: str
    phase: str
    #: Marker of the request that led here, and the marker chain from the start URL.
    marker: str
    markers: tuple[str, ...]
    #: Link hops from the start URL.
    depth: int
    url: str
    #: The node's ``args`` (plain data from the document).
    args: Mapping[str, Any]
    #: What ``var:`` fields read: the page's variables, then values set by earlier
    #: script nodes on this response. A Value the callable yields is added here.
    values: dict[str, Any]
    #: Values the request brought (link ``values``, form iterations); links the
    #: callable yields hand them on, plus their own ``values``.
    variables: Mapping[str, Any] = field(default_factory=dict)
    #: Page counter of ``paginate`` nodes, on paged responses; else None.
    page_number: int | None = None
    #: The crawler's settings (Scrapy ``Settings``), read-only; None outside a crawl.
    settings: Any = None


@dataclass(frozen=True)
class ScriptNode(Node):
    callable_name: str
    function: Callable[..., Any]
    item: str | None
    args: Mapping[str, Any]
    workflow: str
    #: The markers the node declares for the links it yields (None: it yields no links).
    markers: frozenset[str] | None = None

    def run(self, page: Page) -> Iterator[Any]:
        context = ScriptContext(
            self.workflow, page.phase, page.marker, page.markers, page.depth,
            page.url, self.args, page.values, page.variables, page.page_number, page.settings,
        )
        result = self.function(page.response, context)
        if result is None:
            return
        if isinstance(result, (Item, Link, Value, dict)):
            result = [result]
        for out in result:
            # Items get a shallow copy: the spider adds _type/_meta to item
            # dicts, and a script may hand the same dict out elsewhere too.
            if isinstance(out, Value):
                page.values[out.name] = out.value
                yield out  # for the per-node match count; the spider ignores it
            elif isinstance(out, Link):
                if self.markers is not None and out.marker not in self.markers:
                    raise ValueError(
                        f"script {self.callable_name} yielded a link with marker {out.marker!r}, "
                        f"not one of its markers ({', '.join(sorted(self.markers))})"
                    )
                yield out
            elif isinstance(out, Item):
                yield Item(out.type, dict(out.data))
            elif isinstance(out, dict) and self.item is not None:
                yield Item(self.item, dict(out))
            else:
                raise TypeError(
                    f"script {self.callable_name} returned {type(out).__name__}; "
                    "expected Item, Link, Value (or a dict, with the node's `item` set)"
                )


def import_callable(c: Compiler, name: str, path: DocPath) -> Callable[..., Any] | None:
    """``module:function``, or an entry point of the ``wfcrawl.scripts`` group,
    from an allowed module (``WFCRAWL_SCRIPT_MODULES``)."""
    if ":" not in name:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not found:
            registered = sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            c.error(path, f"no script named {name!r} in the entry points {ENTRY_POINT_GROUP!r}; "
                    f"registered: {', '.join(registered) or 'none'} (or give package.module:function)")
            return None
        name = next(iter(found)).value.replace(" ", "")
    module_name, _, attr = name.partition(":")
    if c.script_modules is not None and not any(
        module_name == m or module_name.startswith(m + ".") for m in c.script_modules
    ):
        c.error(path, f"script module {module_name!r} is not in the allowed script modules")
        return None
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or any error the module raises at import
        c.error(path, f"cannot import {module_name!r}: {type(exc).__name__}: {exc}")
        return None
    function = getattr(module, attr, None)
    if not callable(function):
        c.error(path, f"{module_name!r} has no callable {attr!r}")
        return None
    return function  # type: ignore[no-any-return]


def compile_script(
    c: Compiler, spec: dict[str, Any], path: DocPath, label: str, when: frozenset[str] | None
) -> ScriptNode | None:
    function = import_callable(c, spec["callable"], (*path, "callable"))
    if function is None:
        return None
    return ScriptNode(
        label, when, spec["callable"], function, spec.get("item"), dict(spec.get("args", {})), c.doc["name"],
        c.markers(spec.get("markers")),
    )


register(NodeType("script", compile_script, routes="markers"))
