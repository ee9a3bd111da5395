"""Names of the stats a workflow's nodes and items are counted under.

The document model owns them (its nodes count pages and items); the spider and
the outcome (``wfcrawl.outcome``) read them by these names.
"""

from __future__ import annotations


def node_stat(kind: str, phase: str, label: str) -> str:
    """``wfcrawl/nodes/<kind>/<phase>/<label>``: pages where a node matched (``matched``) or
    matched nothing (``nomatch``)."""
    return f"wfcrawl/nodes/{kind}/{phase}/{label}"


def filled_stat(item_type: str, name: str) -> str:
    """``wfcrawl/fields/filled/<type>/<field>``: items of a type in which a field is not empty."""
    return f"wfcrawl/fields/filled/{item_type}/{name}"
