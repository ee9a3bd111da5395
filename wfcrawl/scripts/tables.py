"""Tables with a header row, one item per body row keyed by the header.

``wfcrawl.scripts.tables:records`` (entry point ``tables``) reads the tables
``args.table`` selects (CSS, default ``table``): the header cells (``th`` of the
first row that has them) name the keys, lower-cased with every run of other
characters than letters and digits made ``_`` ("Atomic number" ->
``atomic_number``); each later row with as many cells gives one dict (the
node's ``item``), the cells' text with whitespace collapsed.

With ``args.link`` (a header, e.g. ``Name``) and ``args.marker``, it also
yields, per row, a link to the ``href`` of the first ``<a>`` in that column,
with the row's values handed on (``var:`` on the linked page): declare the
marker in the node's ``markers``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

from wfcrawl.workflow import Link, ScriptContext

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def key_of(header: str) -> str:
    """``"Atomic number"`` -> ``"atomic_number"``."""
    return _NOT_WORD.sub("_", header.lower()).strip("_")


def _text(cell: Any) -> str:
    return " ".join(" ".join(cell.xpath(".//text()").getall()).split())


def records(response: Any, context: ScriptContext) -> Iterator[Any]:
    link_column = context.args.get("link")
    marker = str(context.args.get("marker", ""))
    if (link_column is None) != (not marker):
        raise ValueError("args.link and args.marker go together")
    for table in response.css(context.args.get("table", "table")):
        rows = table.xpath(".//tr")
        header_at = next((i for i, row in enumerate(rows) if row.xpath("./th")), None)
        if header_at is None:
            continue
        headers = [_text(th) for th in rows[header_at].xpath("./th|./td")]
        keys = [key_of(h) for h in headers]
        for row in rows[header_at + 1:]:
            cells = row.xpath("./td|./th")
            if len(cells) != len(keys):
                continue  # a caption row, a colspan summary: not a record
            record = {key: _text(cell) for key, cell in zip(keys, cells, strict=True)}
            yield record
            if link_column is not None and link_column in headers:
                href = cells[headers.index(link_column)].xpath(".//a/@href").get()
                if href:
                    yield Link(urljoin(response.url, href), marker, values=record)
