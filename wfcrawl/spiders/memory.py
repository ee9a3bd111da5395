"""What a crawl remembers about what it has seen, for the language's bounds and filters.

- ``refetch``: how many times a link bypassed the duplicate filter, per (marker, URL).
- ``items.<type>.unique``: the keys of the items of that type already produced.
- ``paginate``'s ``stop_when_no_new``: what the pages of a phase gave before.

All of it is per process (a distributed crawl's instances each remember their own).

Some sites answer any page number past the last with the last page again; a
paginate node with ``stop_when_no_new: items`` (or ``links``) follows its
next-page link only when the page gave an item (a link) that no earlier page
of its phase gave. A page that gives no new item is past the end: its
(repeated) items are dropped too. Only phases with such a node are remembered: a 20-byte
digest per item (or link URL).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from wfcrawl.workflow.nodes import PaginateNode
from wfcrawl.workflow.page import Item, Link
from wfcrawl.workflow.plan import Plan


class CrawlMemory:
    def __init__(self, plan: Plan) -> None:
        #: Phases with a paginate node that stops when a page gives nothing new.
        self.phases = frozenset(
            name for name, phase in plan.phases.items()
            if any(isinstance(n, PaginateNode) and n.stop_when_no_new for n in phase.nodes)
        )
        self._unique = {name: spec.key for name, spec in plan.items.items() if spec.unique}
        self._seen: set[tuple[str, str, bytes]] = set()
        self._refetched: dict[tuple[str, str], int] = {}

    def refetch_allowed(self, link: Link) -> bool:
        """Whether a ``refetch`` link may bypass the duplicate filter once more (counts it)."""
        assert link.refetch is not None
        key = (link.marker, link.url)
        done = self._refetched.get(key, 0)
        if done >= link.refetch:
            return False
        self._refetched[key] = done + 1
        return True

    def duplicate(self, item: Item) -> bool:
        """Whether ``item`` repeats the key of an earlier item of a ``unique`` type (remembers it)."""
        key = self._unique.get(item.type)
        if key is None:
            return False
        return not self.first_time(item.type, "unique", [item.data.get(name) for name in key])

    def first_time(self, phase: str, kind: str, value: Any) -> bool:
        """Whether ``value`` (item data or a link URL) is new to ``phase``; remembers it."""
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        key = (phase, kind, hashlib.sha1(text.encode(), usedforsecurity=False).digest())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def sift(self, phase: str, outputs: list[Any], count: Callable[[str], None]) -> list[Any]:
        """The outputs of a page of ``phase``, without the next-page links of
        ``stop_when_no_new`` nodes when the page gave nothing new (and, for
        ``items``, without the page's repeated items)."""
        fresh = {"items": False, "links": False}
        wanted: set[str] = set()
        for out in outputs:
            if isinstance(out, Item):
                fresh["items"] |= self.first_time(phase, "items", out.data)
            elif isinstance(out, Link):
                if out.if_new is not None:
                    wanted.add(out.if_new)
                else:
                    fresh["links"] |= self.first_time(phase, "links", out.url)
        repeated_page = "items" in wanted and not fresh["items"]
        kept = []
        for out in outputs:
            if isinstance(out, Link) and out.if_new is not None and not fresh[out.if_new]:
                count("wfcrawl/links/dropped/no_new")
            elif isinstance(out, Item) and repeated_page:
                count("wfcrawl/items/dropped/repeated")
            else:
                kept.append(out)
        return kept
